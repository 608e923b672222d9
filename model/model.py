"""EconomyModel: the tax game as a Mesa model.

Each step runs the stages ``plan`` (the planner acts at tax-year boundaries, never at
step 0), ``work`` (one batched decision for all workers), ``settle`` (tax, rebate,
utility) and ``vote`` (an extension point; the base game holds no elections), then
collects data.
"""

from __future__ import annotations

import functools
from pathlib import Path

import mesa
import numpy as np

from agents.archetypes import Archetypes
from agents.planner import PLANNERS, PlannerAgent, make_rule
from agents.prompts import PROMPT_MODES
from agents.voting import LeaderRule, RationalElection
from agents.worker import WORKER_MINDS, RationalMind, Workforce, WorkerAgent
from calibration.population import DEFAULT_SOURCE, sample_population
from model.economy import (HOURS_CAP, LinearPreferences, calibrate_disutility, equilibrium, representative_skills,
                           settle)
from model.network import NETWORKS, build_network
from model.taxes import bracket_set
from model.welfare import DEFAULT_OBJECTIVE, atkinson, gini, inverse_skill_weights, paper_swf, rawlsian, utilitarian
from model.welfare import objective as objective_function

PRESETS = ("calibrated", "paper")
SCENARIOS = ("rational", "bounded", "democratic")
PRESET_DEFAULTS = {
    "paper": {"brackets": "three", "planner": "fixed", "population": "paper_gb2", "hours_grid": 10.0,
              "standard_deduction": False},
    "calibrated": {"brackets": "us_2025_single", "planner": "us_federal", "population": None, "hours_grid": None,
                   "standard_deduction": True},
}
CALIBRATION_BRACKETS = "us_2025_single"
METRICS = ("objective", "paper_swf", "utilitarian", "inverse_skill", "rawlsian", "atkinson", "gini_pre_tax",
           "gini_post_tax", "mean_income", "equality_productivity", "mean_hours", "median_hours", "share_zero_hours",
           "share_at_cap", "revenue", "rebate")
WORKER_REPORTERS = {name: name for name in ("skill", "hours", "income", "tax", "utility")}


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


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


