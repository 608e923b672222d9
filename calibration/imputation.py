"""Imputation tables for occupation and sex, built once per process from the source tables.

* Occupation group: P(group | wage band, age band). A 3-way array [wage band, age band,
  group] is seeded with the OEWS-based wage likelihood of each group (see ``wage_model``;
  one hours factor for all groups and ages) and raked to two margins: the earner table's
  wage-band x age-band weights, and an age-band x group table that keeps the CPS 2024
  age-by-occupation odds ratios (to the power ``AGE_ODDS_POWER``) while its margins equal
  the earner age shares and the OEWS May 2025 employment shares.
* Detailed occupation: P(detailed | group, wage band), per group a [wage band, detailed]
  array seeded with OEWS detailed employment x wage likelihood, raked to the group's wage
  bands and to OEWS detailed employment shares.
* Sex: P(female | age band, group), from raking a 3-way [age, group, sex] array to CPS 2024
  age x group (Table 11b), group x sex (Table 9) and age x sex (Table 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from calibration import tables, wage_model
from calibration.raking import rake

N_WAGE_BANDS = 50
# Exponent on the CPS age-by-occupation odds ratios (1 = full CPS association, 0 = none). The
# earner table already ties youth to low annual earnings, so the full CPS association on top of
# a common hours factor pushes young-skewed occupations (food service) well below the OEWS
# wage relation between occupations; 0.7 keeps most of the age pattern and that relation.
AGE_ODDS_POWER = 0.7


@dataclass(frozen=True)
class ImputationModel:
    """Everything the census sampler needs, as flat arrays."""

    earners: pd.DataFrame  # earner table with columns wage_band, age_band
    earner_codes: dict  # column -> (codes per earner, categories) for the text columns
    cum_weight: np.ndarray  # cumulative earner weights
    group_codes: np.ndarray  # SOC major codes, length G
    group_titles: np.ndarray
    group_given_cell: np.ndarray  # [wage band, age band, G] conditional probabilities
    detail_codes: np.ndarray  # SOC detailed codes, length D
    detail_titles: np.ndarray
    detail_index: np.ndarray  # [G, max details]: index into detail_* arrays (padding repeats the first)
    detail_given_cell: np.ndarray  # [G, wage band, max details] conditional probabilities (padded 0)
    female_given_cell: np.ndarray  # [age band, G]
    joint: np.ndarray  # fitted [wage band, age band, G] weights (sum 1)
    hours_factor: np.ndarray  # fitted distribution over wage_model.LOG_HOURS_FACTORS


def _wage_bands(earners: pd.DataFrame) -> np.ndarray:
    """Log-wage band edges at equal weighted quantiles, open at both ends."""
    log_wage = np.log(earners["wage"].to_numpy(dtype=float))
    order = np.argsort(log_wage, kind="stable")
    cdf = np.cumsum(earners["weight"].to_numpy()[order]) / earners["weight"].sum()
    inner = np.interp(np.arange(1, N_WAGE_BANDS) / N_WAGE_BANDS, cdf, log_wage[order])
    return np.concatenate([[-np.inf], inner, [np.inf]])


def _age_group_target(cps_age: pd.DataFrame, age_shares: np.ndarray, group_shares: np.ndarray) -> np.ndarray:
    """[age band, group] keeping CPS odds ratios, with the given margins."""
    counts = cps_age.to_numpy(dtype=float).T
    seed = (counts / counts.sum(axis=0)) ** AGE_ODDS_POWER
    return rake(seed, {(0,): age_shares, (1,): group_shares})


def _female_share(data_dir, codes) -> np.ndarray:
    cps_age, _ = tables.cps_age_by_group(data_dir)
    sex = tables.cps_sex_by_group(data_dir)
    age_group = cps_age.loc[codes].to_numpy(dtype=float).T  # [age, group]
    group_sex = sex.loc[codes, ["t09_men_employed_thousands", "t09_women_employed_thousands"]].to_numpy(
        dtype=float
    )
    age_sex = tables.cps_age_by_sex(data_dir)
    total = age_group.sum()
    margins = {
        (0, 1): age_group / total,
        (1, 2): group_sex / group_sex.sum(),
        (0, 2): age_sex / age_sex.sum(),
    }
    fit = rake(np.ones(age_group.shape + (2,)), margins, tol=1e-9, max_iter=500)
    return fit[..., 1] / fit.sum(axis=2)


def _detail_tables(data_dir, majors, log_edges, band_weight_by_group, hours_factor):
    detailed = tables.oews_detailed(data_dir)
    detailed = detailed[np.isfinite(detailed["tot_emp"]) & (detailed["tot_emp"] > 0)].reset_index(drop=True)
    group_pct = majors.set_index("soc_code")[list(tables.OEWS_ANNUAL)]
    pct = detailed[list(tables.OEWS_ANNUAL)].to_numpy(dtype=float)
    fallback = group_pct.reindex(detailed["major_code"]).to_numpy(dtype=float)
    pct = np.where(np.isfinite(pct).all(axis=1, keepdims=True), pct, fallback)
    likelihood = wage_model.band_likelihood(wage_model.band_probabilities(log_edges, pct), hours_factor)
    members = [np.flatnonzero(detailed["major_code"].to_numpy() == code) for code in majors["soc_code"]]
    width = max(len(m) for m in members)
    table = np.zeros((len(members), len(log_edges) - 1, width))
    for g, idx in enumerate(members):
        emp = detailed["tot_emp"].to_numpy()[idx]
        seed = likelihood[:, idx] * emp
        fit = rake(
            seed,
            {(0,): band_weight_by_group[:, g], (1,): emp / emp.sum() * band_weight_by_group[:, g].sum()},
            tol=1e-9,
            max_iter=500,
        )
        total = fit.sum(axis=1, keepdims=True)
        table[g, :, : len(idx)] = np.where(total > 0, fit / np.where(total > 0, total, 1), emp / emp.sum())
    return detailed, members, table


@lru_cache(maxsize=4)
def imputation_model(data_dir: Path | str = tables.DATA_DIR) -> ImputationModel:
    """Build (once per process and data directory) the imputation tables."""
    earners = tables.earner_table(data_dir)
    majors = tables.oews_major_groups(data_dir)
    cps_age, _ = tables.cps_age_by_group(data_dir)
    codes = majors["soc_code"].to_numpy()
    missing = sorted(set(codes) - set(cps_age.index))
    if missing:
        raise tables.DataFileError(
            f"calibration data file malformed: {Path(data_dir) / tables.CPS_AGE} (no rows for {missing})"
        )
    cps_age = cps_age.loc[codes]

    log_edges = _wage_bands(earners)
    wage_band = np.searchsorted(log_edges[1:-1], np.log(earners["wage"].to_numpy(dtype=float)), side="right")
    age_band = tables.age_band_index(earners["age"].to_numpy())
    earners = earners.assign(wage_band=wage_band, age_band=age_band)
    n_age = len(tables.AGE_BANDS)
    cell_weight = np.zeros((N_WAGE_BANDS, n_age))
    np.add.at(cell_weight, (wage_band, age_band), earners["weight"].to_numpy())
    cell_weight /= cell_weight.sum()

    group_shares = majors["tot_emp"].to_numpy(dtype=float)
    group_shares = group_shares / group_shares.sum()
    age_group = _age_group_target(cps_age, cell_weight.sum(axis=0), group_shares)

    band_probs = wage_model.band_probabilities(
        log_edges, majors[list(tables.OEWS_ANNUAL)].to_numpy(dtype=float)
    )
    hours = wage_model.fit_hours_factor(band_probs, age_group.sum(axis=0), cell_weight.sum(axis=1))
    seed = np.repeat(wage_model.band_likelihood(band_probs, hours)[:, None, :], n_age, axis=1)
    joint = rake(seed, {(0, 1): cell_weight, (1, 2): age_group}, tol=1e-9)
    totals = joint.sum(axis=2, keepdims=True)
    group_given_cell = np.where(totals > 0, joint / np.where(totals > 0, totals, 1), group_shares)

    detailed, members, detail_table = _detail_tables(data_dir, majors, log_edges, joint.sum(axis=1), hours)

    names = tables.states(data_dir).set_index("state")["state_name"]
    earners = earners.assign(state_name=earners["state"].map(names))
    if earners["state_name"].isna().any():
        raise tables.DataFileError(
            f"calibration data file malformed: {Path(data_dir) / tables.EARNERS} (unknown state codes)"
        )
    text_columns = ("state", "state_name", "marital_status", "filing_status")
    earner_codes = {c: pd.factorize(earners[c].astype(str).to_numpy(), sort=True) for c in text_columns}
    return ImputationModel(
        earners=earners,
        earner_codes=earner_codes,
        cum_weight=np.cumsum(earners["weight"].to_numpy(dtype=float)),
        group_codes=codes,
        group_titles=majors["occupation_title"].to_numpy(),
        group_given_cell=group_given_cell,
        detail_codes=detailed["soc_code"].to_numpy(),
        detail_titles=detailed["occupation_title"].to_numpy(),
        detail_index=np.array([np.resize(m, detail_table.shape[2]) for m in members]),
        detail_given_cell=detail_table,
        female_given_cell=_female_share(data_dir, codes),
        joint=joint,
        hours_factor=hours,
    )


def categorical_rows(probs: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw one category per row of ``probs[rows]`` using uniforms ``u`` (vectorised)."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    cum[:, -1] = 1.0
    offsets = np.arange(len(cum))[:, None]
    flat = (cum + offsets).ravel()
    picked = np.searchsorted(flat, rows + u, side="right") - rows * probs.shape[1]
    return np.minimum(picked, probs.shape[1] - 1)
