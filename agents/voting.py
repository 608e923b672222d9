"""Elections of the democratic scenario, with rational voters.

At the end of each tax year some workers run for leader, each on a platform (the current
rates shifted uniformly by one of ``PLATFORM_SHIFTS``, the one it likes best); candidates
with the same platform merge into the first drawn. Every worker then votes: its own
preference for each platform (its utility at its best response under the platform's
equilibrium, rescaled to [0, 1]) is mixed with the share of its neighbours who prefer that
platform, with weight ``conformity``. Plurality wins; ties are broken by the model's rng.
The leader sets next year's rates: its platform if platforms bind, otherwise the rates that
maximise its own utility (one pass of per-bracket changes in ``PLATFORM_SHIFTS``), as in
the reference, where the platform does not bind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from public_finance.economy import equilibrium
from agents.network import neighbour_share

PLATFORM_SHIFTS = (-0.2, -0.1, 0.0, 0.1, 0.2)


@dataclass
class ElectionResult:
    period: int
    candidates: list[int]
    platforms: list[tuple[float, ...]]
    votes: dict[int, int]
    leader: int
    ballots: np.ndarray = field(repr=False)

    def as_record(self) -> dict:
        return {"period": self.period, "leader": self.leader, "votes": dict(self.votes),
                "platform": self.platforms[self.candidates.index(self.leader)]}


def equilibrium_utilities(model, schedules) -> np.ndarray:
    """Every worker's utility (rows) at the rational equilibrium of each schedule (columns)."""
    skills = model.workforce.skill
    return np.column_stack([equilibrium(skills, schedule, model.preferences, cap=model.hours_cap,
                                        grid=model.hours_grid).utility for schedule in schedules])


def plurality_winner(counts: np.ndarray, rng: np.random.Generator) -> int:
    """Index with the most votes; a tie is broken uniformly at random by ``rng``."""
    tied = np.flatnonzero(counts == counts.max())
    return int(tied[0] if tied.size == 1 else rng.choice(tied))


def rescale_rows(values: np.ndarray) -> np.ndarray:
    """Map each row to [0, 1] (best option 1, worst 0; all zero when indifferent)."""
    low, high = values.min(axis=1, keepdims=True), values.max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return (values - low) / span


class RationalElection:
    """Candidacy, platforms and a plurality vote among rational workers."""

    def __init__(self, candidates: int = 5, conformity: float = 0.0, shifts=PLATFORM_SHIFTS):
        if not (0.0 <= conformity <= 1.0):
            raise ValueError(f"conformity: must lie in [0, 1], got {conformity!r}")
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ValueError(f"candidates: must be an integer >= 1, got {candidates!r}")
        self.candidates, self.conformity, self.shifts = candidates, conformity, tuple(shifts)

    def menu(self, model) -> list[np.ndarray]:
        rates = model.schedule.rates
        return [np.round(np.clip(rates + shift, 0.0, 1.0), 10) for shift in self.shifts]

    def hold(self, model, candidates=None, platforms=None) -> ElectionResult:
        """Run one election; ``candidates``/``platforms`` may be given to stage one by hand."""
        n = len(model.workforce)
        if platforms is None:
            menu = self.menu(model)
            utility = equilibrium_utilities(model, [model.schedule.with_rates(r) for r in menu])
            if candidates is None:
                candidates = model.rng.choice(n, size=min(self.candidates, n), replace=False)
            chosen = np.argmax(utility[np.asarray(candidates)], axis=1)
            _, first = np.unique(chosen, return_index=True)
            standing = sorted(first)
            candidates = [int(candidates[i]) for i in standing]
            platforms = [menu[chosen[i]] for i in standing]
            utility = utility[:, chosen[standing]]
        else:
            candidates = [int(c) for c in candidates]
            platforms = [np.asarray(p, dtype=float) for p in platforms]
            utility = equilibrium_utilities(model, [model.schedule.with_rates(r) for r in platforms])
        ballots = self.ballots(model, utility)
        counts = np.bincount(ballots, minlength=len(candidates))
        winner = plurality_winner(counts, model.rng)
        return ElectionResult(model.period, candidates, [tuple(map(float, p)) for p in platforms],
                              {c: int(k) for c, k in zip(candidates, counts, strict=True)}, candidates[winner], ballots)

    def ballots(self, model, utility: np.ndarray) -> np.ndarray:
        """Each worker's vote (index into the candidates), mixing own preference and neighbours'."""
        own = rescale_rows(utility)
        sincere = np.argmax(own, axis=1)
        share = neighbour_share(model.network, sincere, utility.shape[1])
        return np.argmax((1.0 - self.conformity) * own + self.conformity * share, axis=1)


class LeaderRule:
    """The elected worker sets the rates at the start of the tax year after its election."""

    def __init__(self, binding: bool = False, shifts=PLATFORM_SHIFTS):
        self.binding, self.shifts = binding, tuple(shifts)

    def initial_rates(self, model):
        return None

    def decide(self, model):
        if not model.elections:
            return model.schedule.rates
        record = model.elections[-1]
        if self.binding:
            return np.asarray(record["platform"])
        return self.selfish_rates(model, record["leader"])

    def selfish_rates(self, model, leader: int) -> np.ndarray:
        """One pass over the brackets, each moved by the shift that most raises the leader's utility."""
        rates = model.schedule.rates.copy()
        for j in range(rates.size):
            options = []
            for shift in self.shifts:
                candidate = rates.copy()
                candidate[j] = np.round(np.clip(candidate[j] + shift, 0.0, 1.0), 10)
                options.append(candidate)
            utility = equilibrium_utilities(model, [model.schedule.with_rates(r) for r in options])[leader]
            rates = options[int(np.argmax(utility))]
        return rates
