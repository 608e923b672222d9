"""Building blocks: raking, the OEWS wage interpolation, the sex split, the crosswalk, the rebuild steps."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from calibration import build_earner_table as build
from calibration import occupations, tables, wage_model
from calibration.build_crosswalk import crosswalk, normalise
from calibration.census_model import categorical_rows
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


def test_wage_quantile_function_passes_through_oews_percentiles():
    majors = tables.oews_major_groups()
    pct = majors[list(tables.OEWS_HOURLY)].to_numpy(float)
    knots = wage_model.knots(pct)
    rows = np.repeat(np.arange(len(pct)), 5)
    z = np.tile(wage_model.Z_POINTS, len(pct))
    got = np.exp(wage_model.log_wage(z, rows, knots, wage_model.slopes(knots))).reshape(pct.shape)
    np.testing.assert_allclose(got, pct, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.02, 0.98), st.floats(-0.35, 0.1), st.floats(1.2, 3.0))
def test_sex_shift_gives_the_ratio_and_keeps_pooled_percentiles(female, log_ratio, spread):
    pct = 20.0 * np.array([[spread**-1.0, spread**-0.5, 1.0, spread**0.6, spread**1.3]])
    knots = wage_model.knots(pct)
    male, woman, sd = wage_model.sex_shift(knots, np.array([female]), np.array([log_ratio]))
    slope, row = wage_model.slopes(knots), np.zeros(1, int)
    gap = wage_model.log_wage(woman, row, knots, slope) - wage_model.log_wage(male, row, knots, slope)
    sex_variance = female * (1 - female) * (woman - male) ** 2
    assert sex_variance[0] <= wage_model.MAX_SEX_VARIANCE + 1e-9
    shift = abs(woman - male)[0]
    if sex_variance[0] < wage_model.MAX_SEX_VARIANCE - 1e-6 and shift < wage_model.MAX_SHIFT - 1e-6:
        assert abs(gap[0] - log_ratio) < 1e-6  # the CPS ratio, where no bound binds
    else:
        assert abs(gap[0]) <= abs(log_ratio) and gap[0] * log_ratio >= 0  # a smaller gap, same sign
    # pooled score: P(z < Z_k) for the two-normal mixture stays near the OEWS percentile
    cdf = female * stats.norm.cdf((wage_model.Z_POINTS - woman) / sd)
    cdf += (1 - female) * stats.norm.cdf((wage_model.Z_POINTS - male) / sd)
    np.testing.assert_allclose(cdf, tables.PERCENTILES, atol=0.02)


def test_crosswalk_pairs_titles_and_most_specific_rows_win():
    assert normalise("Cooks, Restaurant") == "cooks restaurant" == normalise("cooks and restaurant")
    cps = pd.DataFrame(
        {
            "cps_occupation": ["Things jobs", "Cooks", "Cooks, restaurant", "Other things workers", "Tiny"],
            "level": ["major_group", "occupation", "occupation", "occupation", "occupation"],
            "major_code": ["35-0000"] * 5,
            "women": [50.0, 40.0, 30.0, 80.0, np.nan],
            "employed": [100.0, 10.0, 20.0, 5.0, 1.0],
        }
    )
    oews = pd.DataFrame(
        {
            "soc_code": ["35-2010", "35-2014", "35-9099"],
            "occupation_title": ["Cooks", "Cooks, Restaurant", "Tiny"],
            "soc_level": ["broad", "detailed", "detailed"],
        }
    )
    pairs = crosswalk(cps, oews)
    assert set(zip(pairs["cps_occupation"], pairs["soc_code"])) == {
        ("Cooks", "35-2010"),
        ("Cooks, restaurant", "35-2014"),
        ("Tiny", "35-9099"),
    }
    residual = pd.DataFrame({"cps_occupation": ["Other things workers"], "soc_code": ["35-9000"]})
    pairs = pd.concat([pairs, residual])
    codes = ["35-2014", "35-2011", "35-9011", "35-9099", "35-1012"]
    value, level = occupations.resolve(codes, pairs, cps, cps["women"], cps["employed"])
    # detailed row; broad "Cooks"; minor residual "Other ..."; unpublished "Tiny" to the minor; major group
    np.testing.assert_allclose(value, [30.0, 40.0, 80.0, 80.0, 50.0])
    assert level.tolist() == [7, 6, 4, 4, 3]
    two = pd.DataFrame({"cps_occupation": ["Cooks", "Cooks, restaurant"], "soc_code": ["35-2014", "35-2014"]})
    combined, _ = occupations.resolve(["35-2014"], two, cps, cps["women"], cps["employed"])
    assert np.isclose(combined[0], (40 * 10 + 30 * 20) / 30)


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
