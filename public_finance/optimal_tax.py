"""Optimal-tax baselines: the reference Saez estimator, a consistent Saez (2001) fixed point with
income effects, Stackelberg oracles over rates (for a sample, or for a population), and a black-box
optimiser of a realised objective."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from scipy import optimize, stats

from public_finance.economy import Outcome, Preferences, equilibrium
from public_finance.taxes import TaxSchedule
from public_finance.welfare import objective, welfare_weights

REFERENCE_TOP_INCOME = 1e7
REFERENCE_HOURS = 100.0

REFERENCE_ELASTICITIES = {"saez": 3.0, "flat": 0.4, "three": (0.18, 0.11, 0.57)}


def saez_rate(g, a, e):
    """Saez's rate ``(1 - g) / (1 - g + a e)``: mean welfare weight above ``g``, Pareto parameter ``a``,
    elasticity ``e`` (Diamond and Saez 2011: g = 0, a = 1.5, e = 0.25 gives 0.727)."""
    return (1.0 - g) / (1.0 - g + a * e)


def reference_elasticities(variant: str, n_brackets: int, elasticity=None) -> np.ndarray:
    """Per-bracket elasticities as the reference chooses them.

    ``saez``: ``elasticity`` if it gives one value per bracket, else 3.0 everywhere;
    ``flat``: 0.4 (one bracket); ``three``: 0.18 / 0.11 / 0.57 (three brackets).
    """
    if variant == "saez":
        values = np.atleast_1d(np.asarray(elasticity if elasticity is not None else [], dtype=float))
        return values if values.size == n_brackets else np.full(n_brackets, REFERENCE_ELASTICITIES["saez"])
    if variant in ("flat", "three"):
        values = np.atleast_1d(np.asarray(REFERENCE_ELASTICITIES[variant], dtype=float))
        if values.size != n_brackets:
            raise ValueError(f"saez_variant: {variant!r} needs {values.size} bracket(s), the schedule has {n_brackets}")
        return values
    raise ValueError(f"saez_variant: unknown variant {variant!r}; allowed: saez, flat, three")


def reference_saez_rates(skills, edges, elasticities) -> np.ndarray:
    """The reference implementation's static Saez rates (spec section 4.3), as fractions.

    Incomes are skill x 100 h; weights 1/z; density by Gaussian KDE; bracket midpoints as
    reference incomes, and ``b_top + 0.1 (1e7 - b_top)`` for the top bracket.
    """
    z = np.sort(np.asarray(skills, dtype=float) * REFERENCE_HOURS)
    weights = 1.0 / z
    weights /= weights.sum()
    density = stats.gaussian_kde(z)
    edges = np.asarray(edges, dtype=float)
    uppers = np.append(edges[1:], REFERENCE_TOP_INCOME)
    elasticities = np.broadcast_to(np.asarray(elasticities, dtype=float), edges.shape)
    rates = np.empty(edges.size)
    for j, (lower, upper) in enumerate(zip(edges, uppers, strict=True)):
        top = j == edges.size - 1
        point = lower + 0.1 * (REFERENCE_TOP_INCOME - lower) if top else 0.5 * (lower + upper)
        cdf = np.mean(z <= point)
        above = z >= point
        pareto = 10.0 if cdf >= 1.0 else point * density(point)[0] / (1.0 - cdf)
        if top and above.any():
            mean_above = z[above].mean()
            pareto = mean_above / (mean_above - lower)
        g = weights[above].sum() / (1.0 - cdf) if above.any() and cdf < 1.0 else 0.0
        rates[j] = np.clip(saez_rate(g, pareto, elasticities[j]), 0.0, 1.0)
    return np.round(rates, 4)


def abc_rate(points, incomes, weights, elasticity) -> np.ndarray:
    """Saez's ABC rate ``(1 - G(z)) / (1 - G(z) + alpha(z) e)`` at incomes ``points``.

    ``G(z)`` is the mean welfare weight above ``z`` (weights normalised to mean 1) and
    ``alpha(z) = z h(z) / (1 - H(z))`` the local Pareto parameter, with the density of log
    income from a Gaussian KDE on (at most 20,000 quantiles of) the positive incomes.
    """
    incomes = np.asarray(incomes, dtype=float)
    weights = np.asarray(weights, dtype=float) / np.mean(weights)
    order = np.argsort(incomes)
    incomes, weights = incomes[order], weights[order]
    points = np.atleast_1d(np.asarray(points, dtype=float))
    n = incomes.size
    positive = incomes[incomes > 0]
    logs = np.log(positive if positive.size <= 20_000 else np.quantile(positive, (np.arange(20_000) + 0.5) / 20_000))
    log_density = stats.gaussian_kde(logs)(np.log(points)) * positive.size / n
    first_above = np.searchsorted(incomes, points, side="left")
    share_above = (n - first_above) / n
    tail_weight = np.concatenate([np.cumsum(weights[::-1])[::-1], [0.0]])
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(share_above > 0, tail_weight[first_above] / (n * share_above), 0.0)
        alpha = np.where(share_above > 0, log_density / share_above, np.inf)
        rate = saez_rate(g, alpha, np.asarray(elasticity, dtype=float))
    return np.clip(np.nan_to_num(rate, nan=0.0), 0.0, 1.0)


def saez_top_rate(incomes, weights, compensated, uncompensated, threshold) -> float:
    """Saez's (2001) top rate with income effects, ``(1 - g) / (1 - g + e_u + e_c (a - 1))``, above ``threshold``.

    ``weights`` are social marginal welfare weights relative to the marginal value of public funds (not
    renormalised here); ``a = z_m / (z_m - z*)``. With heterogeneous workers the averages are the ones
    the perturbation argument gives: ``g`` and the income effect ``e_u - e_c`` weighted by ``z - z*``,
    ``e_c`` weighted by ``z``, so that ``e_c a + (e_u - e_c)`` is exact. NaN if nobody is above.
    """
    incomes = np.asarray(incomes, dtype=float)
    above = incomes >= threshold
    if not above.any() or incomes[above].mean() <= threshold:
        return float("nan")
    z = incomes[above]
    excess = z - threshold
    g = np.average(np.broadcast_to(weights, incomes.shape)[above], weights=excess)
    e_c = np.average(np.broadcast_to(compensated, incomes.shape)[above], weights=z)
    income_effect = np.average((np.broadcast_to(uncompensated, incomes.shape)
                                - np.broadcast_to(compensated, incomes.shape))[above], weights=excess)
    a = z.mean() / excess.mean()
    response = e_c * a + income_effect  # = e_u + e_c (a - 1) with e_u = e_c + income effect
    if response <= 0.0:  # revenue from the top never peaks
        return 1.0 if g < 1.0 else 0.0
    ratio = max((1.0 - g) / response, 0.0)  # tau / (1 - tau)
    return float(ratio / (1.0 + ratio))


def public_funds_weights(weights, income_effect, marginal_rates) -> np.ndarray:
    """Welfare weights relative to the marginal value of public funds with a lump-sum rebate.

    A dollar more of rebate to everyone is worth the mean weight and also changes revenue by
    ``eta T'/(1 - T')`` per worker (``eta`` = the income effect, negative), so at the optimum
    ``mean(g + eta T'/(1 - T')) = 1`` (Saez 2001): ``weights`` rescaled to that.
    """
    weights = np.asarray(weights, dtype=float)
    leak = np.asarray(income_effect, dtype=float) * _tax_wedge(marginal_rates)
    return weights * (1.0 - leak.mean()) / weights.mean()


def _tax_wedge(marginal_rates) -> np.ndarray:
    rates = np.minimum(np.asarray(marginal_rates, dtype=float), 0.99)  # bounded where a bracket is at 100 %
    return rates / (1.0 - rates)


def consistent_saez_rates(skills, schedule: TaxSchedule, preferences: Preferences, objective_name: str, *,
                          cap: float, grid: float | None = None, damping: float = 0.5,
                          tolerance: float = 1e-4, max_iterations: int = 60) -> tuple[np.ndarray, int]:
    """Saez (2001) rates from the simulated equilibrium, with income effects, iterated to a fixed point.

    Each round solves the rational equilibrium under the current rates and takes each worker's
    compensated and uncompensated elasticities from the preferences and its welfare weight from the
    objective (relative to the marginal value of public funds, :func:`public_funds_weights`). A bracket's
    rate is the mean over its workers of the schedule formula with income effects,
    ``T'/(1 - T') = (1 - G(z) - E(z)) / (alpha(z) e_c(z))``, where ``G`` and ``E`` are the means above
    ``z`` of the weights and of ``eta T'/(1 - T')`` (:func:`abc_rate` with weights ``g + eta T'/(1 - T')``);
    the top bracket uses :func:`saez_top_rate`. Without income effects both reduce to the ABC and
    ``(1 - g)/(1 - g + a e)`` formulas. Returns the rates and the rounds used.
    """
    rates = schedule.rates.copy()
    lower_edges = schedule.deduction + schedule.edges
    for iteration in range(1, max_iterations + 1):
        current = schedule.with_rates(rates)
        outcome = equilibrium(skills, current, preferences, cap=cap, grid=grid)
        marginal = current.marginal_rate(outcome.income)
        net_wage = skills * (1.0 - marginal)
        compensated = preferences.compensated_elasticity(outcome.hours, net_wage, outcome.consumption)
        income_effect = preferences.uncompensated_elasticity(outcome.hours, net_wage, outcome.consumption) - compensated
        weights = public_funds_weights(welfare_weights(objective_name, outcome, skills, preferences), income_effect,
                                       marginal)
        effective = weights + income_effect * _tax_wedge(marginal)  # mean 1 by construction
        pointwise = abc_rate(outcome.income, outcome.income, effective, compensated)
        bracket = np.searchsorted(lower_edges, outcome.income, side="right") - 1
        target = rates.copy()
        for j in range(schedule.n_brackets):
            members = bracket == j
            if j == schedule.n_brackets - 1:
                top = saez_top_rate(outcome.income, weights, compensated, compensated + income_effect, lower_edges[j])
                target[j] = top if np.isfinite(top) else target[j - 1] if j else target[j]
            elif members.any():
                target[j] = pointwise[members].mean()
            else:
                point = 0.5 * (lower_edges[j] + lower_edges[j + 1])
                target[j] = abc_rate(point, outcome.income, effective, compensated.mean())[0]
        step = target - rates
        rates = np.clip(rates + damping * step, 0.0, 1.0)
        if np.max(np.abs(step)) < tolerance:
            break
    return rates, iteration


Evaluate = Callable[[np.ndarray], float]


def stackelberg_evaluator(skills, schedule: TaxSchedule, preferences: Preferences, objective_name: str, *,
                          cap: float, grid: float | None = None) -> Evaluate:
    """The objective at the rational workers' equilibrium, as a function of the rates."""
    score = objective(objective_name).score

    def evaluate(rates) -> float:
        outcome: Outcome = equilibrium(skills, schedule.with_rates(np.clip(rates, 0.0, 1.0)), preferences,
                                       cap=cap, grid=grid)
        value = score(outcome, skills)
        return value if np.isfinite(value) else -np.inf

    return evaluate


