"""EconomyModel: the tax game as a Mesa model.

Each step runs the stages ``plan`` (the planner acts at tax-year boundaries, never at
step 0), ``work`` (one batched decision for all workers, or each worker's own ``work()``),
``settle`` (tax, rebate, utility) and ``vote`` (the scenario's elections), then collects data.
Minds, planners, scenarios, objectives, networks and populations are chosen by name from
their registries; the LLM client is passed in or built by the LLM minds' own code.
"""

from __future__ import annotations

import functools
import inspect

import mesa
import numpy as np

from agents.llm_settings import llm_client
from agents.network import build_network
from agents.planner import PlannerAgent, make_rule
from agents.worker import WORKER_MINDS, AgentStepMind, Workforce, WorkerAgent
from calibration.population import sample_population
from model.params import PRESETS, EconomyParams, finite_positive
from model.scenarios import SCENARIOS
from public_finance.economy import HOURS_CAP, equilibrium, representative_skills, settle
from public_finance.taxes import bracket_set
from public_finance.welfare import OBJECTIVES, atkinson, gini, inverse_skill_weights, paper_swf, rawlsian, utilitarian
from validation import ParameterError, validate

METRICS = ("objective", "paper_swf", "utilitarian", "inverse_skill", "rawlsian", "atkinson", "gini_pre_tax",
           "gini_post_tax", "mean_income", "equality_productivity", "mean_hours", "median_hours", "share_zero_hours",
           "share_at_cap", "revenue", "rebate", "rebate_equilibrium")
WORKER_REPORTERS = {name: name for name in ("skill", "hours", "income", "tax", "utility")}


RNG_WORDS = "an integer seed >= 0, a numpy Generator, BitGenerator or SeedSequence, or None"


def checked_rng(rng):
    """``rng`` as Mesa takes it: a seed (an integer >= 0), a numpy Generator, BitGenerator or SeedSequence, or
    None; anything else raises :class:`validation.ParameterError` naming ``rng``."""
    if rng is None or isinstance(rng, np.random.Generator | np.random.BitGenerator | np.random.SeedSequence):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool | np.bool_):
        if rng >= 0:
            return int(rng)
        raise ParameterError("rng", f"{rng!r} is out of range", RNG_WORDS)
    raise ParameterError("rng", f"{rng!r} is not a seed", RNG_WORDS)


class EconomyDataCollector(mesa.DataCollector):
    """Model data every step; worker data every ``agent_interval`` steps (0 = never)."""

    def __init__(self, agent_interval: int, **kwargs):
        super().__init__(**kwargs)
        self.agent_interval = agent_interval

    def collect(self, model):
        reporters = self.agenttype_reporters
        if not self.agent_interval or int(model.time) % self.agent_interval:
            self.agenttype_reporters = {}
        try:
            super().collect(model)
        finally:
            self.agenttype_reporters = reporters


