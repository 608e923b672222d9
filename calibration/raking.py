"""Iterative proportional fitting (raking) of a non-negative array to target margins."""

from __future__ import annotations

import numpy as np


def rake(
    seed: np.ndarray, margins: dict[tuple[int, ...], np.ndarray], tol: float = 1e-10, max_iter: int = 2000
) -> np.ndarray:
    """Scale ``seed`` until its sums over the axes *not* in each key equal that margin.

    ``margins`` maps a tuple of kept axes (in increasing order) to the target array over
    those axes. Margins must agree on their common totals. Cells whose target margin is zero
    end at zero. Returns the fitted array (same shape as ``seed``).
    """
    fit = np.asarray(seed, dtype=float).copy()
    axes_all = tuple(range(fit.ndim))
    for _ in range(max_iter):
        worst = 0.0
        for keep, target in margins.items():
            drop = tuple(a for a in axes_all if a not in keep)
            current = fit.sum(axis=drop, keepdims=True)
            want = np.asarray(target, dtype=float).reshape(current.shape)
            ratio = np.divide(want, current, out=np.zeros_like(current), where=current > 0)
            fit *= ratio
            worst = max(worst, float(np.max(np.abs(current - want))) / max(float(want.sum()), 1e-300))
        if worst < tol:
            break
    return fit
