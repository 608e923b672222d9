"""Loading and checking the calibration tables in ``calibration/data``.

Every loader raises :class:`DataFileError` with a one-line message naming the file when
the file is missing, unreadable or lacks what the sampler needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parent / "data"

OEWS_MAJOR = "oews_national_major_groups_may2025.csv"
OEWS_ALL = "oews_national_all_occupations_may2025.csv"
CPS_SEX = "cps_aa2024_t11_t09_occupation_group_by_sex.csv"
CPS_AGE = "cps_aa2024_t11b_occupation_group_by_age.csv"
CPS_AGE_SEX = "cps_aa2024_t03_employment_status_by_age_sex.csv"
CPS_DETAILED = "cps_aa2024_detailed_occupations_sex_age_earnings.csv"
CROSSWALK = "cps_occupation_soc_crosswalk.csv"
EARNERS = "earner_table.csv.gz"
STATES = "us_states_fips.csv"

AGE_BANDS = ("16-19", "20-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_EDGES = np.array([16, 20, 25, 35, 45, 55, 65])
CPS_AGE_COLUMNS = tuple(f"age_{b.replace('-', '_').replace('+', 'plus')}_thousands" for b in AGE_BANDS)
T03_AGE_ROWS = (
    "16 to 19 years",
    "20 to 24 years",
    "25 to 34 years",
    "35 to 44 years",
    "45 to 54 years",
    "55 to 64 years",
    "65 years and over",
)
PERCENTILES = (0.10, 0.25, 0.50, 0.75, 0.90)
OEWS_ANNUAL = ("a_pct10", "a_pct25", "a_median", "a_pct75", "a_pct90")
OEWS_HOURLY = ("h_pct10", "h_pct25", "h_median", "h_pct75", "h_pct90")
HOURS_PER_YEAR = 2080.0  # OEWS annualisation: hourly wage x 2,080
CPS_SEX_EARNINGS = (
    "t39_ft_ws_workers_men_thousands",
    "t39_median_weekly_men_usd",
    "t39_ft_ws_workers_women_thousands",
    "t39_median_weekly_women_usd",
)


class DataFileError(ValueError):
    """A calibration data file is missing or malformed."""


def age_band_index(age) -> np.ndarray:
    """Index into ``AGE_BANDS`` for ages (16 and over)."""
    return np.searchsorted(AGE_EDGES, np.asarray(age), side="right") - 1


def read_table(name: str, columns, data_dir: Path | str = DATA_DIR) -> pd.DataFrame:
    """Read one CSV from ``data_dir``, checking that it has ``columns``."""
    path = Path(data_dir) / name
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataFileError(f"calibration data file missing: {path}") from None
    except Exception as exc:  # parser, decompression and encoding errors alike
        raise DataFileError(f"calibration data file unreadable: {path} ({type(exc).__name__})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing or frame.empty:
        raise DataFileError(f"calibration data file malformed: {path} (missing columns {missing or 'rows'})")
    return frame


def _numeric(frame: pd.DataFrame, columns, path: str, positive: bool = True) -> pd.DataFrame:
    """Check that ``columns`` are finite numbers (positive where asked)."""
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if positive:
        bad |= values.to_numpy(dtype=float) < 0
    if bad.any():
        raise DataFileError(f"calibration data file malformed: {path} (non-numeric or negative values)")
    frame = frame.copy()
    frame[list(columns)] = values
    return frame


def oews_major_groups(data_dir=DATA_DIR) -> pd.DataFrame:
    """OEWS May 2025 total (``00-0000``, first row) and the 22 SOC major groups.

    Columns: code, title, employment, hourly wage percentiles (USD/hour).
    """
    path = Path(data_dir) / OEWS_MAJOR
    columns = ("soc_code", "occupation_title", "soc_level", "tot_emp", *OEWS_HOURLY)
    frame = read_table(OEWS_MAJOR, columns, data_dir)
    total = frame[frame["soc_level"] == "total"]
    majors = frame[frame["soc_level"] == "major"]
    if len(majors) != 22 or len(total) != 1:
        raise DataFileError(f"calibration data file malformed: {path} (expected a total and 22 major groups)")
    frame = _numeric(pd.concat([total, majors], ignore_index=True), ("tot_emp", *OEWS_HOURLY), str(path))
    return frame[["soc_code", "occupation_title", "tot_emp", *OEWS_HOURLY]]


def oews_detailed(data_dir=DATA_DIR) -> pd.DataFrame:
    """OEWS detailed occupations with employment and hourly wage percentiles (USD/hour).

    Where BLS publishes annual wages only (footnote 4, mostly teachers), hourly = annual /
    2,080, the OEWS annualisation; ``NA`` remains where neither is published. Rows without
    employment are dropped.
    """
    path = Path(data_dir) / OEWS_ALL
    frame = read_table(
        OEWS_ALL,
        ("soc_code", "occupation_title", "soc_level", "tot_emp", *OEWS_ANNUAL, *OEWS_HOURLY),
        data_dir,
    )
    frame = frame[frame["soc_level"] == "detailed"].reset_index(drop=True)
    numeric = frame[["tot_emp", *OEWS_ANNUAL, *OEWS_HOURLY]].apply(pd.to_numeric, errors="coerce")
    hourly = numeric[list(OEWS_HOURLY)].to_numpy(dtype=float)
    from_annual = numeric[list(OEWS_ANNUAL)].to_numpy(dtype=float) / HOURS_PER_YEAR
    hourly = np.where(np.isnan(hourly), from_annual, hourly)
    emp = numeric["tot_emp"].to_numpy(dtype=float)
    if frame.empty or np.any(emp[np.isfinite(emp)] < 0) or np.any(hourly[np.isfinite(hourly)] <= 0):
        raise DataFileError(f"calibration data file malformed: {path} (bad employment or wage values)")
    out = pd.DataFrame(
        {"soc_code": frame["soc_code"].astype(str), "occupation_title": frame["occupation_title"]}
    )
    out["major_code"] = out["soc_code"].str[:2] + "-0000"
    out["tot_emp"] = emp
    out[list(OEWS_HOURLY)] = hourly
    return out[np.isfinite(emp) & (emp > 0)].reset_index(drop=True)


def _cps_major(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[frame["level"] == "major_group"].set_index("soc_major_code_approx")
    return frame


def cps_sex_by_group(data_dir=DATA_DIR) -> pd.DataFrame:
    """CPS 2024 employed men and women (thousands) and percent women by SOC major group."""
    path = str(Path(data_dir) / CPS_SEX)
    cols = ("t09_men_employed_thousands", "t09_women_employed_thousands", "t11_pct_women")
    frame = read_table(CPS_SEX, ("soc_major_code_approx", "cps_occupation_group", "level", *cols), data_dir)
    frame = _cps_major(frame)
    if len(frame) != 22:
        raise DataFileError(f"calibration data file malformed: {path} (expected 22 major groups)")
    return _numeric(frame, cols, path)[["cps_occupation_group", *cols]]


def cps_age_by_group(data_dir=DATA_DIR) -> tuple[pd.DataFrame, np.ndarray]:
    """CPS 2024 employed (thousands) by SOC major group x age band, and the all-workers age row."""
    path = str(Path(data_dir) / CPS_AGE)
    frame = read_table(CPS_AGE, ("soc_major_code_approx", "level", *CPS_AGE_COLUMNS), data_dir)
    total = frame[frame["level"] == "total"]
    groups = _cps_major(frame)
    if len(groups) != 22 or len(total) != 1:
        raise DataFileError(
            f"calibration data file malformed: {path} (expected a total row and 22 major groups)"
        )
    groups = _numeric(groups, CPS_AGE_COLUMNS, path)[list(CPS_AGE_COLUMNS)]
    total = _numeric(total, CPS_AGE_COLUMNS, path)[list(CPS_AGE_COLUMNS)].to_numpy(dtype=float)[0]
    return groups, total


def cps_age_by_sex(data_dir=DATA_DIR) -> np.ndarray:
    """CPS 2024 employed (thousands), array [age band, (men, women)]."""
    path = str(Path(data_dir) / CPS_AGE_SEX)
    frame = read_table(CPS_AGE_SEX, ("sex", "age_group", "employed_thousands"), data_dir)
    out = np.zeros((len(AGE_BANDS), 2))
    for j, sex in enumerate(("men", "women")):
        rows = frame[frame["sex"] == sex].set_index("age_group")["employed_thousands"]
        try:
            out[:, j] = pd.to_numeric(rows.loc[list(T03_AGE_ROWS)]).to_numpy(dtype=float)
        except (KeyError, ValueError):
            raise DataFileError(f"calibration data file malformed: {path} (age rows for {sex})") from None
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise DataFileError(f"calibration data file malformed: {path} (non-numeric employment)")
    return out


def cps_detailed(data_dir=DATA_DIR) -> pd.DataFrame:
    """CPS 2024 Tables 11, 11b and 39 for every detailed occupation and aggregate, in table order.

    Adds ``level`` (total, cps_aggregate, major_group or occupation) and ``major_code``
    (the SOC major group a row falls under; empty for the total and CPS aggregates),
    from the group rows of the Table 11/9 file.
    """
    path = str(Path(data_dir) / CPS_DETAILED)
    numeric = ("t11_total_employed_thousands", "t11_pct_women", *CPS_SEX_EARNINGS)
    frame = read_table(CPS_DETAILED, ("row_order", "cps_occupation", *numeric), data_dir)
    values = frame[list(numeric)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if np.any(values[np.isfinite(values)] < 0) or not np.isfinite(values[:, 0]).all():
        raise DataFileError(f"calibration data file malformed: {path} (non-numeric or negative values)")
    frame = frame.sort_values("row_order").reset_index(drop=True)
    frame[list(numeric)] = values
    groups = read_table(CPS_SEX, ("soc_major_code_approx", "cps_occupation_group", "level"), data_dir)
    heading = groups.set_index("cps_occupation_group")
    level = frame["cps_occupation"].map(heading["level"]).fillna("occupation")
    code = frame["cps_occupation"].map(heading["soc_major_code_approx"]).where(level == "major_group", "")
    frame["level"] = level.to_numpy()
    # an occupation falls under the nearest heading above it (a CPS aggregate heading has no code)
    frame["major_code"] = code.where(level != "occupation").ffill().to_numpy()
    if (level == "major_group").sum() != 22 or (frame.loc[level == "occupation", "major_code"] == "").any():
        raise DataFileError(f"calibration data file malformed: {path} (occupation group headings not found)")
    return frame


def crosswalk(data_dir=DATA_DIR) -> pd.DataFrame:
    """CPS occupation title -> SOC code pairs (see ``calibration.build_crosswalk``)."""
    return read_table(CROSSWALK, ("cps_occupation", "soc_code", "method"), data_dir)


def states(data_dir=DATA_DIR) -> pd.DataFrame:
    """FIPS code, postal abbreviation and name of the 50 states and DC."""
    return read_table(STATES, ("fips", "state", "state_name"), data_dir)


def earner_table(data_dir=DATA_DIR) -> pd.DataFrame:
    """The compact earner table (one row per wage earner, with weights): age and household."""
    path = str(Path(data_dir) / EARNERS)
    cols = ("age", "filing_status", "marital_status", "state", "children", "weight")
    frame = read_table(EARNERS, cols, data_dir)
    frame = _numeric(frame, ("age", "children", "weight"), path)
    if (frame["age"] < 16).any() or frame["weight"].sum() <= 0:
        raise DataFileError(f"calibration data file malformed: {path} (age or weight out of range)")
    return frame