class EconomyModel(mesa.Model):
    """Workers choose hours under a planner's piecewise-linear tax schedule; revenue is rebated lump sum.

    Args:
        workers: number of workers.
        preset: ``calibrated`` (isoelastic utility, default) or ``paper`` (the reference formulas).
        brackets: bracket set (``us_2025_single``, ``us_2024_single``, ``three``, ``flat``); preset default.
        planner: a registered planner rule (``fixed``, ``us_federal``, ``saez``, ``saez_reference``, ``oracle``,
            ``blackbox``, ``llm``, or one of yours); preset default.
        worker_mind: a registered worker mind (``rational``, ``rational_agent``, ``llm``, or one of yours).
        tax_year_length: steps per tax year T; the planner acts every T steps.
        objective: planner objective (``paper_swf``, ``utilitarian``, ``inverse_skill``, ``rawlsian``,
            ``equality_productivity``); preset default.
        max_steps: steps after which ``running`` turns False.
        agent_interval: collect worker data every this many steps (0 = off, for large populations).
        skills: explicit skills (overrides the population source); ``workers`` is then their number.
        population: population source name (see :mod:`calibration.population`).
        initial_rates: rates in force at step 0 (default: the bracket set's, or the planner's own).
        planner_options: keyword arguments for the planner rule (e.g. ``{"rates": [...]}`` for ``fixed``).
        hours_grid: restrict hours to multiples of this (paper default 10); ``0`` for exact hours.
        standard_deduction: apply the bracket set's standard deduction (calibrated default).
        eta: curvature of utility of consumption (calibrated preset).
        frisch: Frisch elasticity of hours (calibrated preset).
        scenario_name: ``rational`` (a planner sets the rates), ``bounded`` (LLM workers judge each step through
            their persona; a NO halves the utility they remember) or ``democratic`` (workers elect a leader at
            the end of each tax year, who sets the next year's rates; ``planner`` is then unused).
        network: social network over workers: ``homophily`` (default when democratic), ``watts_strogatz``,
            ``barabasi_albert`` or ``none`` (default otherwise).
        binding_platforms: the leader must enact its platform (default: it maximises its own utility).
        conformity: weight in [0, 1] of neighbours' preferences in each rational vote.
        candidates: number of workers who run in each election.
        backend, base_url, llm_model, llm_store, llm_store_mode: LLM settings for LLM minds (see :mod:`llm_runtime`);
            ``auto`` uses ``LLM_BASE_URL``/``LLM_MODEL``/``OPENAI_API_KEY`` when set, else the embedded model;
            the store (``record``, ``replay`` or ``off``) persists every response for replay and resume. Each
            left out is read from the environment (``LLM_BACKEND``, ``LLM_BASE_URL``, ``LLM_MODEL``, ``LLM_STORE``,
            ``LLM_STORE_MODE``), else its default (``auto``; none; the server's; ``results/llm-responses.sqlite``;
            ``record``).
        prompt_mode: the prompt style of LLM minds, a registered one (``improved``, the default, ``paper``, or
            one of yours; see :mod:`agents.prompt_styles`).
        history_length: steps of its own history an LLM worker sees (default: the style's, 50 for ``paper``,
            8 for ``improved``).
        archetypes: with LLM workers, decide per archetype (K clusters) instead of per worker (0 = off).
        run_id: identity of the run in the LLM response store (for replay and resume).
        llm_concurrency: requests in flight at once (default ``LLM_CONCURRENCY``).
        llm: the LLM client (any object with ``run_batch(requests) -> results``); by default one is built
            from the LLM settings above when a mind or planner needs it.
        rng: seed or numpy Generator; all randomness flows from it.

    Every parameter is declared, with its default and allowed values, in :class:`model.params.EconomyParams`;
    a bad one raises :class:`validation.ParameterError` (a ``ValueError``) naming it.
    """

    def __init__(self, *, llm=None, rng=None, **parameters):
        super().__init__(rng=checked_rng(rng))
        self._initial_rng_state = self.rng.bit_generator.state
        self.params = params = validate(EconomyParams, parameters)
        self.preset, self.objective_name, self.scenario_name = params.preset, params.objective, params.scenario_name
        self.tax_year_length, self.max_steps = params.tax_year_length, params.max_steps
        self.agent_interval = params.agent_interval
        self.hours_grid, self.hours_cap = params.hours_grid or None, HOURS_CAP
        self._objective = OBJECTIVES[params.objective]()

        self.workforce = self._draw_workforce(params)
        self.bracket_set = bracket_set(params.brackets)
        schedule = self.bracket_set.schedule(params.initial_rates, deduction=params.standard_deduction)
        self.preferences = PRESETS[params.preset].preferences(self.workforce.skill, params)
        self._owns_llm = llm is None and params.needs_llm
        self.llm = llm_client(params) if self._owns_llm else llm
        mind = WORKER_MINDS[params.worker_mind]
        self.worker_class = mind if issubclass(mind, WorkerAgent) else WorkerAgent
        self.worker_class.create_agents(self, len(self.workforce), index=np.arange(len(self.workforce)))
        self.worker_mind = AgentStepMind(self) if mind is self.worker_class else mind(self)
        self.skill_weights = inverse_skill_weights(self.workforce.skill)
        self.network = build_network(params.network, self.workforce.skill, self.workforce.attributes, self.rng)
        self.elections: list[dict] = []
        self.scenario_rules = SCENARIOS[params.scenario_name](self)
        rule = self.scenario_rules.planner_rule(make_rule(params.planner, **(params.planner_options or {}))
                                                if params.uses_planner else None)
        self.planner = PlannerAgent(self, rule, schedule)
        rates = rule.initial_rates(self)
        if rates is not None:
            self.planner.schedule = schedule.with_rates(rates)
            self.planner.history = [(0, tuple(map(float, self.planner.schedule.rates)))]
        self.period = -1
        start = self._equilibrium()
        self.expected_rebate, self.rebate_equilibrium = start.rebate, start.balanced
        self.workforce.hours[:] = self.worker_mind.initial_hours(self)
        self.settle()

        self.datacollector = EconomyDataCollector(
            self.agent_interval,
            model_reporters=self.model_reporters(),
            agenttype_reporters={self.worker_class: WORKER_REPORTERS} if self.agent_interval else None)
        self.datacollector.collect(self)

    def population_draw(self, n: int) -> np.ndarray:
        """Skills of ``n`` workers from the run's population source, drawn as the run's seed draws them:
        the population a run's workers stand for, the same for every run size (the population oracle's)."""
        bits = type(self.rng.bit_generator)()
        bits.state = self._initial_rng_state
        return sample_population(self.params.population, n, np.random.Generator(bits))["skill"].to_numpy(float)

    def model_reporters(self) -> dict:
        """The DataCollector's model reporters: attribute names (or callables); extend it in a subclass."""
        return {name: name for name in (*METRICS, *self.rate_names, "leader")}

    # --- construction helpers -------------------------------------------------------------
    def _draw_workforce(self, params) -> Workforce:
        if params.skills is not None:
            return Workforce(finite_positive(params.skills))
        frame = sample_population(params.population, params.workers, self.rng)
        return Workforce(frame["skill"].to_numpy(dtype=float), frame.drop(columns="skill"))

    def close(self) -> None:
        """Release the LLM client this model built (and stop the embedded model if it started it)."""
        if self._owns_llm:
            self.llm.close()

    def workers_persona(self, row: int) -> str | None:
        personas = self._personas
        return None if personas is None else personas[row]

    @functools.cached_property
    def _personas(self) -> list[str] | None:
        """Every worker's persona (fixed for the run), read from the population once."""
        table = self.workforce.attributes
        return table["persona"].astype(str).tolist() if "persona" in table.columns else None

    # --- state ----------------------------------------------------------------------------
    @property
    def schedule(self):
        """The tax schedule in force."""
        return self.planner.schedule

    @property
    def rate_names(self) -> tuple[str, ...]:
        return tuple(f"rate_{j + 1}" for j in range(self.schedule.n_brackets))

    @property
    def tax_year(self) -> int:
        return max(self.period, 0) // self.tax_year_length

    @property
    def is_tax_year_start(self) -> bool:
        return self.period > 0 and self.period % self.tax_year_length == 0

    @property
    def workers(self) -> mesa.agent.AgentSet:
        """Every worker agent."""
        return self.agents_by_type[self.worker_class]

    # --- stages ---------------------------------------------------------------------------
    def step(self):
        self.period = int(self.time) - 1
        self.plan()
        self.work()
        self.settle()
        self.vote()
        self.datacollector.collect(self)
        if self.time >= self.max_steps:
            self.running = False

    def plan(self):
        """The planner acts (at tax-year boundaries only)."""
        before = self.schedule
        self.agents_by_type[PlannerAgent].do("plan")
        if self.schedule is not before:
            self.rebate_equilibrium = self._equilibrium().balanced

    def _equilibrium(self):
        """The rational workers' equilibrium under the schedule in force; ``balanced`` is False when no rebate
        equilibrium exists (falling rates can make the budget jump across the rebate)."""
        return equilibrium(representative_skills(self.workforce.skill), self.schedule, self.preferences,
                           cap=self.hours_cap, grid=self.hours_grid)

    def work(self):
        """All workers choose hours in one batched decision."""
        self.workforce.hours[:] = self.worker_mind.decide(self)

    def settle(self):
        """Collect taxes, rebate the revenue equally, and score the step."""
        w = self.workforce
        outcome = settle(w.skill, w.hours, self.schedule, None, self.preferences)
        w.income, w.tax, w.consumption, w.utility = outcome.income, outcome.tax, outcome.consumption, outcome.utility
        self.expected_rebate = outcome.rebate
        self.outcome = outcome
        self._record_metrics(outcome)
        if self.period >= 0:
            self.worker_mind.observe(self)
            self.scenario_rules.after_settle()

    @property
    def election(self):
        """The scenario's election (``None`` where nobody votes)."""
        return getattr(self.scenario_rules, "election", None)

    @property
    def leader(self) -> int:
        """Worker index of the elected leader (-1 before the first election or without elections)."""
        return self.elections[-1]["leader"] if self.elections else -1

    def vote(self):
        """The scenario's elections (in the democratic scenario, on the last step of each tax year)."""
        self.scenario_rules.vote()

    def _record_metrics(self, outcome):
        w = self.workforce
        post_tax = outcome.consumption - self.preferences.base_consumption
        self.objective = float(self._objective.score(outcome, w.skill))
        self.paper_swf = paper_swf(outcome.utility, outcome.income)
        self.utilitarian = utilitarian(outcome.utility)
        self.inverse_skill = float(np.mean(self.skill_weights * outcome.utility))
        self.rawlsian = rawlsian(outcome.utility)
        self.atkinson = atkinson(outcome.consumption, 1.0)
        self.gini_pre_tax = gini(outcome.income)
        self.gini_post_tax = gini(post_tax)
        self.mean_income = float(outcome.income.mean())
        n = len(w)
        self.equality_productivity = (1.0 - self.gini_post_tax * n / max(n - 1, 1)) * self.mean_income
        self.mean_hours = float(w.hours.mean())
        self.median_hours = float(np.median(w.hours))
        self.share_zero_hours = float(np.mean(w.hours <= 0.0))
        self.share_at_cap = float(np.mean(w.hours >= self.hours_cap))
        self.revenue = outcome.revenue
        self.rebate = outcome.rebate
        for name, rate in zip(self.rate_names, self.schedule.rates, strict=True):
            setattr(self, name, float(rate))


# The keyword arguments EconomyModel accepts, with their defaults, as declared in EconomyParams: shown by help(),
# IDEs and Mesa's SolaraViz parameter check.
EconomyModel.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=field.default)
       for name, field in EconomyParams.model_fields.items()]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in ("llm", "rng")])
