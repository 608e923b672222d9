"""Wage likelihoods for occupations, from OEWS percentiles and an annual-hours factor.

OEWS publishes full-time-equivalent annual wages (hourly x 2,080) as p10..p90 per
occupation. Between those points the log wage is interpolated linearly in the normal
quantile (exact for a lognormal); beyond them the outer slopes continue (lognormal tails).

Observed annual earnings also reflect hours and weeks worked. They are modelled as the
occupation's full-time-equivalent wage times an annual-hours factor ``F`` (hours and weeks
relative to 2,080, independent of occupation), whose discrete distribution on a log grid is
fitted by non-negative least squares so that the OEWS occupation mixture reproduces the
earner table's wage distribution.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats

from calibration.tables import PERCENTILES

Z_POINTS = stats.norm.ppf(PERCENTILES)
LOG_HOURS_FACTORS = np.linspace(np.log(1e-3), np.log(2.5), 48)


def log_wage_cdf(x: np.ndarray, percentiles: np.ndarray) -> np.ndarray:
    """CDF at log wages ``x`` (any shape) for each row of ``percentiles`` (G x 5, dollars).

    Returns an array of shape ``x.shape + (G,)``.
    """
    logs = np.log(np.asarray(percentiles, dtype=float))
    logs = np.maximum.accumulate(logs + np.arange(logs.shape[1]) * 1e-9, axis=1)
    x = np.asarray(x, dtype=float)
    out = np.empty(x.shape + (logs.shape[0],))
    for g, xs in enumerate(logs):
        z = np.interp(x, xs, Z_POINTS)
        low_slope = (Z_POINTS[1] - Z_POINTS[0]) / (xs[1] - xs[0])
        high_slope = (Z_POINTS[-1] - Z_POINTS[-2]) / (xs[-1] - xs[-2])
        z = np.where(x < xs[0], Z_POINTS[0] + (x - xs[0]) * low_slope, z)
        z = np.where(x > xs[-1], Z_POINTS[-1] + (x - xs[-1]) * high_slope, z)
        out[..., g] = stats.norm.cdf(z)
    return out


def band_probabilities(log_edges: np.ndarray, percentiles: np.ndarray) -> np.ndarray:
    """P(wage band | occupation, hours factor): array [band, factor, occupation].

    ``log_edges`` are the band edges in log dollars, starting at -inf and ending at +inf.
    """
    shifted = log_edges[:, None] - LOG_HOURS_FACTORS[None, :]
    cdf = log_wage_cdf(shifted, percentiles)
    return np.diff(cdf, axis=0)


def fit_hours_factor(band_probs: np.ndarray, occupation_mix: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Distribution over ``LOG_HOURS_FACTORS`` so the mixture matches ``target`` band shares."""
    design = np.einsum("jkg,g->jk", band_probs, occupation_mix / occupation_mix.sum())
    target = target / target.sum()
    scale = 1.0 / np.sqrt(np.maximum(target, 1e-4))  # relative fit: thin bands count as much as thick ones
    a = np.vstack([design * scale[:, None], 100.0 * np.ones(design.shape[1])])
    b = np.concatenate([target * scale, [100.0]])
    weights, _ = optimize.nnls(a, b, maxiter=50 * a.shape[1])
    return weights / weights.sum()


def band_likelihood(band_probs: np.ndarray, hours_factor: np.ndarray) -> np.ndarray:
    """P(wage band | occupation) under the fitted hours factor: array [band, occupation]."""
    return np.einsum("jkg,k->jg", band_probs, hours_factor)
