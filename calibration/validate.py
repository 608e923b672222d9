"""Validation report: a sampled ``census`` population against each source table.

Usage: ``python -m calibration.validate [--n 200000] [--seed 0]``. Prints one table of
target vs sampled figures per check, at the level the sampler draws from: occupation
shares (OEWS), % women by detailed occupation (CPS Table 11), age given group and sex (CPS
Tables 11b and 3), hourly wages by occupation and overall (OEWS) and the women/men wage
ratio (CPS Table 39). ``diff`` is in percentage points for shares, percent for wages and
ratio units for ratios. Rows with a tolerance say whether they are within it; the command
exits with status 1 if any is not. Rows without one are context.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from calibration import occupations, tables
from calibration.census import sample_census
from calibration.gb2 import sample_gb2_incomes

SPEC_GB2_QUANTILES = {0.50: 38_100.0, 0.90: 124_500.0}  # spec section 5, annual income at 40 h
LARGEST = 30  # detailed occupations checked one by one
SHARE_PP, WOMEN_PP, AGE_PP = 0.2, 5.0, 2.0
WAGE_PCT, OCCUPATION_WAGE_PCT, RATIO, GB2_PCT = 10.0, 6.0, 0.03, 2.0
PCT_NAMES = [f"p{round(p * 100)}" for p in tables.PERCENTILES]


def _rows(section, items, target, sampled, relative, tolerance=None):
    target, sampled = np.asarray(target, dtype=float), np.asarray(sampled, dtype=float)
    diff = (sampled / target - 1) * 100 if relative else sampled - target
    frame = pd.DataFrame(
        {"section": section, "item": list(items), "target": target, "sampled": sampled, "diff": diff}
    )
    frame["ok"] = "" if tolerance is None else np.where(np.abs(diff) <= tolerance, "yes", "NO")
    return frame


def _share(values: pd.Series, order) -> np.ndarray:
    return values.value_counts(normalize=True).reindex(order, fill_value=0).to_numpy() * 100


def _women_men_ratio(wage: pd.Series, female: pd.Series, by: pd.Series) -> pd.Series:
    medians = wage.groupby([by, female]).median().unstack()
    return medians[True] / medians[False]


def _occupations(frame, data_dir) -> list[pd.DataFrame]:
    oews = tables.oews_major_groups(data_dir)
    total, majors = oews.iloc[0], oews.iloc[1:]
    detailed = tables.oews_detailed(data_dir)
    cps, pairs = tables.cps_detailed(data_dir), tables.crosswalk(data_dir)
    code = frame["occupation_code"].astype(str)
    group = frame["occupation_group_code"].astype(str)
    female = frame["sex"].astype(str).eq("female")
    top = detailed.nlargest(LARGEST, "tot_emp")
    out = [
        _rows(
            "occupation group share vs OEWS May 2025 (pp)",
            majors["occupation_title"],
            majors["tot_emp"] / majors["tot_emp"].sum() * 100,
            _share(group, majors["soc_code"]),
            False,
            SHARE_PP,
        ),
        _rows(
            f"detailed occupation share vs OEWS May 2025, {LARGEST} largest (pp)",
            top["occupation_title"],
            top["tot_emp"] / detailed["tot_emp"].sum() * 100,
            _share(code, top["soc_code"]),
            False,
            SHARE_PP,
        ),
    ]
    women, _ = occupations.resolve(
        top["soc_code"], pairs, cps, cps["t11_pct_women"], cps["t11_total_employed_thousands"]
    )
    out.append(
        _rows(
            f"% women by detailed occupation vs CPS 2024 Table 11, {LARGEST} largest (pp)",
            top["occupation_title"],
            women,
            female.groupby(code).mean().reindex(top["soc_code"]).to_numpy() * 100,
            False,
            WOMEN_PP,
        )
    )
    # context: a group's share follows from its detailed occupations under OEWS weights
    sex = tables.cps_sex_by_group(data_dir).loc[majors["soc_code"]]
    out.append(
        _rows(
            "% women by group vs CPS 2024 Table 11 (pp; context: drawn by detailed occupation)",
            majors["occupation_title"],
            sex["t11_pct_women"],
            female.groupby(group).mean().reindex(majors["soc_code"]).to_numpy() * 100,
            False,
        )
    )

    wage = frame["hourly_wage"]
    out.append(
        _rows(
            "hourly wage vs OEWS May 2025, all occupations (%)",
            PCT_NAMES,
            total[list(tables.OEWS_HOURLY)],
            np.quantile(wage, tables.PERCENTILES),
            True,
            WAGE_PCT,
        )
    )
    sampled = wage.groupby(code).quantile([0.1, 0.5, 0.9]).unstack().reindex(top["soc_code"])
    for p, column in ((0.1, "h_pct10"), (0.5, "h_median"), (0.9, "h_pct90")):
        out.append(
            _rows(
                f"hourly wage p{round(p * 100)} by detailed occupation vs OEWS May 2025 "
                f"(teachers: annual / 2,080), {LARGEST} largest (%)",
                top["occupation_title"],
                top[column],
                sampled[p].to_numpy(),
                True,
                OCCUPATION_WAGE_PCT,
            )
        )

    cps_total = cps[cps["level"] == "total"].iloc[0]
    out.append(
        _rows(
            "women/men median hourly wage vs CPS 2024 Table 39, all workers (ratio)",
            ["women / men"],
            [cps_total["t39_median_weekly_women_usd"] / cps_total["t39_median_weekly_men_usd"]],
            [wage[female].median() / wage[~female].median()],
            False,
            RATIO,
        )
    )
    ratio, _ = occupations.resolve(
        top["soc_code"],
        pairs,
        cps,
        np.log(cps["t39_median_weekly_women_usd"] / cps["t39_median_weekly_men_usd"]),
        cps["t39_ft_ws_workers_men_thousands"] + cps["t39_ft_ws_workers_women_thousands"],
    )
    out.append(
        _rows(
            f"women/men median hourly wage by detailed occupation vs CPS 2024 Table 39, {LARGEST} largest "
            "(ratio; context: noisy where one sex is rare, capped where OEWS wages spread little)",
            top["occupation_title"],
            np.exp(ratio),
            _women_men_ratio(wage, female, code).reindex(top["soc_code"]).to_numpy(),
            False,
        )
    )
    return out


def _ages(frame, data_dir) -> list[pd.DataFrame]:
    majors = tables.oews_major_groups(data_dir).iloc[1:]
    codes = majors["soc_code"]
    cps_age, cps_total = tables.cps_age_by_group(data_dir)
    ages = frame["age_band"].astype(str)
    group = frame["occupation_group_code"].astype(str)
    out = [
        _rows(
            "age band share vs CPS 2024 Table 11b (pp)",
            tables.AGE_BANDS,
            cps_total / cps_total.sum() * 100,
            _share(ages, tables.AGE_BANDS),
            False,
            AGE_PP,
        )
    ]
    by_group = pd.crosstab(group, ages, normalize="index").reindex(codes)
    size = group.value_counts().reindex(codes).to_numpy()
    cps_age = cps_age.loc[codes]
    young, old = list(tables.CPS_AGE_COLUMNS[:2]), list(tables.CPS_AGE_COLUMNS[-2:])
    for label, cols, bands in (("16-24", young, tables.AGE_BANDS[:2]), ("55+", old, tables.AGE_BANDS[-2:])):
        target = (cps_age[cols].sum(axis=1) / cps_age.sum(axis=1)).to_numpy()
        # a small group's share is noisy: allow four standard errors where that exceeds AGE_PP
        tolerance = np.maximum(AGE_PP, 4 * np.sqrt(target * (1 - target) / size) * 100)
        out.append(
            _rows(
                f"share aged {label} by group vs CPS 2024 Table 11b (pp)",
                majors["occupation_title"],
                target * 100,
                by_group[list(bands)].sum(axis=1).to_numpy() * 100,
                False,
                tolerance,
            )
        )
    age_sex = tables.cps_age_by_sex(data_dir)
    for j, (label, sex) in enumerate((("men", "male"), ("women", "female"))):
        of_sex = ages[frame["sex"].astype(str).eq(sex)]
        out.append(
            _rows(
                f"age band share of {label} vs CPS 2024 Table 3 (pp)",
                tables.AGE_BANDS,
                age_sex[:, j] / age_sex[:, j].sum() * 100,
                _share(of_sex, tables.AGE_BANDS),
                False,
                AGE_PP,
            )
        )
    return out


def compare(frame: pd.DataFrame, gb2_incomes: np.ndarray, data_dir=tables.DATA_DIR) -> pd.DataFrame:
    """All comparisons as one frame (section, item, target, sampled, diff, ok)."""
    gb2 = _rows(
        "paper_gb2 income at 40 h vs spec section 5 (%)",
        [f"p{round(p * 100)}" for p in SPEC_GB2_QUANTILES],
        list(SPEC_GB2_QUANTILES.values()),
        np.quantile(gb2_incomes, list(SPEC_GB2_QUANTILES)),
        True,
        GB2_PCT,
    )
    return pd.concat([*_occupations(frame, data_dir), *_ages(frame, data_dir), gb2], ignore_index=True)


def report(n: int = 200_000, seed: int = 0, data_dir=tables.DATA_DIR) -> pd.DataFrame:
    """Sample ``n`` workers from ``census`` and ``paper_gb2`` and compare with the sources."""
    rng = np.random.default_rng(seed)
    frame = sample_census(n, rng, data_dir=data_dir, with_personas=False)
    return compare(frame, sample_gb2_incomes(n, rng), data_dir)


def format_report(result: pd.DataFrame) -> str:
    """Plain-text rendering, one block per section."""
    blocks = []
    for section, rows in result.groupby("section", sort=False):
        body = rows.drop(columns="section").to_string(
            index=False, float_format=lambda v: f"{v:,.3f}", max_colwidth=58
        )
        blocks.append(f"== {section}\n{body}")
    return "\n\n".join(blocks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare a sampled census population with its source tables."
    )
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = report(args.n, args.seed)
    print(f"census population, n={args.n:,}, seed={args.seed}\n")
    print(format_report(result))
    failed = result[result["ok"] == "NO"]
    checked = (result["ok"] != "").sum()
    print(f"\n{checked - len(failed)} of {checked} checks within tolerance")
    return 1 if len(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
