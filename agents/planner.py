"""The planner: a Mesa agent that sets the marginal rates, with pluggable decision rules.

A rule has ``initial_rates(model)`` (rates in force from step 0, or ``None`` for the
model's default) and ``decide(model)`` (new rates at a tax-year boundary). Static
baselines compute their rates once, as the reference implementation does.
"""

from __future__ import annotations

import mesa
import numpy as np

from model.economy import representative_skills
from model.optimal_tax import (BlackBoxOptimizer, consistent_saez_rates, oracle_rates, reference_elasticities,
                               reference_saez_rates, stackelberg_evaluator)
from model.taxes import TaxSchedule


class FixedRule:
    """Keep the given rates (default: the model's initial rates)."""

    def __init__(self, rates=None):
        self.rates = None if rates is None else np.asarray(rates, dtype=float)

    def initial_rates(self, model):
        return self.rates

    def decide(self, model):
        return model.schedule.rates


class USFederalRule(FixedRule):
    """US federal statutory rates for single filers (needs US brackets)."""

    def initial_rates(self, model):
        if not model.bracket_set.statutory:
            raise ValueError(f"planner: 'us_federal' needs US brackets (us_2024_single or us_2025_single), "
                             f"got brackets={model.bracket_set.name!r}")
        return np.asarray(model.bracket_set.default_rates)


class SaezReferenceRule(FixedRule):
    """The reference implementation's static Saez rates (incomes at 100 h, 1/z weights, KDE density)."""

    def __init__(self, variant: str = "saez", elasticity=None):
        super().__init__()
        self.variant, self.elasticity = variant, elasticity

    def initial_rates(self, model):
        edges = model.bracket_set.edges
        return reference_saez_rates(model.workforce.skill, edges,
                                    reference_elasticities(self.variant, len(edges), self.elasticity))


class SaezConsistentRule(FixedRule):
    """Saez rates from the simulated equilibrium with the workers' own elasticities and the
    objective's welfare weights, iterated to a fixed point."""

    def initial_rates(self, model):
        rates, self.iterations = consistent_saez_rates(
            representative_skills(model.workforce.skill), model.schedule, model.preferences, model.objective_name,
            cap=model.hours_cap, grid=model.hours_grid)
        return rates


class OracleRule(FixedRule):
    """Stackelberg oracle: the rates maximising the objective at the rational workers' equilibrium."""

    def __init__(self, max_evaluations: int = 3000):
        super().__init__()
        self.max_evaluations = max_evaluations

    def initial_rates(self, model):
        evaluate = stackelberg_evaluator(representative_skills(model.workforce.skill, 5000), model.schedule,
                                         model.preferences, model.objective_name, cap=model.hours_cap,
                                         grid=model.hours_grid)
        rates, self.value = oracle_rates(evaluate, model.schedule.n_brackets, model.rng,
                                         max_evaluations=self.max_evaluations)
        return rates


class BlackBoxRule:
    """Optimises the rates from the realised objective alone, once per tax year; plays its
    best rates in the last tax year of the run."""

    def __init__(self, sigma: float = 0.1):
        self.sigma = sigma
        self.optimizer = None

    def initial_rates(self, model):
        return None

    def decide(self, model):
        if self.optimizer is None:
            self.optimizer = BlackBoxOptimizer(model.schedule.rates, model.rng, sigma=self.sigma)
        self.optimizer.tell(model.objective)
        final_year = model.period + model.tax_year_length >= model.max_steps
        return self.optimizer.best() if final_year else self.optimizer.ask()


PLANNERS = {
    "fixed": FixedRule,
    "us_federal": USFederalRule,
    "saez_reference": SaezReferenceRule,
    "saez": SaezConsistentRule,
    "oracle": OracleRule,
    "blackbox": BlackBoxRule,
}


def make_rule(name: str, **options):
    """Build a planner rule by name."""
    if name not in PLANNERS:
        raise ValueError(f"planner: unknown planner {name!r}; allowed: {', '.join(PLANNERS)}")
    return PLANNERS[name](**options)


class PlannerAgent(mesa.Agent):
    """Holds the tax schedule and changes it at tax-year boundaries through its rule."""

    def __init__(self, model, rule, schedule: TaxSchedule):
        super().__init__(model)
        self.rule = rule
        self.schedule = schedule
        self.history: list[tuple[int, tuple[float, ...]]] = [(0, tuple(map(float, schedule.rates)))]

    def plan(self) -> None:
        """At a tax-year boundary (never at step 0), let the rule set new rates."""
        if not self.model.is_tax_year_start:
            return
        rates = np.asarray(self.rule.decide(self.model), dtype=float)
        self.schedule = self.schedule.with_rates(rates)
        self.history.append((self.model.period, tuple(map(float, self.schedule.rates))))

