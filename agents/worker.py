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

from model.economy import HOURS_CAP, Preferences, best_response

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

    def __post_init__(self):
        self.skill = np.asarray(self.skill, dtype=float)
        for column in WORKER_COLUMNS:
            setattr(self, column, np.zeros(self.skill.size))

    def __len__(self) -> int:
        return self.skill.size


class WorkerAgent(mesa.Agent):
    """A worker who chooses weekly hours; its state is row ``index`` of the model's workforce."""

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
        return int(self.model.votes[self.index])

    @property
    def persona(self) -> str | None:
        return self.attribute("persona")


class RationalMind:
    """Exact utility-maximising hours for all workers at once, taking the expected rebate as given."""

    name = "rational"

    def __init__(self, preferences: Preferences, *, cap: float = HOURS_CAP, grid: float | None = None):
        self.preferences, self.cap, self.grid = preferences, cap, grid

    def initial_hours(self, model) -> np.ndarray:
        return self.decide(model)

    def observe(self, model) -> None:
        """Rational workers keep no history."""

    def decide(self, model) -> np.ndarray:
        return best_response(model.workforce.skill, model.schedule, model.expected_rebate, self.preferences,
                             cap=self.cap, grid=self.grid)


WORKER_MINDS = ("rational", "llm")
