"""Worker preferences, exact vectorised best responses and the rebate equilibrium.

A worker of skill ``s`` earning ``z = s * l`` for ``l`` weekly hours consumes
``C = z - T(z) + R (+ base consumption)``, where ``R`` is the lump-sum rebate.
Because ``T`` is piecewise linear, the budget is linear on each income segment where
the marginal rate is constant: ``C = s (1 - t_k) l + V_k`` with the segment's virtual
income ``V_k = R + t_k z_k - T(z_k)`` (``z_k`` the segment's lower edge). Utility is
concave on each segment, so the exact optimum is the best of the per-segment optima,
which covers every kink, 0 hours and the cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from public_finance.taxes import TaxSchedule

HOURS_CAP = 100.0
CALIBRATION_HOURS = 40.0
REPRESENTATIVE_SIZE = 20_000
# Relative budget gap up to which a rebate counts as an equilibrium: ten times what the solver leaves at
# a continuous root, so a larger gap means the budget jumps across the rebate.
BUDGET_TOLERANCE = 1e-8


@dataclass(frozen=True)
class LinearPreferences:
    """The paper's utility ``u = C - c * l**delta`` (consumption enters linearly)."""

    c: float = 0.0005
    delta: float = 3.5
    base_consumption: float = 0.0
    name: str = "paper"

    @property
    def frisch_elasticity(self) -> float:
        return 1.0 / (self.delta - 1.0)

    def utility(self, consumption, hours):
        return consumption - self.c * np.power(hours, self.delta)

    def marginal_utility(self, consumption):
        return np.ones_like(np.asarray(consumption, dtype=float))

    @property
    def disutility_slope(self) -> tuple[float, float]:
        """``(A, p)`` with marginal disutility ``A * l**p``."""
        return self.c * self.delta, self.delta - 1.0

    def segment_optimum(self, net_wage, virtual_income, lower, upper):
        interior = np.power(np.maximum(net_wage, 0.0) / (self.c * self.delta), 1.0 / (self.delta - 1.0))
        return np.clip(interior, lower, upper)

    def compensated_elasticity(self, hours, net_wage, consumption):
        return np.full(np.shape(hours), self.frisch_elasticity)

    def uncompensated_elasticity(self, hours, net_wage, consumption):
        """Without income effects it equals the compensated elasticity."""
        return self.compensated_elasticity(hours, net_wage, consumption)

    @property
    def income_effects(self) -> bool:
        return False


