"""Scenarios: who sets the rates and what happens around the economy each step.

A scenario is a class registered in :data:`SCENARIOS`; the model builds it once and calls it
at fixed points of each step. The project's three are registered exactly as a user's would be.
"""

from __future__ import annotations

import numpy as np

from registry import Registry
from validation import ParameterError


class Scenario:
    """The base game: a planner sets the rates; nothing happens after settling and nobody votes."""

    uses_planner = True
    default_network = "none"

    def __init__(self, model):
        self.model = model

    @classmethod
    def check(cls, params) -> None:
        """Reject parameters this scenario cannot run with (raise :class:`validation.ParameterError`)."""

    def planner_rule(self, rule):
        """The rule that sets the rates (the planner's own, unless the scenario puts someone else in charge)."""
        return rule

    def after_settle(self) -> None:
        """Called after each step's settle stage."""

    def vote(self) -> None:
        """Called in the vote stage of each step."""


SCENARIOS: Registry[type[Scenario]] = Registry("scenario", base=Scenario)
SCENARIOS.register("rational", Scenario)


@SCENARIOS.register("bounded")
class Bounded(Scenario):
    """LLM workers judge each step through their persona; a NO halves the utility they remember."""

    @classmethod
    def check(cls, params) -> None:
        from agents.worker import WORKER_MINDS

        if not getattr(WORKER_MINDS[params.worker_mind], "reflects", False):
            raise ParameterError("scenario_name", "'bounded' needs worker_mind='llm' (personas judge the tax policy)",
                                 "worker_mind llm, or scenario rational or democratic")

    def after_settle(self) -> None:
        self.model.worker_mind.reflect(self.model)


@SCENARIOS.register("democratic")
class Democratic(Scenario):
    """Workers elect a leader on the last step of each tax year, who sets the next year's rates."""

    uses_planner = False
    default_network = "homophily"

    def __init__(self, model):
        super().__init__(model)
        self.election, self.leader_rule = model.worker_mind.electorate(model)

    def planner_rule(self, rule):
        return self.leader_rule

    def vote(self) -> None:
        model = self.model
        if (model.period + 1) % model.tax_year_length:
            return
        result = self.election.hold(model)
        if result is None:  # nobody ran: the leader stays
            return
        voted = np.asarray(result.candidates)[result.ballots]
        model.workforce.vote[:] = np.where(result.ballots >= 0, voted, -1)  # -1: a ballot for nobody
        model.elections.append(result.as_record())
