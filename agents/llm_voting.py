"""Elections among LLM workers: candidacy with platforms, a vote, and the leader's decision.

Each stage is one batch of requests (one per worker, or per archetype whose members all
follow it). A worker that fails to answer does not run, and its ballot counts for nobody (the
reference defaults every vote to the voter's own index); failures are counted.
Improved-mode rates are validated whole percents; paper-mode DELTA platforms are clipped as the
planner's are, and clipped answers are counted. In the improved mode each voter also sees its
neighbours' last satisfaction and vote.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agents.prompts import (REASON_LENGTH, PaperDelta, PaperNumber, Percent, PlannerAnswer, count_clipped, paper_delta,
                            percent, plain_decimal, sized, worker_block)
from agents.voting import ElectionResult, LeaderRule, plurality_winner
from llm_runtime import LLMRequest


class Candidacy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: bool
    rates: list[Percent] = Field(description="proposed marginal rate per bracket, percent; empty if not running")


class PaperCandidacy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    DELTA: list[PaperNumber] | None


class Ballot(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vote: Annotated[int, BeforeValidator(plain_decimal)] = Field(description="the worker id you vote for")
    reason: str = Field(max_length=REASON_LENGTH)


class PaperBallot(BaseModel):
    model_config = ConfigDict(extra="forbid")
    LEADER: str


def _context(model, row: int) -> str:
    history = model.worker_mind.memory.get(row, [])
    lines = [worker_block(m, model.worker_mind.mode == "paper") for m in history[-3:]]
    persona = model.workers_persona(row)
    return "\n".join(([f"You: {persona}"] if persona else []) + lines)


def _neighbours(model, row: int) -> str:
    if model.network is None or model.worker_mind.mode == "paper":
        return ""
    lines = []
    for other in sorted(model.network.neighbors(row))[:8]:
        satisfied = {1.0: "satisfied", 0.5: "not satisfied"}.get(float(model.satisfaction[other]), "unknown")
        vote = int(model.votes[other])
        lines.append(f"worker_{other}: {satisfied}, last vote {'none' if vote < 0 else f'worker_{vote}'}")
    return "Your neighbours:\n" + "\n".join(lines) if lines else ""


class LLMElection:
    """Candidacy and plurality vote with LLM workers (paper or improved prompts)."""

    def __init__(self, binding: bool = False):
        self.binding = binding
        self.failures = 0
        self.clipped = 0

    def _batch(self, model, stage, rows, build, schema):
        requests = [LLMRequest(key=(model.worker_mind.run_id, model.period, stage, int(row)), messages=build(int(row)),
                               schema=schema) for row in rows]
        results = model.llm.run_batch(requests)
        self.failures += sum(not r.ok for r in results)
        return results

    def hold(self, model) -> ElectionResult:
        mind, paper = model.worker_mind, model.worker_mind.mode == "paper"
        rows = mind.deciders(model)
        n_brackets = model.schedule.n_brackets
        current = percent(model.schedule.rates)

        def candidacy(row):
            ask = (f"Current TAX: {current}. Decide if you want to run in the election for a new tax planning leader. "
                   "The leader sets next year's marginal tax rates. ")
            ask += ('If you run, give your platform as rate changes, JSON {"DELTA": [changes]}; otherwise '
                    '{"DELTA": null}.' if paper else
                    f'Answer JSON {{"run": true or false, "rates": [{n_brackets} rates in percent] or []}}.')
            return [{"role": "system", "content": f"You are worker_{row}, a citizen of Princetonia."},
                    {"role": "user", "content": _context(model, row) + "\n\n" + ask}]

        answers = self._batch(model, "candidacy", rows, candidacy, PaperCandidacy if paper else Candidacy)
        candidates, platforms = [], []
        for row, result in zip(rows.tolist(), answers, strict=True):
            if not result.ok:
                continue
            if paper and result.value.DELTA is not None and len(result.value.DELTA) == n_brackets:
                platform, clipped = paper_delta(model.schedule.rates, result.value.DELTA, flip=True)
                count_clipped(self, model.llm, int(clipped))
                platforms.append(platform)
                candidates.append(row)
            elif not paper and result.value.run and len(result.value.rates) == n_brackets:
                platforms.append(np.asarray(result.value.rates, dtype=float) / 100)
                candidates.append(row)
        if not candidates:
            return None
        listing = "\n".join(f"worker_{c}: TAX {percent(p)}" for c, p in zip(candidates, platforms, strict=True))

        def ballot(row):
            ask = (f"Candidates and their platforms:\n{listing}\nVote for the leader whose rates will maximize your "
                   "utility u. ")
            ask += ('Your output MUST be a JSON like {"LEADER": "id"}.' if paper else
                    'Answer JSON {"vote": worker id number, "reason": "at most 160 characters"}.')
            context = "\n\n".join(x for x in (_context(model, row), _neighbours(model, row)) if x)
            return [{"role": "system", "content": f"You are worker_{row}, a citizen of Princetonia."},
                    {"role": "user", "content": context + "\n\n" + ask}]

        results = self._batch(model, "vote", rows, ballot, PaperBallot if paper else Ballot)
        choice = np.array([_candidate_index(r, candidates, paper) for r in results])
        self.failures += int(sum(r.ok for r in results) - np.sum(choice >= 0))  # answered, but not a candidate
        per_worker = choice if mind.archetypes is None else mind.archetypes.broadcast(choice)
        ballots = per_worker  # -1: no valid vote, which counts for nobody
        counts = np.bincount(ballots[ballots >= 0], minlength=len(candidates))
        winner = plurality_winner(counts, model.rng)
        return ElectionResult(model.period, candidates, [tuple(map(float, p)) for p in platforms],
                              {c: int(k) for c, k in zip(candidates, counts, strict=True)}, candidates[winner], ballots)


def _candidate_index(result, candidates, paper) -> int:
    if not result.ok:
        return -1
    raw = result.value.LEADER if paper else result.value.vote
    digits = "".join(ch for ch in str(raw) if ch.isdigit())
    return candidates.index(int(digits)) if digits and int(digits) in candidates else -1


class LLMLeaderRule(LeaderRule):
    """The elected worker sets the rates: its platform if binding, else whatever its own LLM answers
    when told to maximise its own utility (the reference's non-binding platform)."""

    def __init__(self, binding: bool = False):
        super().__init__(binding)
        self.failures = 0
        self.clipped = 0

    def selfish_rates(self, model, leader: int) -> np.ndarray:
        paper = model.worker_mind.mode == "paper"
        ask = ("This year you set the marginal tax rates for everyone. Maximize your utility u. "
               f"Current TAX: {percent(model.schedule.rates)}; brackets {model.schedule.describe()}. ")
        ask += ('Your output MUST be a JSON like {"DELTA": [changes in -20, -10, 0, 10, 20]}.' if paper else
                'Answer JSON {"rates": [one rate in percent per bracket], "reason": "at most 160 characters"}.')
        schema = sized(PaperDelta if paper else PlannerAnswer, model.schedule.n_brackets)
        messages = [{"role": "system", "content": f"You are worker_{leader}."},
                    {"role": "user", "content": _context(model, leader) + "\n\n" + ask}]
        request = LLMRequest(key=(model.worker_mind.run_id, model.period, "lead", leader), schema=schema,
                             messages=messages)
        result = model.llm.run_batch([request])[0]
        values = None if not result.ok else np.asarray(result.value.DELTA if paper else result.value.rates, float)
        if values is None or values.size != model.schedule.n_brackets:
            self.failures += 1
            return model.schedule.rates
        if paper:
            rates, clipped = paper_delta(model.schedule.rates, values, flip=True)
            count_clipped(self, model.llm, int(clipped))
            return rates
        return values / 100  # validated whole percents in [0, 100]
