"""Rebuild ``data/earner_table.csv.gz`` (age and household of wage earners) from the taxcalc sdist.

Usage::

    pip download taxcalc==6.8.0 --no-deps --no-binary :all: -d /tmp/tc
    python -m calibration.build_earner_table /tmp/tc/taxcalc-6.8.0.tar.gz

Steps (see ``data/SOURCES.md``):

1. Read ``taxcalc/cps.csv.gz`` (tax units, income years 2012-2014, treated as 2014) and the
   2024 weights ``WT2024`` x 0.01 from ``taxcalc/cps_weights.csv.gz``.
2. Split each unit into its head and spouse; keep people aged 16+ with wages > 0.
3. Grow wages to 2024 dollars by the product of taxcalc's ``AWAGE`` growth factors for 2015-2024.
4. Post-stratify weights so that age-band shares equal CPS 2024 employment (Table 11b).
5. Write a systematic probability-proportional-to-weight sample (ordered by age band and
   wage) of ``--size`` earners, each carrying an equal share of the total weight. The
   ``census`` source reads age and household from it; wages come from OEWS instead.
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from calibration import tables

DATA_YEAR, TARGET_YEAR = 2014, 2024
FILING = {1: "single", 2: "joint", 3: "separate", 4: "head_of_household"}
MARRIED = {1: "single", 2: "married", 3: "married", 4: "single"}


def _member(archive: tarfile.TarFile, suffix: str) -> pd.DataFrame:
    name = next(m for m in archive.getnames() if m.endswith(suffix))
    compression = "gzip" if suffix.endswith(".gz") else None
    return pd.read_csv(archive.extractfile(name), compression=compression)


def wage_growth_factor(growfactors: pd.DataFrame) -> float:
    """Cumulative AWAGE growth from the data year to the target year."""
    years = growfactors.set_index("YEAR")["AWAGE"]
    return float(years.loc[DATA_YEAR + 1 : TARGET_YEAR].prod())


def earners(cps: pd.DataFrame, weights: pd.Series, factor: float) -> pd.DataFrame:
    """One row per wage earner (head or spouse) with household attributes."""
    children = cps["nu18"] - (cps["age_head"].between(1, 17)) - (cps["age_spouse"].between(1, 17))
    common = {
        "filing_status": cps["MARS"].map(FILING),
        "marital_status": cps["MARS"].map(MARRIED),
        "fips": cps["fips"],
        "children": children.clip(lower=0),
        "weight": weights * 0.01,
    }
    head = pd.DataFrame({"wage": cps["e00200p"], "age": cps["age_head"], **common})
    spouse = pd.DataFrame({"wage": cps["e00200s"], "age": cps["age_spouse"], **common})
    people = pd.concat([head, spouse], ignore_index=True)
    people = people[(people["wage"] > 0) & (people["age"] >= 16)].copy()
    people["wage"] = people["wage"] * factor
    return people.reset_index(drop=True)


def post_stratify(people: pd.DataFrame, target_shares: np.ndarray) -> pd.DataFrame:
    """Scale weights within age bands so band shares equal ``target_shares``."""
    band = tables.age_band_index(people["age"].to_numpy())
    totals = np.bincount(band, weights=people["weight"], minlength=len(target_shares))
    scale = target_shares / target_shares.sum() * people["weight"].sum() / totals
    people = people.copy()
    people["weight"] = people["weight"] * scale[band]
    return people


def systematic_sample(people: pd.DataFrame, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """Systematic PPS sample of ``size`` rows, ordered by age band then wage."""
    ordered = people.assign(band=tables.age_band_index(people["age"].to_numpy()))
    ordered = ordered.sort_values(["band", "wage"], kind="stable").reset_index(drop=True)
    cum = np.cumsum(ordered["weight"].to_numpy())
    step = cum[-1] / size
    points = (rng.random() + np.arange(size)) * step
    picked = ordered.iloc[np.searchsorted(cum, points, side="right")].copy()
    picked["weight"] = step
    return picked.drop(columns="band")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="path to taxcalc-6.8.0.tar.gz")
    parser.add_argument("--out", type=Path, default=tables.DATA_DIR)
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=20240)
    args = parser.parse_args(argv)

    with tarfile.open(args.sdist) as archive:
        cps = _member(archive, "taxcalc/cps.csv.gz")
        weights = _member(archive, "taxcalc/cps_weights.csv.gz")[f"WT{TARGET_YEAR}"]
        factor = wage_growth_factor(_member(archive, "taxcalc/growfactors.csv"))
    _, cps_ages = tables.cps_age_by_group(args.out)
    people = post_stratify(earners(cps, weights, factor), cps_ages)
    state_codes = tables.states(args.out).set_index("fips")["state"]

    sample = systematic_sample(people, args.size, np.random.default_rng(args.seed))
    sample["state"] = sample["fips"].map(state_codes)
    sample["wage"] = sample["wage"].round(0).astype(int)
    sample["weight"] = sample["weight"].round(2)
    cols = ["wage", "age", "filing_status", "marital_status", "state", "children", "weight"]
    sample[cols].to_csv(args.out / tables.EARNERS, index=False, compression={"method": "gzip", "mtime": 0})
    print(f"wage growth factor {DATA_YEAR}->{TARGET_YEAR}: {factor:.6f}")
    weighted = people["weight"].sum() / 1e6
    print(f"earners: {len(people):,} records, {weighted:.1f}M weighted; sample {len(sample):,}")


if __name__ == "__main__":
    main()
