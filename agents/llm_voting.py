"""Elections among LLM workers: candidacy with platforms, a vote, and the leader's decision.

Each stage is one batch of requests (one per worker, or per archetype whose members all
follow it). A worker that fails to answer does not run, and its ballot counts for nobody (the
reference defaults every vote to the voter's own index); failures are counted.
The run's prompt style (:mod:`agents.prompt_styles`) writes every prompt and reads every answer:
improved-style rates are validated whole percents; paper-style DELTA platforms are clipped as the
planner's are, and clipped answers are counted. In the improved style each voter also sees its
neighbours' last satisfaction and vote. What an election knows of the workers (who is prompted, their personas
and memories, the client and run id) the workers' mind gives it as an :class:`Electorate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agents.voting import ElectionResult, LeaderRule, plurality_winner
from llm_runtime import LLMRequest

if TYPE_CHECKING:
    from agents.prompt_styles import PromptStyle
    from agents.prompts import WorkerMemory


@dataclass(frozen=True, eq=False)  # eq=False: deciders is an array, which == compares element-wise
class Electorate:
    """What LLM elections know of the workers, given by their mind: who is prompted and what each remembers.

    ``deciders`` are the workforce rows prompted (every worker, or each archetype's representative);
    ``broadcast`` turns the deciders' ballots into every worker's; ``persona`` and ``memory`` give a row's
    persona (or None) and remembered steps; requests go through ``client`` keyed with ``run_id``.
    """

    style: PromptStyle
    client: object  # anything with run_batch(requests) -> results
    run_id: str | None
    deciders: np.ndarray
    broadcast: Callable[[np.ndarray], np.ndarray]
    persona: Callable[[int], str | None]
    memory: Callable[[int], list[WorkerMemory]]

    def context(self, row: int) -> str:
        """What ``row`` knows of itself (persona and last steps), as the style writes it."""
        return self.style.voter_context(self.persona(row), self.memory(row))

    def request(self, model, stage: str, decider, messages, schema) -> LLMRequest:
        """``decider``'s request at ``stage`` this period, keyed for the response store."""
        return LLMRequest(key=(self.run_id, model.period, stage, decider), messages=messages, schema=schema)


def _neighbours(model, row: int) -> list[tuple[int, float, int]]:
    """Up to 8 of ``row``'s neighbours, each (worker, last satisfaction, last vote or -1)."""
    if model.network is None:
        return []
    workforce = model.workforce
    return [(other, float(workforce.satisfaction[other]), int(workforce.vote[other]))
            for other in sorted(model.network.neighbors(row))[:8]]


class LLMElection:
    """Candidacy and plurality vote among an :class:`Electorate` of LLM workers, prompted in its style."""

    def __init__(self, electorate: Electorate, binding: bool = False):
        self.electorate, self.binding = electorate, binding
        self.failures = 0
        self.clipped = 0

    def _batch(self, model, stage, rows, build, schema):
        electorate = self.electorate
        requests = [electorate.request(model, stage, int(row), build(int(row)), schema) for row in rows]
        results = electorate.client.run_batch(requests)
        self.failures += sum(not r.ok for r in results)
        return results

    def hold(self, model) -> ElectionResult:
        electorate = self.electorate
        style = electorate.style
        rows = electorate.deciders
        rates = model.schedule.rates

        def candidacy(row):
            return style.candidacy_messages(row, electorate.context(row), rates)

        answers = self._batch(model, "candidacy", rows, candidacy, style.candidacy_schema(rates.size))
        candidates, platforms = [], []
        for row, result in zip(rows.tolist(), answers, strict=True):
            answer = result.value if result.ok else None
            platform = style.decode_platform(answer, rates, owner=self, llm=electorate.client)
            if platform is not None:
                platforms.append(platform)
                candidates.append(row)
        if not candidates:
            return None
        listing = style.platforms_text(candidates, platforms)

        def ballot(row):
            return style.ballot_messages(row, electorate.context(row), _neighbours(model, row), listing)

        results = self._batch(model, "vote", rows, ballot, style.ballot_schema())
        choice = np.array([style.decode_vote(r.value if r.ok else None, candidates) for r in results])
        self.failures += int(sum(r.ok for r in results) - np.sum(choice >= 0))  # answered, but not a candidate
        ballots = electorate.broadcast(choice)  # -1: no valid vote, which counts for nobody
        counts = np.bincount(ballots[ballots >= 0], minlength=len(candidates))
        winner = plurality_winner(counts, model.rng)
        return ElectionResult(model.period, candidates, [tuple(map(float, p)) for p in platforms],
                              {c: int(k) for c, k in zip(candidates, counts, strict=True)}, candidates[winner], ballots)


class LLMLeaderRule(LeaderRule):
    """The elected worker sets the rates: its platform if binding, else whatever its own LLM answers
    when told to maximise its own utility (the reference's non-binding platform)."""

    def __init__(self, electorate: Electorate, binding: bool = False):
        super().__init__(binding)
        self.electorate = electorate
        self.failures = 0
        self.clipped = 0

    def selfish_rates(self, model, leader: int) -> np.ndarray:
        electorate, rates = self.electorate, model.schedule.rates
        style = electorate.style
        messages = style.leader_messages(leader, electorate.context(leader), model.schedule)
        request = electorate.request(model, "lead", leader, messages, style.rates_schema(rates.size))
        result = electorate.client.run_batch([request])[0]
        answer = result.value if result.ok else None
        new = style.decode_rates(answer, rates, owner=self, llm=electorate.client, flip=True)
        if new is None:
            self.failures += 1
            return rates
        return new
