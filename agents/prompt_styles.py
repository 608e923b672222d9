"""Prompt styles: what LLM minds ask, the answers they accept, and what an answer means.

A style is a :class:`PromptStyle` subclass registered in :data:`PROMPT_STYLES`; the ``prompt_mode`` parameter
names it. For workers, the planner, candidates and voters it owns the message text, the answer schema and the
decoding of an answer into hours or rates. The project's two register exactly as a user's does:

* ``paper`` follows the reference implementation's prompts (spec sections 1.4, 2.3, 4.2), its lenient reading
  of numbers and its clipping, and counts every clipped answer.
* ``improved`` (the default) puts the persona and the worker's own tax facts in the labour prompt, shows true
  best-so-far memories instead of a running average labelled "best", reflects only across steps under the
  same rates, keeps shared text first so that servers can reuse cached prefixes, and asks for absolute rates
  in whole percent, validated rather than clipped.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from agents.prompts import (PAY_HOURS, Ballot, Candidacy, PaperBallot, PaperCandidacy, PaperDelta, PaperLabor,
                            PlannerAnswer, Satisfaction, WorkerMemory, best_memories, pay_table, percent,
                            reflection, sized, worker_answer, worker_block)
from registry import Registry


class PromptStyle:
    """How LLM workers, planners, candidates and voters are prompted, and how their answers are read.

    The base class holds the text every style shares; a style supplies the rest (the methods that raise
    :class:`NotImplementedError`, and the attributes declared here) and may override any method. ``owner``
    (a mind, planner rule or election with a ``clipped`` count) and ``llm`` (the client, whose accounting also
    counts them) are where answers that had to be clipped are counted.
    """

    history_length: int  # steps of its own history a worker sees, unless the run sets ``history_length``
    hours_field: str  # the worker answer's field with the hours
    rates_field: str  # the planner, candidate and leader answers' field with the rates
    vote_field: str  # the ballot's field naming a candidate
    ballot_format: str  # how a voter answers
    leader_format: str  # how an elected leader answers

    # --- workers ------------------------------------------------------------------------------
    def worker_messages(self, *, worker: int, skill: float, history: list[WorkerMemory], history_length: int,
                        exploit: bool, persona: str | None = None, schedule=None, rebate: float = 0.0,
                        schedule_text: str | None = None, pay=None,
                        best: list[WorkerMemory] | None = None) -> list[dict]:
        """Chat messages for one worker's labour decision.

        ``schedule_text``, ``pay`` (this worker's row of :func:`agents.prompts.pay_table`) and ``best`` (its
        :func:`agents.prompts.best_memories`) may be passed in when prompts for many workers are built at
        once; by default they are computed from ``schedule`` and ``history``.
        """
        raise NotImplementedError

    def worker_schema(self, cap: float) -> type[BaseModel]:
        """The worker's answer, with hours up to ``cap``."""
        raise NotImplementedError

    def clip_hours(self, hours: np.ndarray, cap: float) -> int:
        """Bring ``hours`` (changed in place) within ``cap`` as the style does; how many were above it.
        None are: the schema bounds them."""
        return 0

    def decode_hours(self, answers, current, cap: float, *, owner, llm) -> tuple[np.ndarray, np.ndarray]:
        """Each decider's hours: its answer, or its ``current`` hours where it has none (``None``, a failed
        request); and which had none."""
        field = self.hours_field
        values = np.array([np.nan if a is None else getattr(a, field) for a in answers], dtype=float)
        failed = np.isnan(values)
        chosen = np.where(failed, current, values)
        count_clipped(owner, llm, self.clip_hours(chosen, cap))
        return chosen, failed

    def history_block(self, memory: WorkerMemory) -> str:
        """One step of a worker's history as a block of lines, as voters, leaders and judges see it."""
        raise NotImplementedError

    def satisfaction_messages(self, worker: int, persona: str | None, memory: WorkerMemory) -> list[dict]:
        """The bounded scenario's question: is the worker satisfied with this step's tax policy?"""
        question = (f"{persona or f'You are worker_{worker}.'}\nBased on your summary of this year:\n"
                    f"{self.history_block(memory)}\nare you satisfied with the overall tax policy (including "
                    "tax_i and rebate)? Let's think step by step. Your output MUST be a JSON like "
                    '{"thought": "...", "ANSWER": "YES" or "NO"}.')
        return [{"role": "system", "content": ""}, {"role": "user", "content": question}]

    def satisfaction_schema(self) -> type[BaseModel]:
        return Satisfaction

    def satisfied(self, answer) -> bool:
        return answer.ANSWER == "YES"

    # --- the planner --------------------------------------------------------------------------
    def initial_rates(self, n_brackets: int) -> np.ndarray | None:
        """The LLM planner's rates from step 0 when the run sets none (``None``: the bracket set's own)."""
        return None

    def planner_system(self, n_brackets: int, brackets: str, objective_name: str) -> str:
        """The planner's instructions; ``brackets`` is the schedule in force, described."""
        raise NotImplementedError

    def objective_text(self, year: dict, first: dict) -> str:
        """A tax year's objective as the planner reads it (``first``: the first year of the record)."""
        raise NotImplementedError

    def planner_messages(self, years: list[dict], schedule, objective_name: str, *, max_years: int,
                         final: bool) -> list[dict]:
        """The planner's prompt: one line per tax year (the last ``max_years``), the best year, and a cue to
        try new rates or, in the ``final`` year, to keep the best."""
        first = years[0]

        def rates(year: dict) -> str:
            return " ".join(f"{100 * r:.0f}" for r in year["rates"])

        table = "\n".join(
            f"year {y['year']}: rates % {rates(y)} | objective {self.objective_text(y, first)} | mean hours "
            f"{y['mean_hours']:.1f} | Gini {y['gini']:.3f}" for y in years[-max_years:])
        best = max(years, key=lambda y: y["objective"])
        best_line = (f"Best so far: year {best['year']}, rates % {rates(best)}, "
                     f"objective {self.objective_text(best, first)}.")
        cue = "Choose the best rates you have seen." if final else "Try rates that may do better."
        system = self.planner_system(schedule.n_brackets, schedule.describe(), objective_name)
        return [{"role": "system", "content": system},
                {"role": "user", "content": f"Record by tax year:\n{table}\n{best_line}\n{cue}"}]

    def rates_schema(self, n_brackets: int) -> type[BaseModel]:
        """The planner's (and an elected leader's) answer, with one value per bracket."""
        raise NotImplementedError

    def new_rates(self, values: np.ndarray, rates: np.ndarray, flip: bool) -> tuple[np.ndarray, bool]:
        """The rates (fractions) an answer's values set from ``rates``, and whether any had to be clipped."""
        raise NotImplementedError

    def decode_rates(self, answer, rates, *, owner, llm, flip: bool = False) -> np.ndarray | None:
        """The rates an answer sets from ``rates``, or ``None`` when it gives no finite value per bracket (or
        is ``None``, a failed request). ``flip``: an elected worker's answer (see :func:`paper_delta`)."""
        values = None if answer is None else getattr(answer, self.rates_field)
        if values is None:
            return None
        values, rates = np.asarray(values, dtype=float), np.asarray(rates, dtype=float)
        if values.shape != rates.shape or not np.all(np.isfinite(values)):
            return None
        new, clipped = self.new_rates(values, rates, flip)
        count_clipped(owner, llm, int(clipped))
        return new

    # --- elections ----------------------------------------------------------------------------
    def voter_context(self, persona: str | None, history: list[WorkerMemory]) -> str:
        """What a candidate, voter or leader knows of itself: its persona and its last three steps."""
        lines = [self.history_block(m) for m in history[-3:]]
        return "\n".join(([f"You: {persona}"] if persona else []) + lines)

    def neighbours_text(self, neighbours: list[tuple[int, float, int]]) -> str:
        """What a voter sees of its neighbours, each (worker, last satisfaction, last vote or -1): nothing."""
        return ""

    def candidacy_format(self, n_brackets: int) -> str:
        """How a worker answers whether it runs, and on what platform."""
        raise NotImplementedError

    def candidacy_messages(self, worker: int, context: str, rates) -> list[dict]:
        """Whether ``worker`` runs for leader, under the ``rates`` in force."""
        ask = (f"Current TAX: {percent(rates)}. Decide if you want to run in the election for a new tax "
               "planning leader. The leader sets next year's marginal tax rates. "
               + self.candidacy_format(len(rates)))
        return [{"role": "system", "content": f"You are worker_{worker}, a citizen of Princetonia."},
                {"role": "user", "content": context + "\n\n" + ask}]

    def candidacy_schema(self, n_brackets: int) -> type[BaseModel]:
        raise NotImplementedError

    def decode_platform(self, answer, rates, *, owner, llm) -> np.ndarray | None:
        """A candidate's platform (rates), or ``None`` when the worker does not run (or did not answer)."""
        return self.decode_rates(answer, rates, owner=owner, llm=llm, flip=True)

    def platforms_text(self, candidates: list[int], platforms: list[np.ndarray]) -> str:
        """The candidates and their platforms, as every voter sees them."""
        return "\n".join(f"worker_{c}: TAX {percent(p)}" for c, p in zip(candidates, platforms, strict=True))

    def ballot_messages(self, worker: int, context: str, neighbours: list[tuple[int, float, int]],
                        platforms: str) -> list[dict]:
        """``worker``'s vote among the candidates (``platforms``: :meth:`platforms_text`)."""
        ask = (f"Candidates and their platforms:\n{platforms}\nVote for the leader whose rates will maximize "
               "your utility u. " + self.ballot_format)
        context = "\n\n".join(x for x in (context, self.neighbours_text(neighbours)) if x)
        return [{"role": "system", "content": f"You are worker_{worker}, a citizen of Princetonia."},
                {"role": "user", "content": context + "\n\n" + ask}]

    def ballot_schema(self) -> type[BaseModel]:
        raise NotImplementedError

    def decode_vote(self, answer, candidates: list[int]) -> int:
        """The index in ``candidates`` of the worker a ballot names (its digits: "worker_3" names 3), or -1
        when it names none of them (or is ``None``, a failed request)."""
        if answer is None:
            return -1
        digits = "".join(ch for ch in str(getattr(answer, self.vote_field)) if ch.isdigit())
        return candidates.index(int(digits)) if digits and int(digits) in candidates else -1

    def leader_messages(self, worker: int, context: str, schedule) -> list[dict]:
        """What an elected worker is asked when its platform does not bind (answer: :meth:`rates_schema`)."""
        ask = ("This year you set the marginal tax rates for everyone. Maximize your utility u. "
               f"Current TAX: {percent(schedule.rates)}; brackets {schedule.describe()}. "
               + self.leader_format)
        return [{"role": "system", "content": f"You are worker_{worker}."},
                {"role": "user", "content": context + "\n\n" + ask}]


