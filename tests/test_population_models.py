"""Building blocks: raking, the OEWS wage interpolation, the hours factor and the rebuild steps."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration import build_earner_table as build
from calibration import tables, wage_model
from calibration.imputation import categorical_rows
from calibration.raking import rake


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_rake_meets_two_way_margins(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((4, 3, 5)) + 0.01
    fit = rake(
        rng.random((4, 3, 5)) + 0.01, {(0, 1): truth.sum(axis=2), (1, 2): truth.sum(axis=0)}, tol=1e-12
    )
    np.testing.assert_allclose(fit.sum(axis=2), truth.sum(axis=2), rtol=1e-6)
    np.testing.assert_allclose(fit.sum(axis=0), truth.sum(axis=0), rtol=1e-6)


def test_rake_keeps_seed_odds_ratios():
    seed = np.array([[4.0, 1.0], [1.0, 2.0]])
    fit = rake(seed, {(0,): np.array([0.5, 0.5]), (1,): np.array([0.3, 0.7])})
    odds = lambda t: t[0, 0] * t[1, 1] / (t[0, 1] * t[1, 0])  # noqa: E731
    assert np.isclose(odds(fit), odds(seed))


def test_wage_cdf_passes_through_oews_percentiles():
    majors = tables.oews_major_groups()
    pct = majors[list(tables.OEWS_ANNUAL)].to_numpy(float)
    cdf = np.stack(
        [
            wage_model.log_wage_cdf(np.log(pct[:, k]), pct)[np.arange(len(pct)), np.arange(len(pct))]
            for k in range(5)
        ],
        axis=1,
    )
    np.testing.assert_allclose(cdf, np.tile(tables.PERCENTILES, (len(pct), 1)), atol=1e-6)


def test_hours_factor_recovers_a_known_shift():
    pct = np.array([[30_000, 40_000, 50_000, 65_000, 90_000]], float)
    edges = np.concatenate([[-np.inf], np.log(np.geomspace(2_000, 400_000, 60)), [np.inf]])
    probs = wage_model.band_probabilities(edges, pct)
    k = 30
    target = probs[:, k, 0]
    fitted = wage_model.fit_hours_factor(probs, np.ones(1), target)
    assert fitted[k - 1 : k + 2].sum() > 0.95


def test_categorical_rows_follow_probabilities():
    probs = np.array([[0.2, 0.8, 0.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(0)
    rows = np.repeat([0, 1], 50_000)
    drawn = categorical_rows(probs, rows, rng.random(len(rows)))
    assert np.all(drawn[rows == 1] == 2)
    assert abs(np.mean(drawn[rows == 0] == 1) - 0.8) < 0.01 and not np.any(drawn[rows == 0] == 2)


def test_build_steps_on_a_small_cps_frame():
    cps = pd.DataFrame(
        {
            "e00200p": [50_000.0, 0.0, 20_000.0],
            "e00200s": [30_000.0, 0.0, 0.0],
            "age_head": [40, 70, 17],
            "age_spouse": [38, 0, 0],
            "MARS": [2, 1, 1],
            "fips": [6, 36, 48],
            "nu18": [2, 0, 1],
        }
    )
    people = build.earners(cps, pd.Series([100.0, 200.0, 300.0]), factor=1.5)
    assert sorted(people["wage"]) == [30_000.0, 45_000.0, 75_000.0]
    assert people.loc[people["wage"] == 30_000.0, "children"].item() == 0  # the 17-year-old counted himself
    assert set(people["marital_status"]) == {"married", "single"}
    growth = pd.DataFrame({"YEAR": range(2011, 2027), "AWAGE": [1.1] * 16})
    assert np.isclose(build.wage_growth_factor(growth), 1.1**10)
    shares = np.arange(1, 8, dtype=float)
    people = pd.DataFrame(
        {
            "age": [17, 22, 30, 40, 50, 60, 70] * 3,
            "weight": np.arange(1, 22, dtype=float),
            "wage": np.arange(21, dtype=float) + 1,
        }
    )
    stratified = build.post_stratify(people, shares)
    bands = tables.age_band_index(stratified["age"].to_numpy())
    np.testing.assert_allclose(
        np.bincount(bands, stratified["weight"]) / stratified["weight"].sum(), shares / shares.sum()
    )
    sample = build.systematic_sample(stratified, 7, np.random.default_rng(0))
    assert len(sample) == 7 and np.isclose(sample["weight"].sum(), stratified["weight"].sum())
