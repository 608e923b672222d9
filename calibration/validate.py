"""Validation report: a sampled ``census`` population against each source table.

Usage: ``python -m calibration.validate [--n 200000] [--seed 0]``. Prints one table of
target vs sampled figures per source; ``diff`` is in percentage points for shares and in
percent for wages. Rows with an acceptance tolerance say whether they are within it.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from calibration import tables
from calibration.census import sample_census
from calibration.gb2 import sample_gb2_incomes

SPEC_GB2_QUANTILES = {0.50: 38_100.0, 0.90: 124_500.0}  # spec section 5, annual income at 40 h


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


def compare(frame: pd.DataFrame, gb2_incomes: np.ndarray, data_dir=tables.DATA_DIR) -> pd.DataFrame:
    """All comparisons as one frame (section, item, target, sampled, diff, ok)."""
    out = []
    q = tables.earner_wage_quantiles(data_dir)
    probs = [p for p in (0.10, 0.25, 0.50, 0.75, 0.90) if p in q.index]
    out.append(
        _rows(
            "annual wage vs earner table (%)",
            [f"p{round(p * 100)}" for p in probs],
            q.loc[probs],
            np.quantile(frame["annual_wage"], probs),
            True,
            3.0,
        )
    )

    majors = tables.oews_major_groups(data_dir).set_index("soc_code")
    codes = majors.index
    out.append(
        _rows(
            "occupation group share vs OEWS May 2025 (pp)",
            majors["occupation_title"],
            majors["tot_emp"] / majors["tot_emp"].sum() * 100,
            _share(frame["occupation_group_code"].astype(str), codes),
            False,
            1.0,
        )
    )

    sex = tables.cps_sex_by_group(data_dir).loc[codes]
    female = frame["sex"].astype(str).eq("female").groupby(frame["occupation_group_code"].astype(str)).mean()
    out.append(
        _rows(
            "% women by group vs CPS 2024 Table 11 (pp)",
            majors["occupation_title"],
            sex["t11_pct_women"],
            female.reindex(codes).to_numpy() * 100,
            False,
            3.0,
        )
    )

    cps_age, cps_total = tables.cps_age_by_group(data_dir)
    ages = frame["age_band"].astype(str)
    out.append(
        _rows(
            "age band share vs CPS 2024 Table 11b (pp)",
            tables.AGE_BANDS,
            cps_total / cps_total.sum() * 100,
            _share(ages, tables.AGE_BANDS),
            False,
            2.0,
        )
    )

    young, old = tables.CPS_AGE_COLUMNS[:2], tables.CPS_AGE_COLUMNS[-2:]
    by_group = pd.crosstab(frame["occupation_group_code"].astype(str), ages, normalize="index").reindex(codes)
    cps_age = cps_age.loc[codes]
    for label, cols, bands in (("16-24", young, tables.AGE_BANDS[:2]), ("55+", old, tables.AGE_BANDS[-2:])):
        out.append(
            _rows(
                f"share aged {label} by group vs CPS 2024 Table 11b (pp)",
                majors["occupation_title"],
                cps_age[list(cols)].sum(axis=1) / cps_age.sum(axis=1) * 100,
                by_group[list(bands)].sum(axis=1).to_numpy() * 100,
                False,
            )
        )

    age_sex = tables.cps_age_by_sex(data_dir)
    female_by_age = frame["sex"].astype(str).eq("female").groupby(ages).mean().reindex(tables.AGE_BANDS)
    out.append(
        _rows(
            "% women by age band vs CPS 2024 Table 3 (pp)",
            tables.AGE_BANDS,
            age_sex[:, 1] / age_sex.sum(axis=1) * 100,
            female_by_age.to_numpy() * 100,
            False,
        )
    )

    medians = frame.groupby(frame["occupation_group_code"].astype(str))["annual_wage"].median().reindex(codes)
    overall = frame["annual_wage"].median()
    all_median = tables.read_table(tables.OEWS_MAJOR, ("soc_code", "a_median"), data_dir)
    all_median = float(all_median.loc[all_median["soc_code"] == "00-0000", "a_median"].iloc[0])
    out.append(
        _rows(
            "group median / overall median vs OEWS (%)",
            majors["occupation_title"],
            majors["a_median"] / all_median,
            medians / overall,
            True,
        )
    )
    out.append(
        _rows(
            "median wage ratio vs OEWS (%)",
            ["management / food preparation and serving"],
            [majors.loc["11-0000", "a_median"] / majors.loc["35-0000", "a_median"]],
            [medians["11-0000"] / medians["35-0000"]],
            True,
            15.0,
        )
    )

    out.append(
        _rows(
            "paper_gb2 income at 40 h vs spec section 5 (%)",
            [f"p{round(p * 100)}" for p in SPEC_GB2_QUANTILES],
            list(SPEC_GB2_QUANTILES.values()),
            np.quantile(gb2_incomes, list(SPEC_GB2_QUANTILES)),
            True,
            2.0,
        )
    )
    return pd.concat(out, ignore_index=True)


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
            index=False, float_format=lambda v: f"{v:,.2f}", max_colwidth=58
        )
        blocks.append(f"== {section}\n{body}")
    return "\n\n".join(blocks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Compare a sampled census population with its source tables."
    )
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"census population, n={args.n:,}, seed={args.seed}\n")
    print(format_report(report(args.n, args.seed)))


if __name__ == "__main__":
    main()