def grid_rates(evaluate: Evaluate, n_brackets: int, grid_step: float = 0.1) -> tuple[np.ndarray, float]:
    """Exhaustive search over rates on the ``grid_step`` grid (the first of equal optima)."""
    levels = np.round(np.arange(0.0, 1.0 + 1e-9, grid_step), 10)
    best_rates, best_value = None, -np.inf
    for candidate in itertools.product(levels, repeat=n_brackets):
        value = evaluate(np.array(candidate))
        if value > best_value:
            best_rates, best_value = np.array(candidate), value
    return best_rates, float(best_value)


def oracle_rates(evaluate: Evaluate, n_brackets: int, rng: np.random.Generator, *, grid_step: float = 0.1,
                 exhaustive_max_brackets: int = 3, max_evaluations: int = 3000) -> tuple[np.ndarray, float]:
    """Maximise ``evaluate`` over rates in [0, 1]^n.

    Exhaustive on the ``grid_step`` grid for up to ``exhaustive_max_brackets`` brackets;
    otherwise differential evolution (seeded from ``rng``) refined by Nelder-Mead.
    """
    if n_brackets <= exhaustive_max_brackets:
        return grid_rates(evaluate, n_brackets, grid_step)
    popsize = 8
    maxiter = max(1, int(0.8 * max_evaluations / (popsize * n_brackets)) - 1)
    result = optimize.differential_evolution(
        lambda x: -evaluate(x), [(0.0, 1.0)] * n_brackets, popsize=popsize, maxiter=maxiter, tol=1e-8,
        rng=np.random.default_rng(rng.integers(2**63)), polish=False, init="sobol")
    local = optimize.minimize(lambda x: -evaluate(np.clip(x, 0, 1)), result.x, method="Nelder-Mead",
                              options={"maxfev": int(0.2 * max_evaluations), "xatol": 1e-4, "fatol": 1e-10})
    best = np.clip(local.x if local.fun <= result.fun else result.x, 0.0, 1.0)
    return best, float(evaluate(best))