PROMPT_STYLES: Registry[type[PromptStyle]] = Registry("prompt style", base=PromptStyle)
"""Prompt styles by name (the ``prompt_mode`` parameter): :class:`PromptStyle` subclasses."""


def count_clipped(owner, llm, n: int = 1) -> None:
    """Count ``n`` clipped answers, on ``owner`` and in ``llm``'s accounting where it keeps one."""
    if n:
        owner.clipped += n
        accounting = getattr(llm, "accounting", None)
        if accounting is not None:
            accounting.add(clipped=n)


def paper_delta(rates, delta, *, flip: bool = False) -> tuple[np.ndarray, bool]:
    """The reference's DELTA rule: each change clipped to [-20, 20] points and rounded to 10, the new rates
    (fractions) clipped to [0, 1]; and whether any clip or flip changed a value.

    ``flip``: the reference's elected leader, whose change is reversed when it would leave [0, 100] %.
    """
    rates, delta = np.asarray(rates, dtype=float), np.asarray(delta, dtype=float)
    bounded = np.clip(delta, -20, 20)
    step = np.round(bounded / 10) * 10 / 100
    outside = (rates + step > 1 + 1e-9) | (rates + step < -1e-9)
    if flip:
        step = np.where(outside, -step, step)
    moved = np.round(rates + step, 10)
    new = np.clip(moved, 0.0, 1.0)
    return new, bool(np.any(bounded != delta) or np.any(new != moved) or (flip and np.any(outside)))


