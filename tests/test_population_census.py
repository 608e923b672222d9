"""Acceptance checks of the census source against its source tables (200,000 workers).

Oracles are the published tables in ``calibration/data``, read here directly.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibration import population, tables
from calibration.census import sample_census

DATA = Path(tables.DATA_DIR)
N = 200_000
STANDARD_DEDUCTION_2025 = 15_750.0  # single filer, Tax-Calculator 6.8.0 (public_finance/data)

# The 30 largest OEWS detailed occupations (and two the issue names) with their CPS 2024
# Table 11 rows, paired by reading the titles (Census 2018 occupation list).
CPS_ROWS = {
    "31-1120": ("Home health aides", "Personal care aides"),
    "41-2031": ("Retail salespersons",),
    "35-3023": ("Fast food and counter workers",),
    "11-1021": ("General and operations managers",),
    "29-1141": ("Registered nurses",),
    "41-2011": ("Cashiers",),
    "53-7062": ("Laborers and freight, stock, and material movers, hand",),
    "53-7065": ("Stockers and order fillers",),
    "43-4051": ("Customer service representatives",),
    "43-9061": ("Office clerks, general",),
    "35-3031": ("Waiters and waitresses",),
    "37-2011": ("Janitors and building cleaners",),
    "53-3032": ("Driver/sales workers and truck drivers",),
    "43-6014": ("Secretaries and administrative assistants, except legal, medical, and executive",),
    "15-1252": ("Software developers",),
    "49-9071": ("Maintenance and repair workers, general",),
    "13-2011": ("Accountants and auditors",),
    "31-1131": ("Nursing assistants",),
    "43-1011": ("First-line supervisors of office and administrative support workers",),
    "25-9045": ("Teaching assistants",),
    "35-2014": ("Cooks",),
    "51-2090": ("Other assemblers and fabricators",),
    "25-2021": ("Elementary and middle school teachers",),
    "43-3031": ("Bookkeeping, accounting, and auditing clerks",),
    "33-9032": ("Security guards and gambling surveillance officers",),
    "41-3091": (
        "Sales representatives of services, except advertising, insurance, financial services, and travel",
    ),
    "41-4012": ("Sales representatives, wholesale and manufacturing",),
    "35-1012": ("First-line supervisors of food preparation and serving workers",),
    "41-1011": ("First-line supervisors of retail sales workers",),
    "47-2061": ("Construction laborers",),
}
ALSO_NAMED = {
    "37-2012": ("Maids and housekeeping cleaners",),
    "37-3011": ("Landscaping and groundskeeping workers",),
}


@pytest.fixture(scope="module")
def workers():
    return sample_census(N, np.random.default_rng(20240611), with_personas=False)


@pytest.fixture(scope="module")
def oews():
    frame = pd.read_csv(DATA / "oews_national_major_groups_may2025.csv")
    return frame[frame["soc_level"] == "major"].set_index("soc_code")


@pytest.fixture(scope="module")
def detailed():
    frame = pd.read_csv(DATA / "oews_national_all_occupations_may2025.csv")
    return frame[frame["soc_level"] == "detailed"].set_index("soc_code")


@pytest.fixture(scope="module")
def cps():
    frame = pd.read_csv(DATA / "cps_aa2024_detailed_occupations_sex_age_earnings.csv")
    return frame.set_index("cps_occupation")


def test_hourly_wage_percentiles_match_oews(workers):
    total = pd.read_csv(DATA / "oews_national_major_groups_may2025.csv").set_index("soc_code").loc["00-0000"]
    target = total[["h_pct10", "h_pct25", "h_median", "h_pct75", "h_pct90"]].to_numpy(float)
    sampled = np.quantile(workers["hourly_wage"], [0.10, 0.25, 0.50, 0.75, 0.90])
    np.testing.assert_allclose(sampled, target, rtol=0.10)


def test_women_men_median_hourly_wage_ratio_matches_cps(workers, cps):
    total = cps.loc["Total, 16 years and over"]
    target = total["t39_median_weekly_women_usd"] / total["t39_median_weekly_men_usd"]  # 1,043 / 1,261
    female = workers["sex"].astype(str).eq("female")
    sampled = workers.loc[female, "hourly_wage"].median() / workers.loc[~female, "hourly_wage"].median()
    assert abs(sampled - target) <= 0.03


def test_percent_women_in_largest_detailed_occupations_matches_cps(workers, detailed, cps):
    largest = detailed["tot_emp"].astype(float).nlargest(30).index
    assert set(largest) == set(CPS_ROWS)
    female = workers["sex"].astype(str).eq("female").groupby(workers["occupation_code"].astype(str)).mean()
    for code, rows in {**CPS_ROWS, **ALSO_NAMED}.items():
        rows = cps.loc[list(rows)]
        target = np.average(rows["t11_pct_women"], weights=rows["t11_total_employed_thousands"])
        assert abs(female[code] * 100 - target) <= 5.0, (code, female[code], target)


def test_each_largest_occupation_keeps_its_oews_percentiles(workers, detailed):
    wage = workers.groupby(workers["occupation_code"].astype(str))["hourly_wage"]
    sampled = wage.quantile([0.10, 0.50, 0.90]).unstack()
    for code in CPS_ROWS:
        published = detailed.loc[code, ["h_pct10", "h_median", "h_pct90"]].astype(float).to_numpy()
        if np.isnan(published).any():  # teachers: annual wages only
            published = detailed.loc[code, ["a_pct10", "a_median", "a_pct90"]].astype(float).to_numpy() / 2080
        np.testing.assert_allclose(sampled.loc[code].to_numpy(), published, rtol=0.06, err_msg=code)


def test_occupation_shares_match_oews(workers, oews, detailed):
    for codes, column, table in (
        (workers["occupation_group_code"], "occupation_group_code", oews),
        (workers["occupation_code"], "occupation_code", detailed),
    ):
        target = table["tot_emp"].astype(float) / table["tot_emp"].astype(float).sum()
        sampled = codes.astype(str).value_counts(normalize=True).reindex(target.index, fill_value=0)
        assert np.max(np.abs(sampled - target)) < 0.002, column


def test_percent_women_by_group_near_cps(workers):
    # Sex is drawn by detailed occupation; a group's share is its occupations' CPS shares
    # weighted by OEWS jobs, which differs from CPS Table 11's group share (persons,
    # self-employed included) by up to 5.5 points (personal care and service).
    cps = pd.read_csv(DATA / "cps_aa2024_t11_t09_occupation_group_by_sex.csv")
    cps = cps[cps["level"] == "major_group"].set_index("soc_major_code_approx")["t11_pct_women"]
    female = (
        workers["sex"].astype(str).eq("female").groupby(workers["occupation_group_code"].astype(str)).mean()
        * 100
    )
    assert np.max(np.abs(female.reindex(cps.index) - cps)) < 7.0


def test_age_band_shares_match_cps(workers):
    cps = pd.read_csv(DATA / "cps_aa2024_t11b_occupation_group_by_age.csv")
    total = cps[cps["level"] == "total"].iloc[0]
    columns = ["age_16_19", "age_20_24", "age_25_34", "age_35_44", "age_45_54", "age_55_64", "age_65plus"]
    target = np.array([total[f"{c}_thousands"] for c in columns], dtype=float)
    bins = pd.cut(workers["age"], [16, 20, 25, 35, 45, 55, 65, np.inf], right=False)
    sampled = bins.value_counts(normalize=True, sort=False).to_numpy()
    assert np.max(np.abs(sampled - target / target.sum())) < 0.02


def test_compact_earner_table_keeps_cps_age_shares():
    cps = pd.read_csv(DATA / "cps_aa2024_t11b_occupation_group_by_age.csv")
    total = cps[cps["level"] == "total"].iloc[0]
    target = np.array([total[c] for c in tables.CPS_AGE_COLUMNS], dtype=float)
    earners = tables.earner_table()
    shares = np.bincount(tables.age_band_index(earners["age"].to_numpy()), weights=earners["weight"])
    np.testing.assert_allclose(shares / shares.sum(), target / target.sum(), atol=5e-4)


def test_wage_depends_on_occupation_as_in_oews(workers, oews):
    medians = workers.groupby(workers["occupation_group_code"].astype(str))["annual_wage"].median()
    sampled = medians["11-0000"] / medians["35-0000"]
    target = oews.loc["11-0000", "a_median"] / oews.loc["35-0000", "a_median"]
    assert abs(sampled / target - 1) < 0.15


def test_few_full_time_incomes_below_the_standard_deduction(workers):
    assert (workers["skill"] * 40 < STANDARD_DEDUCTION_2025).mean() < 0.01


def test_detailed_occupation_belongs_to_its_group(workers):
    major = workers["occupation_code"].astype(str).str[:2] + "-0000"
    assert (major == workers["occupation_group_code"].astype(str)).all()


def test_columns_types_and_skill_convention():
    frame = population.sample_population("census", 300, np.random.default_rng(1))
    required = [
        "skill",
        "hourly_wage",
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
    np.testing.assert_allclose(frame["skill"], frame["hourly_wage"] * 52)  # a full year at the hourly rate
    np.testing.assert_allclose(frame["skill"] * 40, frame["annual_wage"])
    assert (frame["hourly_wage"] > 0).all() and (frame["age"] >= 16).all() and (frame["children"] >= 0).all()
    assert set(frame["sex"].astype(str)) <= {"female", "male"}
    assert (tables.age_band_index(frame["age"]) == frame["age_band"].cat.codes).all()
    assert all(isinstance(p, str) and p.startswith("You are") for p in frame["persona"])


def test_census_is_default_and_seeded():
    assert population.DEFAULT_SOURCE == "census" and "paper_gb2" in population.POPULATION_SOURCES
    a = population.sample_population("census", 500, np.random.default_rng(7))
    b = population.sample_population("census", 500, np.random.default_rng(7))
    c = population.sample_population("census", 500, np.random.default_rng(8))
    pd.testing.assert_frame_equal(a, b)
    assert not a["hourly_wage"].equals(c["hourly_wage"])


def test_median_skill_worker_works_40_hours():
    from model.model import EconomyModel

    model = EconomyModel(workers=2001, planner="us_federal", max_steps=2, agent_interval=0, rng=5)
    skill = model.workforce.skill
    median_worker = np.argsort(skill)[len(skill) // 2]
    assert abs(model.workforce.hours[median_worker] - 40.0) <= 0.5


def test_committed_data_is_small():
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 2_000_000
