"""Social welfare functions, inequality metrics and the planner objectives built from them."""

from __future__ import annotations

import numpy as np

from public_finance.economy import Outcome
from registry import Registry


def paper_swf(utility, income) -> float:
    """The reference objective: sum of utilities weighted by inverse pre-tax income, ``sum u / max(z, 1)``."""
    return float(np.sum(np.asarray(utility) / np.maximum(np.asarray(income), 1.0)))


def utilitarian(utility) -> float:
    """Mean utility."""
    return float(np.mean(utility))


def inverse_skill_weights(skills) -> np.ndarray:
    """Weights proportional to 1/skill with mean 1 (exogenous: workers cannot move them)."""
    weights = 1.0 / np.asarray(skills, dtype=float)
    return weights / weights.mean()


def inverse_skill_weighted(utility, skills) -> float:
    """Mean utility weighted by :func:`inverse_skill_weights`."""
    return float(np.mean(inverse_skill_weights(skills) * np.asarray(utility)))


def rawlsian(utility) -> float:
    """Utility of the worst-off worker."""
    return float(np.min(utility))


def gini(values) -> float:
    """Gini coefficient of non-negative values (0 = equal; sample form, no small-N correction)."""
    x = np.sort(np.asarray(values, dtype=float))
    total = x.sum()
    if x.size == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, x.size + 1)
    return float((2.0 * np.dot(ranks, x)) / (x.size * total) - (x.size + 1.0) / x.size)


def atkinson(values, epsilon: float = 1.0) -> float:
    """Atkinson inequality index with aversion ``epsilon`` (values must be positive)."""
    x = np.asarray(values, dtype=float)
    mean = x.mean()
    if mean <= 0:
        return 0.0
    if np.any(x <= 0):
        return 1.0 if epsilon >= 1.0 else float(1.0 - np.mean(np.maximum(x, 0) ** (1 - epsilon)) ** (1 / (1 - epsilon)) / mean)
    if epsilon == 1.0:
        equivalent = np.exp(np.mean(np.log(x)))
    else:
        equivalent = np.mean(x ** (1.0 - epsilon)) ** (1.0 / (1.0 - epsilon))
    return float(1.0 - equivalent / mean)


def equality_times_productivity(post_tax_income, pre_tax_income) -> float:
    """The AI Economist's objective: (1 - normalised Gini of post-tax income) x mean pre-tax income."""
    n = np.size(post_tax_income)
    equality = 1.0 - gini(post_tax_income) * n / max(n - 1, 1)
    return float(equality * np.mean(pre_tax_income))


class Objective:
    """A planner objective: ``score(outcome, skills)`` and, for Saez-type planners, the social marginal
    welfare weight of a dollar to each worker, ``weights(outcome, skills, preferences)`` (mean 1).

    Register a new one with ``@OBJECTIVES.register("name")`` on a subclass.
    """

    def score(self, outcome: Outcome, skills) -> float:
        raise NotImplementedError

    def marginal_weights(self, outcome: Outcome, skills, preferences) -> np.ndarray:
        raise ValueError(f"objective: {type(self).__name__} has no welfare weights (needed by the saez planner)")

    def weights(self, outcome: Outcome, skills, preferences) -> np.ndarray:
        weights = np.asarray(self.marginal_weights(outcome, skills, preferences), dtype=float)
        return weights / weights.mean()


OBJECTIVES: Registry[type[Objective]] = Registry("objective", base=Objective)


@OBJECTIVES.register("paper_swf")
class PaperSWF(Objective):
    def score(self, outcome, skills):
        return paper_swf(outcome.utility, outcome.income)

    def marginal_weights(self, outcome, skills, preferences):
        return preferences.marginal_utility(outcome.consumption) / np.maximum(outcome.income, 1.0)


@OBJECTIVES.register("utilitarian")
class Utilitarian(Objective):
    def score(self, outcome, skills):
        return utilitarian(outcome.utility)

    def marginal_weights(self, outcome, skills, preferences):
        return preferences.marginal_utility(outcome.consumption)


@OBJECTIVES.register("inverse_skill")
class InverseSkill(Objective):
    def score(self, outcome, skills):
        return inverse_skill_weighted(outcome.utility, skills)

    def marginal_weights(self, outcome, skills, preferences):
        return inverse_skill_weights(skills) * preferences.marginal_utility(outcome.consumption)


@OBJECTIVES.register("rawlsian")
class Rawlsian(Objective):
    def score(self, outcome, skills):
        return rawlsian(outcome.utility)

    def marginal_weights(self, outcome, skills, preferences):
        return (outcome.utility == outcome.utility.min()).astype(float)


@OBJECTIVES.register("equality_productivity")
class EqualityProductivity(Objective):
    def score(self, outcome, skills):
        return equality_times_productivity(outcome.income - outcome.tax + outcome.rebate, outcome.income)


def objective(name: str) -> Objective:
    """The registered objective ``name``."""
    return OBJECTIVES[name]()


def welfare_weights(name: str, outcome: Outcome, skills, preferences) -> np.ndarray:
    """Social marginal welfare weight of a dollar to each worker under objective ``name`` (mean 1)."""
    return objective(name).weights(outcome, skills, preferences)
