"""Workers: Mesa agents backed by columns of the model's workforce table, and their minds.

A worker's state (skill, hours, income, tax, utility, ...) lives in one row of
:class:`Workforce`, so a stage can gather every worker's observation, take one batched
decision and apply it in a single vectorised write; each :class:`WorkerAgent` reads and
writes its own row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mesa
import numpy as np
import pandas as pd

from public_finance.economy import best_response
from registry import Registry

WORKER_COLUMNS = ("hours", "income", "tax", "consumption", "utility")


@dataclass
class Workforce:
    """Column store of all workers' state: one numpy array per quantity, one row per worker."""

    skill: np.ndarray
    attributes: pd.DataFrame = field(default_factory=pd.DataFrame)
    hours: np.ndarray = field(init=False)
    income: np.ndarray = field(init=False)
    tax: np.ndarray = field(init=False)
    consumption: np.ndarray = field(init=False)
    utility: np.ndarray = field(init=False)
    vote: np.ndarray = field(init=False)
    satisfaction: np.ndarray = field(init=False)

    def __post_init__(self):
        self.skill = np.asarray(self.skill, dtype=float)
        for column in WORKER_COLUMNS:
            setattr(self, column, np.zeros(self.skill.size))
        self.vote = np.full(self.skill.size, -1)  # worker voted for in the last election; -1: none yet
        self.satisfaction = np.full(self.skill.size, np.nan)  # the last step's judgement; NaN: none yet

    def __len__(self) -> int:
        return self.skill.size


class WorkerAgent(mesa.Agent):
    """A worker who chooses weekly hours; its state is row ``index`` of the model's workforce.

    Registered as a worker mind (``@WORKER_MINDS.register(name)``), a subclass decides per agent: the work
    stage calls each worker's :meth:`work` through ``model.workers.shuffle_do("work")``. This class's own
    rule is the rational best response, one worker at a time (``worker_mind="rational_agent"``).
    """

    needs_llm = False
    reflects = False

    @classmethod
    def check(cls, params) -> None:
        """Reject parameters this worker class cannot run with (raise :class:`validation.ParameterError`)."""

    def __init__(self, model, index: int):
        super().__init__(model)
        self.index = int(index)

    def _column(self, name):
        return float(getattr(self.model.workforce, name)[self.index])

    skill = property(lambda self: self._column("skill"), doc="Annual income per weekly hour (income at 40 h / 40).")
    income = property(lambda self: self._column("income"), doc="Pre-tax income z = skill x hours.")
    tax = property(lambda self: self._column("tax"), doc="Tax paid this step.")
    consumption = property(lambda self: self._column("consumption"), doc="Post-tax income plus rebate.")
    utility = property(lambda self: self._column("utility"), doc="Utility this step.")

    @property
    def hours(self) -> float:
        """Weekly hours worked this step."""
        return self._column("hours")

    @hours.setter
    def hours(self, value: float) -> None:
        self.model.workforce.hours[self.index] = value

    def attribute(self, name: str, default=None):
        """A demographic attribute from the population source (age, sex, occupation, persona, ...)."""
        table = self.model.workforce.attributes
        return table[name].iat[self.index] if name in table.columns else default

    @property
    def vote(self) -> int:
        """Worker index this worker voted for in the last election (-1 if none)."""
        return int(self.model.workforce.vote[self.index])

    satisfaction = property(lambda self: self._column("satisfaction"),
                            doc="The bounded scenario's last judgement: 1 satisfied, 0.5 not (NaN before any).")

    @property
    def persona(self) -> str | None:
        return self.attribute("persona")

    def work(self) -> None:
        """Choose this step's hours: the best response to the schedule and the expected rebate."""
        model = self.model
        self.hours = float(best_response(np.array([self.skill]), model.schedule, model.expected_rebate,
                                         model.preferences, cap=model.hours_cap, grid=model.hours_grid)[0])

    def observe(self) -> None:
        """Called after each step's settle stage; nothing to remember for a rational worker."""


class WorkerMind:
    """A batched decision rule: every worker's hours from one call (vectorised numpy or one LLM batch).

    Subclass it and register it in :data:`WORKER_MINDS` for a rule that decides for all workers at once.
    For a rule written per worker, the Mesa way, subclass :class:`WorkerAgent` instead.
    """

    needs_llm = False  # reads ``model.llm``
    reflects = False  # can judge each step (the bounded scenario)

    def __init__(self, model):
        self.preferences, self.cap, self.grid = model.preferences, model.hours_cap, model.hours_grid

    @classmethod
    def check(cls, params) -> None:
        """Reject parameters this mind cannot run with (raise :class:`validation.ParameterError`)."""

    def initial_hours(self, model) -> np.ndarray:
        return self.decide(model)

    def decide(self, model) -> np.ndarray:
        raise NotImplementedError

    def observe(self, model) -> None:
        """Called after each step's settle stage (rational workers keep no history)."""

    def electorate(self, model):
        """The election and leader rule of the democratic scenario for workers with this mind."""
        from agents.voting import LeaderRule, RationalElection

        params = model.params
        return (RationalElection(candidates=params.candidates, conformity=params.conformity),
                LeaderRule(binding=params.binding_platforms))


WORKER_MINDS: Registry[type] = Registry("worker mind", base=(WorkerMind, WorkerAgent))
"""Worker minds: :class:`WorkerMind` subclasses (batched) or :class:`WorkerAgent` subclasses (per agent)."""


@WORKER_MINDS.register("rational")
class RationalMind(WorkerMind):
    """Exact utility-maximising hours for all workers at once, taking the expected rebate as given."""

    def decide(self, model) -> np.ndarray:
        return best_response(model.workforce.skill, model.schedule, model.expected_rebate, self.preferences,
                             cap=self.cap, grid=self.grid)


class AgentStepMind(WorkerMind):
    """Runs each worker's own :meth:`WorkerAgent.work` in random order, as any Mesa model would."""

    def decide(self, model) -> np.ndarray:
        model.workers.shuffle_do("work")
        return model.workforce.hours

    def observe(self, model) -> None:
        model.workers.do("observe")


WORKER_MINDS.register("rational_agent", WorkerAgent)
