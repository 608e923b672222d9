"""Hourly wages within an occupation, from OEWS percentiles and a CPS women/men ratio.

OEWS publishes p10, p25, p50, p75 and p90 of each occupation's hourly wage. A wage is
``exp(L(z))`` with ``L`` linear in the standard-normal score ``z`` between those points
(exact for a lognormal) and continuing with the outer slopes beyond them (lognormal tails),
so ``z ~ N(0, 1)`` reproduces the published percentiles.

Sex shifts the score: ``z ~ N(mu_s, sigma^2)`` with ``mu_female = (1 - f) d``, ``mu_male =
-f d`` and ``sigma^2 = 1 - f (1 - f) d^2`` for an occupation with female share ``f``. The
pooled score keeps mean 0 and variance 1, and ``d`` is solved so that the women/men median
ratio ``exp(L(mu_female) - L(mu_male))`` equals the CPS ratio. The pooled score is a
two-normal mixture, close to normal while the sex term ``f (1 - f) d^2`` is a small part of
the variance; it is capped at ``MAX_SEX_VARIANCE``, which keeps an occupation's pooled
p10..p90 within 2 percentile points of OEWS's (1.3 at most for the OEWS occupations).
Where the cap binds (a narrow OEWS wage range, or a ratio borrowed from a broader CPS
row), the occupation's women/men gap is smaller than the CPS one.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from calibration.tables import PERCENTILES

Z_POINTS = stats.norm.ppf(PERCENTILES)
MAX_SHIFT = 2.0  # |d|, in standard deviations of the pooled score
MAX_SEX_VARIANCE = 0.2  # largest share of the score variance that sex may explain


def knots(percentiles: np.ndarray) -> np.ndarray:
    """Log wages at ``Z_POINTS`` per row (strictly increasing, so every segment has a slope)."""
    logs = np.log(np.asarray(percentiles, dtype=float))
    return np.maximum.accumulate(logs + np.arange(logs.shape[1]) * 1e-6, axis=1)


def slopes(log_knots: np.ndarray) -> np.ndarray:
    """Slope of ``L`` on each of the four segments: array [row, 4]."""
    return np.diff(log_knots, axis=1) / np.diff(Z_POINTS)


def log_wage(z: np.ndarray, rows: np.ndarray, log_knots: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """``L(z)`` for scores ``z`` of the occupations ``rows`` (vectorised)."""
    segment = np.clip(np.searchsorted(Z_POINTS, z) - 1, 0, len(Z_POINTS) - 2)
    return log_knots[rows, segment] + (z - Z_POINTS[segment]) * slope[rows, segment]


def sex_shift(log_knots: np.ndarray, female: np.ndarray, log_ratio: np.ndarray) -> tuple[np.ndarray, ...]:
    """Score means (male, female) and the common standard deviation per occupation.

    Solves ``L(mu_female) - L(mu_male) = log_ratio`` for ``d`` by bisection (the gap grows
    with ``d``) within the bounds that ``MAX_SHIFT`` and ``MAX_SEX_VARIANCE`` set.
    """
    rows = np.arange(len(log_knots))
    slope = slopes(log_knots)
    f = np.asarray(female, dtype=float)

    def gap(d):
        return log_wage((1 - f) * d, rows, log_knots, slope) - log_wage(-f * d, rows, log_knots, slope)

    bound = np.minimum(MAX_SHIFT, np.sqrt(MAX_SEX_VARIANCE / np.maximum(f * (1 - f), 1e-12)))
    low, high = -bound, bound.copy()
    for _ in range(60):
        mid = (low + high) / 2
        above = gap(mid) > log_ratio
        high, low = np.where(above, mid, high), np.where(above, low, mid)
    d = (low + high) / 2
    sigma = np.sqrt(1 - f * (1 - f) * d**2)
    return -f * d, (1 - f) * d, sigma
