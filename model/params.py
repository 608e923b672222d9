"""The model's parameters, declared once: type, default, allowed values, range and cross-field rules.

``EconomyModel(**kwargs)``, ``run.py`` (flags and ``--config`` TOML) and the dashboard all validate through
:class:`EconomyParams`. Names of planners, minds, scenarios, objectives, networks, population sources, bracket
sets, presets and prompt styles are looked up in their registries when a value is checked, so a user's registered entry is accepted everywhere.
A bad value raises :class:`validation.ParameterError`: one line naming the field and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

import agents.llm_minds  # noqa: F401 (registers the LLM mind and planner)
from agents.llm_settings import llm_parameter
from agents.network import NETWORKS
from agents.planner import PLANNERS, rule_options
from agents.prompt_styles import PROMPT_STYLES
from agents.worker import WORKER_MINDS
from calibration.population import DEFAULT_SOURCE, POPULATION_SOURCES
from model.scenarios import SCENARIOS
from public_finance.economy import HOURS_CAP, IsoelasticPreferences, LinearPreferences, calibrate_disutility
from public_finance.taxes import BRACKET_SETS, bracket_set
from public_finance.welfare import OBJECTIVES
from registry import Registry
from validation import ParameterError, allowed, choice, validate

CALIBRATION_BRACKETS = "us_2025_single"


def calibrated_preferences(skills, params) -> IsoelasticPreferences:
    """Log-consumption utility whose disutility scale makes the median-skill worker choose 40 h under US 2025."""
    return calibrate_disutility(skills, bracket_set(CALIBRATION_BRACKETS).schedule(), eta=params.eta,
                                frisch=params.frisch, cap=HOURS_CAP)


@dataclass(frozen=True)
class Preset:
    """The defaults of the economics (brackets, planner, population, objective, ...) and how preferences are built."""

    brackets: str
    planner: str
    population: str
    objective: str
    hours_grid: float
    standard_deduction: bool
    preferences: Callable[[np.ndarray, EconomyParams], Any]  # (skills, params) -> preferences


PRESETS: Registry[Preset] = Registry("preset", base=Preset, instances=True)
"""Presets by name; ``preset=name`` picks one."""
PRESETS.register("calibrated", Preset(brackets="us_2025_single", planner="us_federal", population=DEFAULT_SOURCE,
                                      objective="utilitarian", hours_grid=0.0, standard_deduction=True,
                                      preferences=calibrated_preferences))
PRESETS.register("paper", Preset(brackets="three", planner="fixed", population="paper_gb2", objective="paper_swf",
                                 hours_grid=10.0, standard_deduction=False,
                                 preferences=lambda skills, params: LinearPreferences()))
MAX_WORKERS = 10_000_000
MIN_HOURS_GRID = 0.1  # coarser than any realistic hours choice; a finer grid only costs memory


def _plain_number(value):
    """numpy scalars as Python numbers (batch_run and sweeps pass them); booleans stay booleans (and fail)."""
    return value.item() if isinstance(value, np.integer | np.floating | np.bool_) else value


Int = Annotated[int, BeforeValidator(_plain_number)]
Number = Annotated[float, BeforeValidator(_plain_number), Field(allow_inf_nan=False)]


class EconomyParams(BaseModel):
    """Every parameter of :class:`model.model.EconomyModel` (see its docstring for what each means)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, arbitrary_types_allowed=True)

    workers: Annotated[Int, Field(ge=1, le=MAX_WORKERS), Field(description="number of workers")] = 100
    preset: Annotated[str, choice(PRESETS), Field(description="economics preset")] = "calibrated"
    brackets: Annotated[str | None, choice(BRACKET_SETS, "bracket set"),
                        Field(description="bracket set (default: the preset's)")] = None
    planner: Annotated[str | None, choice(PLANNERS),
                       Field(description="planner rule (default: the preset's)")] = None
    worker_mind: Annotated[str, choice(WORKER_MINDS), Field(description="how workers decide")] = "rational"
    tax_year_length: Annotated[Int, Field(ge=1, le=1_000_000),
                               Field(description="steps per tax year (the planner acts once a year)")] = 25
    objective: Annotated[str | None, choice(OBJECTIVES),
                         Field(description="planner objective (default: the preset's)")] = None
    max_steps: Annotated[Int, Field(ge=1, le=1_000_000), Field(description="steps to run")] = 100
    agent_interval: Annotated[Int, Field(ge=0, le=1_000_000),
                              Field(description="collect worker data every N steps (0 = never)")] = 1
    skills: Annotated[Any, Field(description="explicit skills, an array (default: drawn from the population)")] = None
    population: Annotated[str | None, choice(POPULATION_SOURCES, "population"),
                          Field(description="population source (default: the preset's)")] = None
    initial_rates: Annotated[list[Number] | None, Field(json_schema_extra={  # the schedule checks each is in [0, 1]
                                 "allowed": "one rate in [0, 1] per bracket, comma-separated"}),
                             Field(description="rates from step 0, one per bracket (default: the planner's)")] = None
    planner_options: Annotated[dict[str, Any] | None, Field(description="keyword arguments of the planner rule (TOML table only)")] = None
    hours_grid: Annotated[Number | None, Field(ge=0.0, le=HOURS_CAP, json_schema_extra={
                              "allowed": f"0 (exact hours) or a number in [{MIN_HOURS_GRID:g}, {HOURS_CAP:g}]"}),
                          Field(description="hours on multiples of this, 0 = exact hours (default: the preset's)")] = None
    standard_deduction: Annotated[bool | None, Field(
        description="the standard deduction applies (default: the preset's)")] = None
    eta: Annotated[Number, Field(gt=0.0, le=10.0),
                   Field(description="curvature of utility in consumption (calibrated preset)")] = 1.0
    # below 0.05 the calibration's hours ** (1 / frisch) leaves floating point; measured elasticities are 0.1-1
    frisch: Annotated[Number, Field(ge=0.05, le=10.0),
                      Field(description="Frisch elasticity of hours (calibrated preset)")] = 0.4
    scenario_name: Annotated[str, choice(SCENARIOS), Field(description="scenario")] = "rational"
    network: Annotated[str | None, choice(NETWORKS),
                       Field(description="social network over workers (default: the scenario's)")] = None
    binding_platforms: Annotated[bool, Field(
        description="the elected leader must enact its platform (democratic scenario)")] = False
    conformity: Annotated[Number, Field(ge=0.0, le=1.0),
                          Field(description="weight of neighbours' preferences in each rational vote")] = 0.0
    candidates: Annotated[Int, Field(ge=1, le=1000),
                          Field(description="workers who run in each election")] = 5
    backend: llm_parameter("backend") = None
    base_url: llm_parameter("base_url") = None
    llm_model: llm_parameter("llm_model") = None
    llm_store: llm_parameter("llm_store") = None
    llm_store_mode: llm_parameter("llm_store_mode") = None
    prompt_mode: Annotated[str, choice(PROMPT_STYLES, "prompt mode"),
                           Field(description="prompt style of LLM minds")] = "improved"
    history_length: Annotated[Int | None, Field(ge=0, le=10_000),
                              Field(description="steps of its own history an LLM worker sees (default: the prompt mode's)")] = None
    archetypes: Annotated[Int, Field(ge=0, le=MAX_WORKERS),
                          Field(description="LLM workers decide per archetype, K clusters (0 = each worker)")] = 0
    run_id: Annotated[str, Field(min_length=1, max_length=200),
                      Field(description="the run's name in the LLM response store")] = "run"
    llm_concurrency: llm_parameter("llm_concurrency") = None

    @model_validator(mode="after")
    def _resolve(self) -> EconomyParams:
        """Fill the preset's defaults, then check the rules that tie fields together."""
        defaults = PRESETS[self.preset]
        resolved = {name: getattr(self, name) if getattr(self, name) is not None else getattr(defaults, name)
                    for name in ("brackets", "planner", "population", "objective", "hours_grid", "standard_deduction")}
        resolved["network"] = self.network or SCENARIOS[self.scenario_name].default_network
        for name, value in resolved.items():
            object.__setattr__(self, name, value)
        if 0.0 < self.hours_grid < MIN_HOURS_GRID:
            raise ParameterError("hours_grid", f"{self.hours_grid!r} is too fine", allowed(EconomyParams, "hours_grid"))
        if self.initial_rates is not None:  # the schedule checks them (one per bracket, each in [0, 1])
            try:
                bracket_set(self.brackets).schedule(self.initial_rates, deduction=self.standard_deduction)
            except ParameterError as error:
                raise ParameterError("initial_rates", error.problem, error.allowed) from None
        if self.skills is None and self.archetypes > self.workers:
            raise ParameterError("archetypes", f"{self.archetypes} is more than workers {self.workers}",
                                 "0 (off) to workers")
        for component in (SCENARIOS[self.scenario_name], WORKER_MINDS[self.worker_mind], self.planner_rule):
            component.check(self)
        if self.uses_planner:
            validate(rule_options(self.planner_rule), self.planner_options or {},
                     name=lambda field: f"planner_options.{field}")
        return self

    @property
    def planner_rule(self):
        """The planner rule's class (the registry entry named by ``planner``)."""
        return PLANNERS[self.planner]

    @property
    def uses_planner(self) -> bool:
        """Whether the planner sets the rates (in the democratic scenario elected workers do)."""
        return SCENARIOS[self.scenario_name].uses_planner

    @property
    def needs_llm(self) -> bool:
        return WORKER_MINDS[self.worker_mind].needs_llm or (self.uses_planner and self.planner_rule.needs_llm)


def finite_positive(values) -> np.ndarray:
    """Explicit skills: a non-empty array of finite positive numbers."""
    try:
        array = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        array = np.array([math.nan])
    if array.size == 0 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ParameterError("skills", "must be a non-empty array of finite positive numbers",
                             "a non-empty array of finite positive numbers")
    return array

