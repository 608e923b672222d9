"""The planner: a Mesa agent that sets the marginal rates, with pluggable decision rules.

A rule is a class registered in :data:`PLANNERS`, built from its options (``planner_options``),
with ``initial_rates(model)`` (rates in force from step 0, or ``None`` for the model's default) and
``decide(model)`` (new rates at a tax-year boundary). Static baselines compute their rates once, as
the reference implementation does. A rule that prompts a language model sets ``needs_llm = True`` and
reads the client from ``model.llm``.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal, get_type_hints

import mesa
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from public_finance.economy import representative_skills
from public_finance.optimal_tax import (BlackBoxOptimizer, consistent_saez_rates, oracle_rates,
                                        population_oracle_rates, reference_elasticities, reference_saez_rates,
                                        stackelberg_evaluator)
from public_finance.taxes import BRACKET_SETS, TaxSchedule, bracket_set
from registry import Registry
from validation import ParameterError, validate


class PlannerRule:
    """Base of planner rules: keeps the rates it starts with."""

    needs_llm = False  # reads ``model.llm``
    sets_initial_rates = False  # computes the rates of step 0 itself, so ``initial_rates`` would go unused
    needs_brackets = None  # words for the bracket sets the rule needs, when not every set will do

    @classmethod
    def applies_to(cls, brackets) -> bool:
        """Whether the rule can set rates on ``brackets`` (a :class:`~public_finance.taxes.BracketSet`)."""
        return True

    @classmethod
    def check(cls, params) -> None:
        """Reject parameters this rule cannot run with (raise :class:`validation.ParameterError`)."""
        if params.uses_planner and not cls.applies_to(bracket_set(params.brackets)):
            fitting = " or ".join(name for name in BRACKET_SETS if cls.applies_to(BRACKET_SETS[name]))
            raise ParameterError("planner", f"{params.planner!r} needs {cls.needs_brackets}, got brackets="
                                 f"{params.brackets!r}", f"brackets {fitting}, or another planner")
        if cls.sets_initial_rates and params.initial_rates is not None and params.uses_planner:
            raise ParameterError("initial_rates", f"planner {params.planner!r} sets the rates of step 0 itself",
                                 "no initial_rates with this planner (fixed, blackbox and llm start from them)")

    def initial_rates(self, model):
        return None

    def decide(self, model):
        return model.schedule.rates


PLANNERS: Registry[type[PlannerRule]] = Registry("planner", base=PlannerRule)


@PLANNERS.register("fixed")
class FixedRule(PlannerRule):
    """Keep the given rates (default: the model's initial rates)."""

    def __init__(self, rates: list[float] | None = None):  # the schedule checks each is in [0, 1]
        self.rates = None if rates is None else np.asarray(rates, dtype=float)

    def initial_rates(self, model):
        return self.rates


@PLANNERS.register("us_federal")
class USFederalRule(FixedRule):
    """US federal statutory rates for single filers (needs US brackets)."""

    sets_initial_rates = True
    needs_brackets = "US brackets"

    @classmethod
    def applies_to(cls, brackets) -> bool:
        return brackets.statutory

    def initial_rates(self, model):
        return np.asarray(model.bracket_set.default_rates)


@PLANNERS.register("saez_reference")
class SaezReferenceRule(FixedRule):
    """The reference implementation's static Saez rates (incomes at 100 h, 1/z weights, KDE density)."""

    sets_initial_rates = True

    def __init__(self, variant: Literal["saez", "flat", "three"] = "saez",
                 elasticity: Annotated[float, Field(gt=0)] | list[Annotated[float, Field(gt=0)]] | None = None):
        super().__init__()
        self.variant, self.elasticity = variant, elasticity

    def initial_rates(self, model):
        edges = model.bracket_set.edges
        return reference_saez_rates(model.workforce.skill, edges,
                                    reference_elasticities(self.variant, len(edges), self.elasticity))


@PLANNERS.register("saez")
class SaezConsistentRule(FixedRule):
    """Saez (2001) rates with income effects from the simulated equilibrium, with the workers' own
    compensated and uncompensated elasticities and the objective's welfare weights, iterated to a fixed
    point (:func:`public_finance.optimal_tax.consistent_saez_rates`)."""

    sets_initial_rates = True

    def initial_rates(self, model):
        rates, self.iterations = consistent_saez_rates(
            representative_skills(model.workforce.skill), model.schedule, model.preferences, model.objective_name,
            cap=model.hours_cap, grid=model.hours_grid)
        return rates


@PLANNERS.register("oracle")
class OracleRule(FixedRule):
    """Stackelberg oracle for the population: the rates maximising the objective at the rational
    equilibrium of a large draw from the run's population source with the run's seed, not of the run's
    own workers (whom a small sample's optimum exploits one by one). The run's objective is then
    measured on its own workers. ``value`` is the objective on the population.

    The draw is ``POPULATION_DRAW`` workers (or the run's workers if more, or the given ``skills``),
    evaluated on ``POPULATION_POINTS`` of its quantiles; see
    :func:`public_finance.optimal_tax.population_oracle_rates` for the search.
    """

    sets_initial_rates = True

    POPULATION_DRAW = 20_000
    POPULATION_POINTS = 5_000

    def __init__(self, max_evaluations: Annotated[int, Field(ge=1)] = 3000):
        super().__init__()
        self.max_evaluations = max_evaluations

    def population(self, model) -> np.ndarray:
        """Skills standing for the population the run's workers are drawn from."""
        if model.params.skills is not None or len(model.workforce) >= self.POPULATION_DRAW:
            return model.workforce.skill
        return model.population_draw(self.POPULATION_DRAW)

    def initial_rates(self, model):
        evaluate = stackelberg_evaluator(representative_skills(self.population(model), self.POPULATION_POINTS),
                                         model.schedule, model.preferences, model.objective_name,
                                         cap=model.hours_cap, grid=model.hours_grid)
        rates, self.value = population_oracle_rates(evaluate, model.schedule.rates,
                                                    max_evaluations=self.max_evaluations)
        return rates


@PLANNERS.register("blackbox")
class BlackBoxRule(PlannerRule):
    """Optimises the rates from the realised objective alone, once per tax year; plays its
    best rates in the last tax year of the run."""

    def __init__(self, sigma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1):
        self.sigma = sigma
        self.optimizer = None

    def decide(self, model):
        if self.optimizer is None:
            self.optimizer = BlackBoxOptimizer(model.schedule.rates, model.rng, sigma=self.sigma)
        self.optimizer.tell(model.objective)
        final_year = model.period + model.tax_year_length >= model.max_steps
        return self.optimizer.best() if final_year else self.optimizer.ask()


@PLANNERS.register("oracle_sample")
class SampleOracleRule(FixedRule):
    """Stackelberg oracle for the run's own workers (at most 5,000 of their quantiles): the exact
    optimum for this sample, which with few workers exploits individual workers."""

    sets_initial_rates = True

    def __init__(self, max_evaluations: Annotated[int, Field(ge=1)] = 3000):
        super().__init__()
        self.max_evaluations = max_evaluations

    def initial_rates(self, model):
        evaluate = stackelberg_evaluator(representative_skills(model.workforce.skill, 5000), model.schedule,
                                         model.preferences, model.objective_name, cap=model.hours_cap,
                                         grid=model.hours_grid)
        rates, self.value = oracle_rates(evaluate, model.schedule.n_brackets, model.rng,
                                         max_evaluations=self.max_evaluations)
        return rates


def rule_options(rule: type) -> type[BaseModel]:
    """The options a rule's constructor declares (its annotated keyword arguments), as a pydantic model."""
    hints = get_type_hints(rule.__init__, include_extras=True)
    fields = {name: (hints.get(name, Any), parameter.default)
              for name, parameter in list(inspect.signature(rule.__init__).parameters.items())[1:]
              if parameter.kind is parameter.POSITIONAL_OR_KEYWORD or parameter.kind is parameter.KEYWORD_ONLY}
    return create_model(f"{rule.__name__}Options", __config__=ConfigDict(strict=True, extra="forbid"), **fields)


def make_rule(name: str, **options) -> PlannerRule:
    """Build the registered planner rule ``name`` from its options (``planner_options``), checked first."""

    rule = PLANNERS[name]
    checked = validate(rule_options(rule), options, name=lambda field: f"planner_options.{field}")
    return rule(**{field: getattr(checked, field) for field in options})


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

