"""The paper_gb2 source reproduces the reference prior's quantiles (spec section 5)."""

import numpy as np

from calibration import population


def test_paper_gb2_quantiles_at_40_hours():
    frame = population.sample_population("paper_gb2", 200_000, np.random.default_rng(3))
    income = frame["skill"].to_numpy() * 40
    p50, p90 = np.quantile(income, [0.5, 0.9])
    assert abs(p50 / 38_100 - 1) < 0.02
    assert abs(p90 / 124_500 - 1) < 0.02
