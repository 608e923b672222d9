"""CPS figures for OEWS detailed occupations, through the title crosswalk.

A crosswalk code covers the detailed SOC codes that start with its prefix: ``XX-0000`` the
major group, ``XX-X000`` a minor group, ``XX-XXX0`` a broad occupation, any other code
itself. Each detailed occupation takes the employment-weighted mean over the CPS rows at
the most specific level that covers it and publishes the figure; failing that, its CPS
major group's figure.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd


def prefix(code: str) -> str:
    """The part of a SOC code that its detailed members share."""
    if code.endswith("-0000"):
        return code[:3]
    if code.endswith("000"):
        return code[:4]
    if code.endswith("0"):
        return code[:6]
    return code


def resolve(
    codes, pairs: pd.DataFrame, cps: pd.DataFrame, value: pd.Series, weight: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """Per detailed SOC code in ``codes``: the CPS figure and the prefix length it came from.

    ``pairs`` has columns cps_occupation and soc_code; ``cps`` is ``tables.cps_detailed()``;
    ``value`` and ``weight`` are indexed like ``cps`` (``NaN`` = not published). The prefix
    length is 7 for a detailed match, 6 broad, 4 minor, 3 major group.
    """
    row = pd.Series(np.arange(len(cps)), index=cps["cps_occupation"])
    value, weight = value.to_numpy(dtype=float), weight.to_numpy(dtype=float)
    by_prefix = defaultdict(list)
    for title, code in zip(pairs["cps_occupation"], pairs["soc_code"]):
        if title in row.index and np.isfinite(value[row[title]]):
            by_prefix[prefix(code)].append(row[title])
    majors = cps[cps["level"] == "major_group"]
    for code, r in zip(majors["major_code"], np.flatnonzero(cps["level"] == "major_group")):
        if np.isfinite(value[r]):
            by_prefix.setdefault(code[:3], [r])
    out = np.full(len(codes), np.nan)
    level = np.zeros(len(codes), dtype=int)
    for i, code in enumerate(codes):
        for length in (7, 6, 4, 3):
            rows = by_prefix.get(code[:length])
            if rows:
                out[i] = np.average(value[rows], weights=np.maximum(weight[rows], 1e-9))
                level[i] = length
                break
    return out, level