@PROMPT_STYLES.register("improved")
class ImprovedStyle(PromptStyle):
    """Short prompts that carry each worker's own tax facts; whole-percent rates, validated, never clipped."""

    history_length = 8  # a short window (the best steps so far are shown too): fits small models' context
    hours_field, rates_field, vote_field = "hours", "rates", "vote"
    worker_system = (
        "You decide how many hours a week to work this year. Income is hours x skill; income tax follows the "
        "marginal rates shown; all tax revenue is returned to everyone as an equal rebate. You want the "
        "highest utility: more take-home pay is good, more hours of work are tiring. Explore at first, then "
        'settle on what worked best. Answer with JSON: {"hours": number from 0 to 100, "reason": "at most '
        '160 characters"}.')
    ballot_format = 'Answer JSON {"vote": worker id number, "reason": "at most 160 characters"}.'
    leader_format = ('Answer JSON {"rates": [one rate in percent per bracket], '
                     '"reason": "at most 160 characters"}.')

    def worker_messages(self, *, worker, skill, history, history_length, exploit, persona=None, schedule=None,
                        rebate=0.0, schedule_text=None, pay=None, best=None) -> list[dict]:
        """Shared text first (instructions, this year's brackets), then the worker's own facts and a bounded
        history."""
        best = best_memories(history) if best is None else best
        if schedule is not None:
            schedule_text = schedule_text or schedule.describe()
            pay = pay if pay is not None else tuple(row[0] for row in pay_table(schedule, [skill], rebate))
        facts = []
        if schedule_text is not None:
            facts.append(f"Tax brackets this year: {schedule_text}.")
        facts += [f"You: {persona}" if persona else f"You are worker {worker}.",
                  f"Your skill is {skill:.2f}: {40 * skill:,.0f} a year at 40 hours a week."]
        if pay is not None:
            rates, take_home = pay
            facts.append(f"At last year's rebate ({rebate:,.0f}): " + "; ".join(
                f"{hours} h: marginal rate {100 * rate:.0f}%, take-home {home:,.0f}"
                for hours, rate, home in zip(PAY_HOURS, rates, take_home, strict=True)) + ".")
        recent = history[-history_length:] if history_length else []
        if recent:
            facts.append("Your recent years:\n" + "\n".join(m.line for m in recent))
            previous = history[-2] if len(history) > 1 else None
            if previous is None or previous.rates == history[-1].rates:  # new rates would confound the hint
                hint = reflection(previous, history[-1])
                if hint:
                    facts.append(hint)
        if best:
            facts.append("Best so far: " + "; ".join(m.best_line for m in best) + ".")
        facts.append("Choose the hours that gave you the best utility so far." if exploit else
                     "You may try hours you have not tried yet.")
        return [{"role": "system", "content": self.worker_system},
                {"role": "user", "content": "\n".join(facts)}]

    def worker_schema(self, cap):
        return worker_answer(cap)

    def history_block(self, memory):
        return worker_block(memory, hours=f"{memory.hours:.1f}", utility=f"u = {memory.utility:.4f}")

    def planner_system(self, n_brackets, brackets, objective_name):
        return ("You are a tax planner. You set one marginal income-tax rate per bracket, in whole percent "
                f"from 0 to 100, to maximize the objective ({objective_name}); all revenue is returned as an "
                f"equal rebate. Brackets: {brackets}. "
                f'Answer with JSON: {{"rates": [{n_brackets} numbers], "reason": "at most 160 characters"}}.')

    def objective_text(self, year, first):
        # Near the optimum a one-point move changes the objective in its 6th or 7th significant digit, so the
        # planner sees 10 significant digits and the change since the first year to the same decimals.
        start = first["objective"]
        decimals = 10
        if np.isfinite(start) and start:
            decimals = int(np.clip(9 - np.floor(np.log10(abs(start))), 0, 15))
        return (f"{year['objective']:.{decimals}f} (change since year {first['year']}: "
                f"{year['objective'] - start:+.{decimals}f})")

    def rates_schema(self, n_brackets):
        return sized(PlannerAnswer, n_brackets)

    def new_rates(self, values, rates, flip):
        return values / 100, False  # validated whole percents in [0, 100]

    def neighbours_text(self, neighbours):
        """Each neighbour's last satisfaction and vote."""
        lines = []
        for other, satisfaction, vote in neighbours:
            satisfied = {1.0: "satisfied", 0.5: "not satisfied"}.get(satisfaction, "unknown")
            lines.append(f"worker_{other}: {satisfied}, last vote {'none' if vote < 0 else f'worker_{vote}'}")
        return "Your neighbours:\n" + "\n".join(lines) if lines else ""

    def candidacy_format(self, n_brackets):
        return f'Answer JSON {{"run": true or false, "rates": [{n_brackets} rates in percent] or []}}.'

    def candidacy_schema(self, n_brackets):
        return Candidacy

    def decode_platform(self, answer, rates, *, owner, llm):
        if answer is None or not answer.run:
            return None
        return super().decode_platform(answer, rates, owner=owner, llm=llm)

    def ballot_schema(self):
        return Ballot