class EconomyModel(mesa.Model):
    """Workers choose hours under a planner's piecewise-linear tax schedule; revenue is rebated lump sum.

    Args:
        workers: number of workers.
        preset: ``calibrated`` (isoelastic utility, default) or ``paper`` (the reference formulas).
        brackets: bracket set (``us_2025_single``, ``us_2024_single``, ``three``, ``flat``); preset default.
        planner: ``fixed``, ``us_federal``, ``saez``, ``saez_reference``, ``oracle`` or ``blackbox``.
        worker_mind: how workers decide (``rational``).
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
        backend, base_url, llm_model, llm_store, llm_store_mode: LLM settings for LLM minds (see :mod:`llm`);
            ``auto`` uses ``LLM_BASE_URL``/``LLM_MODEL``/``OPENAI_API_KEY`` when set, else the embedded model;
            the store (``record``, ``replay`` or ``off``) persists every response for replay and resume.
        prompt_mode: ``improved`` (default) or ``paper`` prompts for LLM minds.
        history_length: steps of its own history an LLM worker sees (default 50 in paper mode, 8 improved).
        archetypes: with LLM workers, decide per archetype (K clusters) instead of per worker (0 = off).
        run_id: identity of the run in the LLM response store (for replay and resume).
        llm_concurrency: requests in flight at once (default ``LLM_CONCURRENCY`` or 16).
        rng: seed or numpy Generator; all randomness flows from it.
    """

    def __init__(self, workers: int = 100, preset: str = "calibrated", brackets: str | None = None,
                 planner: str | None = None, worker_mind: str = "rational", tax_year_length: int = 25,
                 objective: str | None = None, max_steps: int = 100, agent_interval: int = 1, skills=None,
                 population: str | None = None, initial_rates=None, planner_options: dict | None = None,
                 hours_grid: float | None = None, standard_deduction: bool | None = None, eta: float = 1.0,
                 frisch: float = 0.4, scenario_name: str = "rational", network: str | None = None,
                 binding_platforms: bool = False, conformity: float = 0.0, candidates: int = 5,
                 backend: str = "auto", base_url: str | None = None, llm_model: str | None = None,
                 llm_store: str = "results/llm-responses.sqlite", llm_store_mode: str = "record", prompt_mode: str = "improved", history_length: int | None = None,
                 archetypes: int = 0, run_id: str = "run", llm_concurrency: int | None = None, rng=None):
        super().__init__(rng=rng)
        if preset not in PRESETS:
            raise ValueError(f"preset: unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
        defaults = PRESET_DEFAULTS[preset]
        self.preset = preset
        self.tax_year_length = _positive_int("tax_year_length", tax_year_length)
        self.max_steps = _positive_int("max_steps", max_steps)
        self.agent_interval = _positive_int("agent_interval", agent_interval, minimum=0)
        self.objective_name = objective or DEFAULT_OBJECTIVE[preset]
        self._score = objective_function(self.objective_name)
        if worker_mind not in WORKER_MINDS:
            raise ValueError(f"worker_mind: unknown mind {worker_mind!r}; allowed: {', '.join(WORKER_MINDS)}")
        planner = planner or defaults["planner"]
        if planner not in (*PLANNERS, "llm"):
            raise ValueError(f"planner: unknown planner {planner!r}; allowed: {', '.join((*PLANNERS, 'llm'))}")
        if prompt_mode not in PROMPT_MODES:
            raise ValueError(f"prompt_mode: unknown mode {prompt_mode!r}; allowed: {', '.join(PROMPT_MODES)}")
        if scenario_name not in SCENARIOS:
            raise ValueError(f"scenario_name: unknown scenario {scenario_name!r}; allowed: {', '.join(SCENARIOS)}")
        if scenario_name == "bounded" and worker_mind != "llm":
            raise ValueError("scenario_name: 'bounded' needs worker_mind='llm' (personas judge the tax policy)")
        self.scenario_name = scenario_name
        network = network or ("homophily" if scenario_name == "democratic" else "none")
        if network not in NETWORKS:
            raise ValueError(f"network: unknown network {network!r}; allowed: {', '.join(NETWORKS)}")
        grid = defaults["hours_grid"] if hours_grid is None else float(hours_grid)
        if grid is not None and grid != 0 and not (0 < grid <= HOURS_CAP):
            raise ValueError(f"hours_grid: must be 0 (exact hours) or in (0, {HOURS_CAP:g}], got {hours_grid!r}")
        self.hours_grid = grid or None
        self.hours_cap = HOURS_CAP

        self.workforce = self._draw_workforce(workers, skills, population or defaults["population"] or DEFAULT_SOURCE)
        self.bracket_set = bracket_set(brackets or defaults["brackets"])
        deduction = defaults["standard_deduction"] if standard_deduction is None else bool(standard_deduction)
        schedule = self.bracket_set.schedule(initial_rates, deduction=deduction)
        self.preferences = self._preferences(eta, frisch)
        # in the democratic scenario elected workers set the rates: the planner (even "llm") is unused
        uses_llm = worker_mind == "llm" or (planner == "llm" and scenario_name != "democratic")
        self.llm = self._llm_client(backend, base_url, llm_model, llm_store, llm_store_mode,
                                    llm_concurrency) if uses_llm else None
        if worker_mind == "llm":
            from agents.llm_minds import LLMWorkerMind

            groups = Archetypes.fit(self.workforce.skill, self.workforce.attributes, archetypes, self.rng) \
                if archetypes else None
            self.worker_mind = LLMWorkerMind(self.preferences, cap=self.hours_cap, grid=self.hours_grid,
                                             client=self.llm, mode=prompt_mode,
                                             history_length=None if history_length is None else _positive_int("history_length", history_length, 0),
                                             run_id=run_id, archetypes=groups)
        else:
            self.worker_mind = RationalMind(self.preferences, cap=self.hours_cap, grid=self.hours_grid)
        WorkerAgent.create_agents(self, len(self.workforce), index=np.arange(len(self.workforce)))
        self.skill_weights = inverse_skill_weights(self.workforce.skill)
        self.network = build_network(network, self.workforce.skill, self.workforce.attributes, self.rng)
        self.elections: list[dict] = []
        self.votes = np.full(len(self.workforce), -1)
        self.satisfaction = np.full(len(self.workforce), np.nan)
        if scenario_name == "democratic" and worker_mind == "llm":
            from agents.llm_voting import LLMElection, LLMLeaderRule

            self.election = LLMElection(binding=bool(binding_platforms))
            rule = LLMLeaderRule(binding=bool(binding_platforms))
        elif scenario_name == "democratic":
            self.election = RationalElection(candidates=candidates, conformity=conformity)
            rule = LeaderRule(binding=bool(binding_platforms))
        else:
            self.election = None
            rule = self._planner_rule(planner, planner_options, prompt_mode, run_id)
        self.planner = PlannerAgent(self, rule, schedule)
        rates = rule.initial_rates(self)
        if rates is not None:
            self.planner.schedule = schedule.with_rates(rates)
            self.planner.history = [(0, tuple(map(float, self.planner.schedule.rates)))]
        self.period = -1
        self.expected_rebate = equilibrium(representative_skills(self.workforce.skill), self.schedule,
                                           self.preferences, cap=self.hours_cap, grid=self.hours_grid).rebate
        self.workforce.hours[:] = self.worker_mind.initial_hours(self)
        self.settle()

        self.datacollector = EconomyDataCollector(
            self.agent_interval,
            model_reporters={name: name for name in (*METRICS, *self.rate_names, "leader")},
            agenttype_reporters={WorkerAgent: WORKER_REPORTERS} if self.agent_interval else None)
        self.datacollector.collect(self)

    # --- construction helpers -------------------------------------------------------------
    def _draw_workforce(self, workers, skills, population) -> Workforce:
        if skills is not None:
            skills = np.asarray(skills, dtype=float).ravel()
            if skills.size == 0 or not np.all(np.isfinite(skills)) or np.any(skills <= 0):
                raise ValueError("skills: must be a non-empty array of finite positive numbers")
            return Workforce(skills)
        workers = _positive_int("workers", workers)
        frame = sample_population(population, workers, self.rng)
        return Workforce(frame["skill"].to_numpy(dtype=float), frame.drop(columns="skill"))

    def _preferences(self, eta, frisch):
        if self.preset == "paper":
            return LinearPreferences()
        if not (np.isfinite(eta) and eta > 0):
            raise ValueError(f"eta: must be a positive number, got {eta!r}")
        if not (np.isfinite(frisch) and frisch > 0):
            raise ValueError(f"frisch: must be a positive number, got {frisch!r}")
        reference = bracket_set(CALIBRATION_BRACKETS).schedule()
        return calibrate_disutility(self.workforce.skill, reference, eta=eta, frisch=frisch, cap=HOURS_CAP)

    def _llm_client(self, backend, base_url, llm_model, llm_store, llm_store_mode, llm_concurrency):
        from llm import LLMClient, LLMConfig

        if llm_store:
            Path(llm_store).parent.mkdir(parents=True, exist_ok=True)
        return LLMClient(LLMConfig.from_env(backend=backend, base_urls=base_url, model=llm_model,
                                            store_path=llm_store, store_mode=llm_store_mode,
                                            concurrency=llm_concurrency))

    def close(self) -> None:
        """Release the LLM client (and stop the embedded model if this model started it)."""
        if self.llm is not None:
            self.llm.close()

    def _planner_rule(self, planner, options, prompt_mode, run_id):
        if planner == "llm":
            from agents.llm_minds import LLMPlannerRule

            return LLMPlannerRule(self.llm, mode=prompt_mode, run_id=run_id, **(options or {}))
        return make_rule(planner, **(options or {}))

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
    def workers(self):
        return self.agents_by_type[WorkerAgent]

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
        self.agents_by_type[PlannerAgent].do("plan")

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
            if self.scenario_name == "bounded":
                self.worker_mind.reflect(self)

    @property
    def leader(self) -> int:
        """Worker index of the elected leader (-1 before the first election or without elections)."""
        return self.elections[-1]["leader"] if self.elections else -1

    def vote(self):
        """In the democratic scenario, elect a leader on the last step of each tax year."""
        if self.election is None or (self.period + 1) % self.tax_year_length:
            return
        result = self.election.hold(self)
        if result is None:  # nobody ran: the leader stays
            return
        self.votes = np.asarray(result.candidates)[result.ballots]
        self.elections.append(result.as_record())

    def _record_metrics(self, outcome):
        w = self.workforce
        post_tax = outcome.consumption - self.preferences.base_consumption
        self.objective = float(self._score(outcome, w.skill))
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
