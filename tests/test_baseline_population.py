"""The baselines of a run sample their common population once, and get what separate draws would give."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

import run
from calibration.population import POPULATION_SOURCES, PaperGB2, draws_reused, sample_population
from experiments.config import resolve
from experiments.experiment import run_baselines

# blackbox draws from the model's rng after the population (each tax year of one step but the last): its rates
# differ unless a reused draw leaves the rng where the draw itself left it
NAMES = ["us_federal", "fixed", "blackbox"]


@POPULATION_SOURCES.register("test_counted_regions")
class CountedRegions(PaperGB2):
    """GB2 skills and a region per worker; counts its draws by size."""

    draws: Counter[int] = Counter()

    def sample(self, n, rng):
        CountedRegions.draws[n] += 1
        return super().sample(n, rng).assign(region=rng.choice(["north", "south"], size=n))


def test_a_repeated_draw_is_a_copy_of_the_first_and_leaves_the_rng_as_it_did():
    drawn, again = np.random.default_rng(3), np.random.default_rng(3)
    with draws_reused():
        first = sample_population("test_counted_regions", 50, drawn)
        count = CountedRegions.draws[50]
        second = sample_population("test_counted_regions", 50, again)
        assert CountedRegions.draws[50] == count
        assert second is not first
        pd.testing.assert_frame_equal(second, first)
        assert again.random() == drawn.random()
        sample_population("test_counted_regions", 50, again)  # another state: drawn anew
        assert CountedRegions.draws[50] == count + 1
    sample_population("test_counted_regions", 50, np.random.default_rng(3))  # outside: drawn anew
    assert CountedRegions.draws[50] == count + 2


def test_the_baselines_sample_the_population_once_and_match_separate_draws(tmp_path):
    argv = ["run", "--population", "test_counted_regions", "--worker-mind", "rational", "--planner", "us_federal",
            "--tax-year-length", "1", "--out", str(tmp_path / "out")]
    _, s = resolve(argv, run.DEFAULTS)
    CountedRegions.draws.clear()
    together = run_baselines(s, NAMES, progress=False)
    assert CountedRegions.draws == {s["workers"]: 1}
    for name in NAMES:
        alone = run_baselines(s, [name], progress=False)[name][0]
        pd.testing.assert_frame_equal(together[name][0], alone)
    assert CountedRegions.draws == {s["workers"]: 1 + len(NAMES)}