@PROMPT_STYLES.register("paper")
class PaperStyle(PromptStyle):
    """The reference's prompts: full history blocks, LABOR on a 10-hour grid, DELTA changes of the rates from
    a 50 % start, clipped (and counted) as the reference clips them."""

    history_length = 50  # the reference's
    hours_field, rates_field, vote_field = "LABOR", "DELTA", "LEADER"
    ballot_format = 'Your output MUST be a JSON like {"LEADER": "id"}.'
    leader_format = 'Your output MUST be a JSON like {"DELTA": [changes in -20, -10, 0, 10, 20]}.'

    def worker_messages(self, *, worker, skill, history, history_length, exploit, persona=None, schedule=None,
                        rebate=0.0, schedule_text=None, pay=None, best=None) -> list[dict]:
        """The reference's labour prompt (no persona, no tax facts beyond the history)."""
        best = best_memories(history) if best is None else best
        recent = history[-history_length:] if history_length else []
        blocks = []
        before = history[-len(recent) - 1] if len(history) > len(recent) else None  # the step before them
        for i, memory in enumerate(recent):
            hint = reflection(recent[i - 1] if i else before, memory)
            blocks.append(self.history_block(memory) + (f"\n{hint}" if hint else ""))
        system = (f"You are worker_{worker}, a citizen of Princetonia. Your skill level is {skill:.2f} with "
                  f"an expected income of {40 * skill:.2f} at 40 hours of labor each week. Each year you "
                  "will have the option to choose the number of hours of labor to perform each week. You may "
                  "work overtime (more than 40 hours each week) or less than 40 hours each week. Your income "
                  "is proportional to your hours and skill. Your goal is to maximize your isoelastic "
                  "utility: u = z~ - c * l^d. Make sure to sufficiently explore different amounts of LABOR "
                  "before exploiting the best one for maximum utility. "
                  'Your output MUST be a JSON like {"LABOR": "X"}.')
        average_hours = round(np.mean([m.hours for m in recent]) / 10) * 10 if recent else 40
        average_utility = np.mean([m.utility for m in recent]) if recent else 0.0
        cue = ("Choose the best LABOR for maximum utility." if exploit else
               "Balance exploration and exploitation by choosing varying amounts of LABOR.")
        user = (f"The running average LABOR choice historically was LABOR={average_hours:.0f} hours "
                f"corresponding to average utility u={average_utility:.2f}. {cue} Next year, you may perform "
                "LABOR: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100] hours. "
                'Your output MUST be a JSON like {"LABOR": "X"}.')
        parts = []
        if blocks:
            parts.append("Historical data:\n" + "\n\n".join(blocks))
        if best:
            parts.append("Best 5 timesteps:\n" + "\n".join(
                f"Timestep {m.period}: LABOR={m.hours:.1f}, utility={m.utility:.4f}" for m in best))
        parts.append(user)
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]

    def worker_schema(self, cap):
        return PaperLabor

    def clip_hours(self, hours, cap):
        """The reference accepts any hours >= 0 and clamps them to the cap."""
        above = int(np.sum(hours > cap))
        np.minimum(hours, cap, out=hours)
        return above

    def history_block(self, memory):
        return worker_block(memory, hours=f"{memory.hours:.0f}",
                            utility=f"u = z~ - c * l^d = {memory.utility:.2f}")

    def initial_rates(self, n_brackets):
        return np.full(n_brackets, 0.5)  # the reference's start

    def planner_system(self, n_brackets, brackets, objective_name):
        return ("You are an expert tax planner who sets marginal tax rates to maximize social welfare (SWF). "
                "Taxes are redistributed evenly to all workers. "
                f"There are {n_brackets} tax brackets: {brackets}. Each tax rate can be changed by "
                "DELTA=[-20, -10, 0, 10, 20] percent; rates stay between 0 and 100. "
                f'Your output MUST be a JSON like {{"DELTA": [{", ".join(["X"] * n_brackets)}]}}.')

    def objective_text(self, year, first):
        return f"{year['objective']:.6g}"

    def rates_schema(self, n_brackets):
        return sized(PaperDelta, n_brackets)

    def new_rates(self, values, rates, flip):
        return paper_delta(rates, values, flip=flip)

    def candidacy_format(self, n_brackets):
        return ('If you run, give your platform as rate changes, JSON {"DELTA": [changes]}; '
                'otherwise {"DELTA": null}.')

    def candidacy_schema(self, n_brackets):
        return PaperCandidacy

    def ballot_schema(self):
        return PaperBallot
