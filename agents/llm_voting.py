"""Elections among LLM workers: candidacy with platforms, a vote, and the leader's decision.

Each stage is one batch of requests (one per worker, or per archetype whose members all
follow it). A worker that fails to answer does not run, and its ballot counts for nobody (the
reference defaults every vote to the voter's own index); failures are counted.
The run's prompt style (:mod:`agents.prompt_styles`) writes every prompt and reads every answer:
improved-style rates are validated whole percents; paper-style DELTA platforms are clipped as the
planner's are, and clipped answers are counted. In the improved style each voter also sees its
neighbours' last satisfaction and vote.
"""

from __future__ import annotations

import numpy as np

from agents.voting import ElectionResult, LeaderRule, plurality_winner
from llm_runtime import LLMRequest


def _context(style, model, row: int) -> str:
    """What ``row`` knows of itself (persona and last steps), as ``style`` writes it."""
    return style.voter_context(model.workers_persona(row), model.worker_mind.memory.get(row, []))


def _neighbours(model, row: int) -> list[tuple[int, float, int]]:
    """Up to 8 of ``row``'s neighbours, each (worker, last satisfaction, last vote or -1)."""
    if model.network is None:
        return []
    workforce = model.workforce
    return [(other, float(workforce.satisfaction[other]), int(workforce.vote[other]))
            for other in sorted(model.network.neighbors(row))[:8]]


class LLMElection:
    """Candidacy and plurality vote with LLM workers, prompted in ``style`` (a :class:`PromptStyle`)."""

    def __init__(self, style, binding: bool = False):
        self.style, self.binding = style, binding
        self.failures = 0
        self.clipped = 0

    def _batch(self, model, stage, rows, build, schema):
        requests = [LLMRequest(key=(model.worker_mind.run_id, model.period, stage, int(row)), messages=build(int(row)),
                               schema=schema) for row in rows]
        results = model.llm.run_batch(requests)
        self.failures += sum(not r.ok for r in results)
        return results

    def hold(self, model) -> ElectionResult:
        mind, style = model.worker_mind, self.style
        rows = mind.deciders(model)
        rates = model.schedule.rates

        def candidacy(row):
            return style.candidacy_messages(row, _context(style, model, row), rates)

        answers = self._batch(model, "candidacy", rows, candidacy, style.candidacy_schema(rates.size))
        candidates, platforms = [], []
        for row, result in zip(rows.tolist(), answers, strict=True):
            answer = result.value if result.ok else None
            platform = style.decode_platform(answer, rates, owner=self, llm=model.llm)
            if platform is not None:
                platforms.append(platform)
                candidates.append(row)
        if not candidates:
            return None
        listing = style.platforms_text(candidates, platforms)

        def ballot(row):
            return style.ballot_messages(row, _context(style, model, row), _neighbours(model, row), listing)

        results = self._batch(model, "vote", rows, ballot, style.ballot_schema())
        choice = np.array([style.decode_vote(r.value if r.ok else None, candidates) for r in results])
        self.failures += int(sum(r.ok for r in results) - np.sum(choice >= 0))  # answered, but not a candidate
        per_worker = choice if mind.archetypes is None else mind.archetypes.broadcast(choice)
        ballots = per_worker  # -1: no valid vote, which counts for nobody
        counts = np.bincount(ballots[ballots >= 0], minlength=len(candidates))
        winner = plurality_winner(counts, model.rng)
        return ElectionResult(model.period, candidates, [tuple(map(float, p)) for p in platforms],
                              {c: int(k) for c, k in zip(candidates, counts, strict=True)}, candidates[winner], ballots)


class LLMLeaderRule(LeaderRule):
    """The elected worker sets the rates: its platform if binding, else whatever its own LLM answers
    when told to maximise its own utility (the reference's non-binding platform)."""

    def __init__(self, style, binding: bool = False):
        super().__init__(binding)
        self.style = style
        self.failures = 0
        self.clipped = 0

    def selfish_rates(self, model, leader: int) -> np.ndarray:
        style, rates = self.style, model.schedule.rates
        messages = style.leader_messages(leader, _context(style, model, leader), model.schedule)
        request = LLMRequest(key=(model.worker_mind.run_id, model.period, "lead", leader), messages=messages,
                             schema=style.rates_schema(rates.size))
        result = model.llm.run_batch([request])[0]
        answer = result.value if result.ok else None
        new = style.decode_rates(answer, rates, owner=self, llm=model.llm, flip=True)
        if new is None:
            self.failures += 1
            return rates
        return new