PATTERN_STEPS = (0.08, 0.04, 0.02, 0.01)


def pattern_search(evaluate: Evaluate, start, *, steps=PATTERN_STEPS,
                   max_evaluations: int = 3000) -> tuple[np.ndarray, float]:
    """Pattern search on the grid of the finest step (deterministic).

    From ``start`` (rounded to the grid), each rate in turn moves by +step or -step and keeps moving that
    way while the objective improves; at the finest step, pairs of rates also move together (every pair,
    every sign), which follows ridges along which one rate's effect offsets another's. Passes repeat until
    no move improves, then the step is refined. Stops after ``max_evaluations`` distinct evaluations.
    """
    unit = steps[-1]
    top = int(round(1.0 / unit))
    values: dict[tuple[int, ...], float] = {}

    def value(point: np.ndarray) -> float:
        key = tuple(point.tolist())
        if key not in values:
            if len(values) >= max_evaluations:
                return -np.inf
            values[key] = float(evaluate(point * unit))
        return values[key]

    best = np.clip(np.round(np.asarray(start, dtype=float) / unit), 0, top).astype(int)
    best_value = value(best)
    n = best.size
    for k, step in enumerate(int(round(s / unit)) for s in steps):
        moves = [np.eye(n, dtype=int)[j] * sign * step for j in range(n) for sign in (1, -1)]
        if k == len(steps) - 1:
            moves += [(np.eye(n, dtype=int)[i] * si + np.eye(n, dtype=int)[j] * sj) * step
                      for i, j in itertools.combinations(range(n), 2) for si in (1, -1) for sj in (1, -1)]
        improved = True
        while improved and len(values) < max_evaluations:
            improved = False
            for move in moves:
                while True:
                    candidate = np.clip(best + move, 0, top)
                    if np.array_equal(candidate, best) or (v := value(candidate)) <= best_value:
                        break
                    best, best_value, improved = candidate, v, True
    return np.round(best * unit, 10), best_value


