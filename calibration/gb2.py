"""The reference skill prior: a GB2 fit to US incomes (ACS 2023), sampled by inverse CDF.

Parameters follow the GAMLSS parameterisation used by the reference implementation
(spec section 5): mu, sigma, nu, tau. A draw is an annual income at 40 hours a week;
skill is that income divided by 40 (dollars of annual income per weekly hour).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

GB2_MU = 72402.78177917618
GB2_SIGMA = 2.0721070746154746
GB2_NU = 0.48651871959386955
GB2_TAU = 1.1410398548220329

HOURS_AT_REFERENCE = 40.0


def gb2_quantile(p, mu=GB2_MU, sigma=GB2_SIGMA, nu=GB2_NU, tau=GB2_TAU):
    """Inverse CDF of the GB2 (GAMLSS form) at probabilities ``p``."""
    w = stats.f.ppf(np.asarray(p, dtype=float), 2.0 * nu, 2.0 * tau)
    return mu * ((nu / tau) * w) ** (1.0 / sigma)


def sample_gb2_incomes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Annual incomes at 40 h/week, ``n`` i.i.d. draws from the reference GB2."""
    return gb2_quantile(rng.random(n))


def sample_gb2_skills(n: int, rng: np.random.Generator) -> np.ndarray:
    """Skills (annual income per weekly hour) from the reference GB2 prior."""
    return sample_gb2_incomes(n, rng) / HOURS_AT_REFERENCE