@dataclass(frozen=True)
class IsoelasticPreferences:
    """``u = (C**(1-eta) - 1)/(1-eta) - kappa * l**(1+1/frisch) / (1+1/frisch)``; log utility at eta = 1."""

    kappa: float
    eta: float = 1.0
    frisch: float = 0.4
    base_consumption: float = 1000.0
    name: str = "calibrated"

    @property
    def frisch_elasticity(self) -> float:
        return self.frisch

    def consumption_utility(self, consumption):
        consumption = np.asarray(consumption, dtype=float)
        with np.errstate(divide="ignore"):
            if self.eta == 1.0:
                return np.log(consumption)
            return (np.power(consumption, 1.0 - self.eta) - 1.0) / (1.0 - self.eta)

    def disutility(self, hours):
        power = 1.0 + 1.0 / self.frisch
        return self.kappa * np.power(hours, power) / power

    def utility(self, consumption, hours):
        return self.consumption_utility(consumption) - self.disutility(hours)

    def marginal_utility(self, consumption):
        return np.power(np.asarray(consumption, dtype=float), -self.eta)

    @property
    def disutility_slope(self) -> tuple[float, float]:
        """``(A, p)`` with marginal disutility ``A * l**p``."""
        return self.kappa, 1.0 / self.frisch

    def _foc(self, hours, net_wage, income):
        return net_wage * np.power(net_wage * hours + income, -self.eta) - self.kappa * np.power(hours, 1.0 / self.frisch)

    def segment_optimum(self, net_wage, virtual_income, lower, upper):
        """Root of the first-order condition on ``[lower, upper]`` (it falls strictly in hours)."""
        income = virtual_income + self.base_consumption
        hours = np.array(lower, dtype=float, copy=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            at_upper = self._foc(upper, net_wage, income) >= 0
            rising = self._foc(lower, net_wage, income) > 0
        hours[at_upper] = np.broadcast_to(upper, hours.shape)[at_upper]
        inside = rising & ~at_upper & (upper > lower)
        if inside.any():
            w = np.broadcast_to(net_wage, hours.shape)[inside]
            v = np.broadcast_to(income, hours.shape)[inside]
            lo = np.broadcast_to(lower, hours.shape)[inside].copy()
            hi = np.broadcast_to(upper, hours.shape)[inside].copy()
            hours[inside] = self._solve(w, v, lo, hi)
        return hours

    def _solve(self, w, v, lo, hi):
        """Newton's method on the first-order condition in log hours.

        ``h(y) = log w - eta log(w e^y + v) - log kappa - y / frisch`` is concave and
        decreasing when the segment's virtual income is non-negative, so Newton steps started
        right of the root (at ``hi``, or at the root without non-labour income if smaller)
        fall monotonically onto it. With negative virtual income (after a falling rate) it is
        convex: steps are clamped to ``[lo, hi]``, after which they rise monotonically.
        """
        inv = 1.0 / self.frisch
        log_w, log_kappa = np.log(w), np.log(self.kappa)
        with np.errstate(divide="ignore"):
            y_lo, y_hi = np.log(lo), np.log(hi)
        y = np.clip(((1.0 - self.eta) * log_w - log_kappa) / (self.eta + inv), y_lo, y_hi)
        active = np.arange(y.size)
        for _ in range(60):
            wy = w[active] * np.exp(y[active])
            c = wy + v[active]
            h = log_w[active] - self.eta * np.log(c) - log_kappa - y[active] * inv
            step = h / (self.eta * wy / c + inv)
            y[active] = np.clip(y[active] + step, y_lo[active], y_hi[active])
            active = active[np.abs(step) > 1e-13]
            if active.size == 0:
                break
        return np.clip(np.exp(y), lo, hi)

    def compensated_elasticity(self, hours, net_wage, consumption):
        """Elasticity of hours (and income) with respect to the net wage, utility held constant:
        ``frisch / (1 + frisch eta s)`` with ``s`` the share of consumption earned at the margin's net wage."""
        share = net_wage * hours / consumption
        return self.frisch / (1.0 + self.frisch * self.eta * share)

    def uncompensated_elasticity(self, hours, net_wage, consumption):
        """The same with virtual income held constant: ``frisch (1 - eta s) / (1 + frisch eta s)``.

        It is below the compensated one by the income effect ``-frisch eta s / (1 + frisch eta s)``,
        which is ``(1 - t) dz/dR`` in Saez's (2001) notation.
        """
        share = net_wage * hours / consumption
        return self.frisch * (1.0 - self.eta * share) / (1.0 + self.frisch * self.eta * share)

    @property
    def income_effects(self) -> bool:
        return self.eta != 0.0


Preferences = LinearPreferences | IsoelasticPreferences


@dataclass
class Outcome:
    """What every worker does and gets under one schedule and rebate."""

    hours: np.ndarray
    income: np.ndarray
    tax: np.ndarray
    consumption: np.ndarray
    utility: np.ndarray
    rebate: float

    @property
    def revenue(self) -> float:
        return float(self.tax.sum())

    @property
    def budget_gap(self) -> float:
        """Mean tax minus the rebate paid: zero when the rebate is exactly financed."""
        return float(self.tax.mean()) - self.rebate

    @property
    def balanced(self) -> bool:
        """Whether the rebate equals the mean tax (to the equilibrium solver's tolerance).

        An :func:`equilibrium` that is not balanced means no rebate equilibrium exists: the budget jumps
        across the rebate at some workers' switch between budget segments (possible when rates fall).
        """
        return abs(self.budget_gap) <= BUDGET_TOLERANCE * (1.0 + abs(self.rebate))


def settle(skills, hours, schedule: TaxSchedule, rebate: float | None, preferences: Preferences) -> Outcome:
    """Income, tax, consumption and utility of given hours, with ``rebate`` paid to everyone.

    ``rebate=None`` balances the budget: the rebate is this step's revenue divided equally.
    """
    income = skills * hours
    tax = schedule.tax(income)
    rebate = float(tax.mean()) if rebate is None else float(rebate)
    consumption = income - tax + rebate + preferences.base_consumption
    return Outcome(hours, income, tax, consumption, preferences.utility(consumption, hours), rebate)


def best_response(skills, schedule: TaxSchedule, rebate: float, preferences: Preferences,
                  *, cap: float = HOURS_CAP, grid: float | None = None) -> np.ndarray:
    """Utility-maximising weekly hours of every worker, taking ``rebate`` as given.

    ``grid`` restricts hours to ``0, grid, 2*grid, ..., cap`` (the paper's 10-hour menu);
    otherwise the optimum is exact over ``[0, cap]``.
    """
    skills = np.asarray(skills, dtype=float)
    if grid:
        return _grid_best_response(skills, schedule, rebate, preferences, cap, grid)
    lower_z, upper_z, rates = schedule.segments()
    virtual = rebate + rates * lower_z - schedule.tax(lower_z)
    if np.all(np.diff(rates) >= 0):
        segment = _optimal_segment(skills, schedule, lower_z, rates, rebate, preferences, cap)
        lower = np.minimum(lower_z[segment] / skills, cap)
        upper = np.minimum(upper_z[segment] / skills, cap)
        return preferences.segment_optimum(skills * (1.0 - rates[segment]), virtual[segment], lower, upper)
    s = skills[:, None]
    lower = np.minimum(lower_z[None, :] / s, cap)
    upper = np.minimum(upper_z[None, :] / s, cap)
    net_wage = s * (1.0 - rates[None, :])
    feasible = lower_z[None, :] < s * cap
    with np.errstate(invalid="ignore"):
        hours = preferences.segment_optimum(net_wage, virtual[None, :], lower, upper)
        utility = preferences.utility(net_wage * hours + virtual[None, :] + preferences.base_consumption, hours)
    best = np.argmax(np.where(feasible, utility, -np.inf), axis=1)
    return hours[np.arange(skills.size), best]


def _optimal_segment(skills, schedule, lower_z, rates, rebate, preferences, cap):
    """Index of the budget segment holding each worker's optimum, for a convex budget.

    With marginal rates that never fall, utility is concave in hours along the budget, so
    the optimum lies in the first segment at whose upper kink utility no longer rises.
    At kink income ``z`` the condition ``s (1 - t) u'(C(z)) > A (z/s)**p`` reads
    ``s**(1+p) > A z**p / ((1 - t) u'(C(z)))``: one threshold per kink for everyone.
    """
    kinks = lower_z[1:]
    if kinks.size == 0:
        return np.zeros(skills.size, dtype=np.intp)
    consumption = kinks - schedule.tax(kinks) + rebate + preferences.base_consumption
    scale, power = preferences.disutility_slope
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = (1.0 - rates[:-1]) * preferences.marginal_utility(consumption)
        threshold = np.where(gain > 0, scale * np.power(kinks, power) / gain, np.inf)
    rises = (np.power(skills, 1.0 + power)[:, None] > threshold[None, :]) & (kinks[None, :] < skills[:, None] * cap)
    return np.logical_and.accumulate(rises, axis=1).sum(axis=1)


def _grid_best_response(skills, schedule, rebate, preferences, cap, grid):
    menu = np.arange(0.0, cap + 1e-9, grid)
    income = skills[:, None] * menu[None, :]
    consumption = income - schedule.tax(income) + rebate + preferences.base_consumption
    utility = preferences.utility(consumption, menu[None, :])
    return menu[np.argmax(utility, axis=1)]


def equilibrium(skills, schedule: TaxSchedule, preferences: Preferences, *, cap: float = HOURS_CAP,
                grid: float | None = None) -> Outcome:
    """Best responses with the rebate at its fixed point ``R = mean tax`` (workers take R as given).

    When no fixed point exists (mean tax jumps across ``R``), the result is at the jump and its
    :attr:`Outcome.balanced` is False.
    """
    skills = np.asarray(skills, dtype=float)

    def outcome(rebate):
        return settle(skills, best_response(skills, schedule, rebate, preferences, cap=cap, grid=grid),
                      schedule, rebate, preferences)

    first = outcome(0.0)
    if not preferences.income_effects or first.revenue == 0.0:
        return settle(skills, first.hours, schedule, first.revenue / skills.size, preferences)
    # gap(R) = revenue(R)/N - R falls with R and is nearly linear: secant steps from R = 0,
    # with Brent's method on [0, max revenue] as the fallback.
    gap = lambda result: result.revenue / skills.size - result.rebate  # noqa: E731
    previous, current = first, outcome(first.revenue / skills.size)
    for _ in range(12):
        if abs(gap(current)) <= 1e-9 * (1.0 + current.rebate):
            return current
        slope = (gap(current) - gap(previous)) / (current.rebate - previous.rebate)
        if not np.isfinite(slope) or slope >= 0:
            break
        previous, current = current, outcome(max(current.rebate - gap(current) / slope, 0.0))
    high = float(schedule.tax(skills * cap).mean())
    rebate = optimize.brentq(lambda r: gap(outcome(r)), 0.0, high, xtol=1e-9, rtol=1e-12)
    return outcome(rebate)


def representative_skills(skills, size: int = REPRESENTATIVE_SIZE) -> np.ndarray:
    """The population itself if small, else ``size`` evenly spaced quantiles of it (deterministic)."""
    skills = np.asarray(skills, dtype=float)
    if skills.size <= size:
        return skills
    return np.quantile(skills, (np.arange(size) + 0.5) / size)


def calibrate_disutility(skills, schedule: TaxSchedule, *, eta: float = 1.0, frisch: float = 0.4,
                         base_consumption: float = 1000.0, target_hours: float = CALIBRATION_HOURS,
                         cap: float = HOURS_CAP) -> IsoelasticPreferences:
    """Solve the disutility scale so the median-skill worker's best response is ``target_hours``.

    The rebate is the equilibrium one under ``schedule``; scale and rebate are iterated jointly.
    """
    sample = representative_skills(skills)
    s = float(np.median(skills))
    income = s * target_hours
    net_wage = s * (1.0 - float(schedule.marginal_rate(income)))
    rebate = 0.0
    for _ in range(100):
        consumption = income - float(schedule.tax(income)) + rebate + base_consumption
        kappa = net_wage * consumption ** (-eta) / target_hours ** (1.0 / frisch)
        prefs = IsoelasticPreferences(kappa=kappa, eta=eta, frisch=frisch, base_consumption=base_consumption)
        new_rebate = equilibrium(sample, schedule, prefs, cap=cap).rebate
        if abs(new_rebate - rebate) <= 1e-9 * (1.0 + rebate):
            return prefs
        rebate = new_rebate
    return prefs