def population_oracle_rates(evaluate: Evaluate, start, *, exhaustive_max_brackets: int = 3, grid_step: float = 0.1,
                            max_evaluations: int = 3000) -> tuple[np.ndarray, float]:
    """Maximise ``evaluate`` (an objective on a large population, so nearly smooth in the rates).

    Exhaustive on the ``grid_step`` grid for up to ``exhaustive_max_brackets`` brackets; otherwise
    :func:`pattern_search` on the 1 % grid from the better of ``start`` and the best flat schedule
    on the 10 % grid. Deterministic, so populations that differ little get the same rates.
    """
    start = np.asarray(start, dtype=float)
    if start.size <= exhaustive_max_brackets:
        return grid_rates(evaluate, start.size, grid_step)
    candidates = [start] + [np.full(start.size, level) for level in np.round(np.arange(0.0, 1.0 + 1e-9, 0.1), 10)]
    scores = [evaluate(c) for c in candidates]
    first = candidates[int(np.argmax(scores))]
    return pattern_search(evaluate, first, max_evaluations=max(1, max_evaluations - len(candidates)))


class BlackBoxOptimizer:
    """A (1+1) evolution strategy that sees only one realised objective value per proposal.

    ``tell(value)`` reports the objective obtained with the last proposal; ``ask()`` gives
    the next rates: the best so far plus Gaussian noise, with the step size adapted by the
    one-fifth success rule. ``best`` returns the incumbent (for exploitation).
    """

    def __init__(self, initial_rates, rng: np.random.Generator, *, sigma: float = 0.1,
                 min_sigma: float = 0.005, max_sigma: float = 0.5):
        self.rng = rng
        self.sigma, self.min_sigma, self.max_sigma = sigma, min_sigma, max_sigma
        self.proposal = np.asarray(initial_rates, dtype=float).copy()
        self.best_rates = self.proposal.copy()
        self.best_value = -np.inf
        self.evaluations = 0

    def tell(self, value: float) -> None:
        self.evaluations += 1
        if value > self.best_value:
            improved = self.evaluations > 1
            self.best_rates, self.best_value = self.proposal.copy(), float(value)
            if improved:
                self.sigma = min(self.sigma * 1.5, self.max_sigma)
        else:
            self.sigma = max(self.sigma * 1.5 ** -0.25, self.min_sigma)

    def ask(self) -> np.ndarray:
        noise = self.rng.normal(0.0, self.sigma, self.best_rates.size)
        self.proposal = np.clip(self.best_rates + noise, 0.0, 1.0)
        return self.proposal.copy()

    def best(self) -> np.ndarray:
        self.proposal = self.best_rates.copy()
        return self.proposal.copy()
