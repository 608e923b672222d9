"""Acceptance checks of the census source against its source tables (200,000 workers)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibration import population, tables
from calibration.build_earner_table import weighted_quantiles
from calibration.census import sample_census

DATA = Path(tables.DATA_DIR)
N = 200_000


@pytest.fixture(scope="module")
def workers():
    return sample_census(N, np.random.default_rng(20240611), with_personas=False)


@pytest.fixture(scope="module")
def oews():
    frame = pd.read_csv(DATA / "oews_national_major_groups_may2025.csv")
    return frame[frame["soc_level"] == "major"].set_index("soc_code")


def test_wage_quantiles_match_earner_table(workers):
    target = pd.read_csv(DATA / "earner_wage_quantiles.csv").set_index("quantile")["wage"]
    probs = [0.10, 0.25, 0.50, 0.75, 0.90]
    sampled = np.quantile(workers["annual_wage"], probs)
    np.testing.assert_allclose(sampled, target.loc[probs].to_numpy(), rtol=0.03)


def test_compact_earner_table_keeps_full_population_quantiles():
    earners = tables.earner_table()
    target = pd.read_csv(DATA / "earner_wage_quantiles.csv").set_index("quantile")["wage"]
    got = weighted_quantiles(earners["wage"].to_numpy(float), earners["weight"].to_numpy(float), target.index)
    np.testing.assert_allclose(got, target.to_numpy(), rtol=0.01)


def test_occupation_group_shares_match_oews(workers, oews):
    target = oews["tot_emp"] / oews["tot_emp"].sum()
    sampled = (
        workers["occupation_group_code"]
        .astype(str)
        .value_counts(normalize=True)
        .reindex(target.index, fill_value=0)
    )
    assert np.max(np.abs(sampled - target)) < 0.01


def test_percent_women_by_group_matches_cps(workers):
    cps = pd.read_csv(DATA / "cps_aa2024_t11_t09_occupation_group_by_sex.csv")
    cps = cps[cps["level"] == "major_group"].set_index("soc_major_code_approx")["t11_pct_women"]
    female = (
        workers["sex"].astype(str).eq("female").groupby(workers["occupation_group_code"].astype(str)).mean()
        * 100
    )
    assert np.max(np.abs(female.reindex(cps.index) - cps)) < 3.0


def test_age_band_shares_match_cps(workers):
    cps = pd.read_csv(DATA / "cps_aa2024_t11b_occupation_group_by_age.csv")
    total = cps[cps["level"] == "total"].iloc[0]
    columns = ["age_16_19", "age_20_24", "age_25_34", "age_35_44", "age_45_54", "age_55_64", "age_65plus"]
    target = np.array([total[f"{c}_thousands"] for c in columns], dtype=float)
    bins = pd.cut(workers["age"], [16, 20, 25, 35, 45, 55, 65, np.inf], right=False)
    sampled = bins.value_counts(normalize=True, sort=False).to_numpy()
    assert np.max(np.abs(sampled - target / target.sum())) < 0.02


def test_wage_depends_on_occupation_as_in_oews(workers, oews):
    medians = workers.groupby(workers["occupation_group_code"].astype(str))["annual_wage"].median()
    sampled = medians["11-0000"] / medians["35-0000"]
    target = oews.loc["11-0000", "a_median"] / oews.loc["35-0000", "a_median"]
    assert abs(sampled / target - 1) < 0.15


def test_detailed_occupation_belongs_to_its_group(workers):
    major = workers["occupation_code"].astype(str).str[:2] + "-0000"
    assert (major == workers["occupation_group_code"].astype(str)).all()


def test_columns_types_and_skill_convention():
    frame = population.sample_population("census", 300, np.random.default_rng(1))
    required = [
        "skill",
        "annual_wage",
        "age",
        "sex",
        "occupation",
        "occupation_group",
        "state",
        "marital_status",
        "children",
        "persona",
    ]
    assert set(required) <= set(frame.columns)
    np.testing.assert_allclose(frame["skill"] * 40, frame["annual_wage"])
    assert (frame["annual_wage"] > 0).all() and (frame["age"] >= 16).all() and (frame["children"] >= 0).all()
    assert set(frame["sex"].astype(str)) <= {"female", "male"}
    assert all(isinstance(p, str) and p.startswith("You are") for p in frame["persona"])


def test_census_is_default_and_seeded():
    assert population.DEFAULT_SOURCE == "census" and "paper_gb2" in population.SOURCES
    a = population.sample_population("census", 500, np.random.default_rng(7))
    b = population.sample_population("census", 500, np.random.default_rng(7))
    c = population.sample_population("census", 500, np.random.default_rng(8))
    pd.testing.assert_frame_equal(a, b)
    assert not a["annual_wage"].equals(c["annual_wage"])


def test_committed_data_is_small():
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 2_000_000
