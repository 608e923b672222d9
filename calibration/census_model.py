"""The arrays the ``census`` sampler draws from, built once per process from ``calibration/data``.

* Occupation: OEWS May 2025 employment shares of the detailed occupations.
* Sex given detailed occupation: CPS 2024 Table 11 percent women of the matching CPS
  occupation (``calibration.occupations``; the CPS major group where none is published).
* Age band given occupation group and sex: from an [age, group, sex] array raked to CPS
  2024 Tables 11b (age x group), 9 (group x sex) and 3 (age x sex). The overall age mix
  then follows OEWS's occupation mix, a little younger than CPS's employed persons.
* Hourly wage given detailed occupation and sex: OEWS hourly percentiles, split by sex with
  the CPS 2024 Table 39 women/men ratio of median weekly earnings of full-time workers in
  the matching occupation (its major group, or all workers, where not published); see
  ``calibration.wage_model``.
* Single-year age and household (state, marital and filing status, children): a record of
  the earner table in the worker's age band, drawn by weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from calibration import occupations, tables, wage_model
from calibration.raking import rake


@dataclass(frozen=True)
class CensusModel:
    """Flat arrays for vectorised sampling. D detailed occupations, G groups, A age bands."""

    codes: np.ndarray  # [D] SOC detailed codes
    titles: np.ndarray  # [D] OEWS titles
    group: np.ndarray  # [D] index into group_codes
    group_codes: np.ndarray  # [G]
    group_titles: np.ndarray  # [G]
    cum_share: np.ndarray  # [D] cumulative OEWS employment shares
    female: np.ndarray  # [D] P(female | occupation)
    age_given: np.ndarray  # [G, 2 (male, female), A] P(age band | group, sex)
    log_knots: np.ndarray  # [D, 5] log hourly wage at the OEWS percentiles
    slope: np.ndarray  # [D, 4]
    score_mean: np.ndarray  # [D, 2 (male, female)]
    score_sd: np.ndarray  # [D]
    log_ratio: np.ndarray  # [D] CPS log women/men median earnings used for the occupation
    earners: pd.DataFrame  # earner table sorted by age band, with state_name
    earner_codes: dict  # column -> (codes per earner, categories) for the text columns
    band_cum: np.ndarray  # [earners] cumulative weights within the sorted table
    band_start: np.ndarray  # [A + 1] row offsets of each age band in ``earners``


def _earners(data_dir) -> tuple[pd.DataFrame, dict, np.ndarray, np.ndarray]:
    earners = tables.earner_table(data_dir)
    band = tables.age_band_index(earners["age"].to_numpy())
    earners = earners.assign(age_band=band).sort_values("age_band", kind="stable").reset_index(drop=True)
    names = tables.states(data_dir).set_index("state")["state_name"]
    earners["state_name"] = earners["state"].map(names)
    if earners["state_name"].isna().any():
        raise tables.DataFileError(
            f"calibration data file malformed: {Path(data_dir) / tables.EARNERS} (unknown state codes)"
        )
    start = np.searchsorted(earners["age_band"].to_numpy(), np.arange(len(tables.AGE_BANDS) + 1))
    if np.any(np.diff(start) == 0):
        raise tables.DataFileError(
            f"calibration data file malformed: {Path(data_dir) / tables.EARNERS} (an age band has no earners)"
        )
    text = ("state", "state_name", "marital_status", "filing_status")
    codes = {c: pd.factorize(earners[c].astype(str).to_numpy(), sort=True) for c in text}
    return earners, codes, np.cumsum(earners["weight"].to_numpy(dtype=float)), start


def _age_given_group_sex(data_dir, group_codes) -> np.ndarray:
    """P(age band | group, sex) from CPS Tables 11b, 9 and 3: array [group, sex, age band]."""
    cps_age, _ = tables.cps_age_by_group(data_dir)
    missing = sorted(set(group_codes) - set(cps_age.index))
    if missing:
        raise tables.DataFileError(
            f"calibration data file malformed: {Path(data_dir) / tables.CPS_AGE} (no rows for {missing})"
        )
    age_group = cps_age.loc[group_codes].to_numpy(dtype=float).T
    sex = tables.cps_sex_by_group(data_dir).loc[group_codes]
    group_sex = sex[["t09_men_employed_thousands", "t09_women_employed_thousands"]].to_numpy(dtype=float)
    age_sex = tables.cps_age_by_sex(data_dir)
    margins = {(0, 1): age_group, (1, 2): group_sex, (0, 2): age_sex}
    fit = rake(np.ones(age_group.shape + (2,)), {k: v / v.sum() for k, v in margins.items()}, tol=1e-9)
    return np.moveaxis(fit / fit.sum(axis=0, keepdims=True), 0, -1)


@lru_cache(maxsize=4)
def census_model(data_dir: Path | str = tables.DATA_DIR) -> CensusModel:
    """Build (once per process and data directory) the sampling arrays."""
    majors = tables.oews_major_groups(data_dir).iloc[1:].reset_index(drop=True)
    detailed = tables.oews_detailed(data_dir)
    group_codes = majors["soc_code"].to_numpy()
    group = pd.Index(group_codes).get_indexer(detailed["major_code"])
    if np.any(group < 0):
        path = Path(data_dir) / tables.OEWS_ALL
        raise tables.DataFileError(f"calibration data file malformed: {path} (codes outside major groups)")
    hourly = detailed[list(tables.OEWS_HOURLY)].to_numpy(dtype=float)
    fallback = majors[list(tables.OEWS_HOURLY)].to_numpy(dtype=float)[group]
    hourly = np.where(np.isfinite(hourly).all(axis=1, keepdims=True), hourly, fallback)

    cps, pairs = tables.cps_detailed(data_dir), tables.crosswalk(data_dir)
    codes = detailed["soc_code"].to_numpy()
    female, _ = occupations.resolve(
        codes, pairs, cps, cps["t11_pct_women"] / 100, cps["t11_total_employed_thousands"]
    )
    men, women = cps["t39_median_weekly_men_usd"], cps["t39_median_weekly_women_usd"]
    log_ratio, _ = occupations.resolve(
        codes,
        pairs,
        cps,
        np.log(women / men),
        cps["t39_ft_ws_workers_men_thousands"] + cps["t39_ft_ws_workers_women_thousands"],
    )
    total = cps[cps["level"] == "total"]
    if len(total) != 1 or not np.isfinite(female).all():
        raise tables.DataFileError(
            f"calibration data file malformed: {Path(data_dir) / tables.CPS_DETAILED} (total or group rows)"
        )
    log_ratio = np.where(np.isfinite(log_ratio), log_ratio, float(np.log(women / men)[total.index[0]]))

    share = detailed["tot_emp"].to_numpy(dtype=float)
    log_knots = wage_model.knots(hourly)
    male_mean, female_mean, sd = wage_model.sex_shift(log_knots, female, log_ratio)
    earners, earner_codes, band_cum, band_start = _earners(data_dir)
    return CensusModel(
        codes=codes,
        titles=detailed["occupation_title"].to_numpy(),
        group=group,
        group_codes=group_codes,
        group_titles=majors["occupation_title"].to_numpy(),
        cum_share=np.cumsum(share / share.sum()),
        female=female,
        age_given=_age_given_group_sex(data_dir, group_codes),
        log_knots=log_knots,
        slope=wage_model.slopes(log_knots),
        score_mean=np.column_stack([male_mean, female_mean]),
        score_sd=sd,
        log_ratio=log_ratio,
        earners=earners,
        earner_codes=earner_codes,
        band_cum=band_cum,
        band_start=band_start,
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
