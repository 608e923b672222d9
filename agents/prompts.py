"""Prompt text for LLM workers and planners, and the answer schemas.

Two modes: ``paper`` follows the reference implementation's prompts (spec sections 1.4,
2.3, 4.2); ``improved`` (default) puts the persona and the worker's own tax facts in the
labour prompt, shows true best-so-far memories instead of a running average labelled
"best", reflects only across steps under the same rates, and keeps shared text first so
that servers can reuse cached prefixes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

PROMPT_MODES = ("improved", "paper")
REASON_LENGTH = 160


_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")  # a JSON number's digits: ASCII, no sign, no padding
_PAPER_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_PAPER_STRIP = str.maketrans("", "", "$,%")
_HOURS_UNIT = re.compile(r"\s*(?:hours?|hrs?|h)\.?$", re.IGNORECASE)


def plain_decimal(value):
    """A JSON number as it is (-0 as 0), or a string that is a plain decimal ("40", "37.5") read as one.

    Booleans and other strings ("4e1", "0x40", "40 hours", " 40", "+40", "040", digits of other scripts) are
    invalid: answers are never bent into numbers.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ValueError(f"{value[:40]!r} is not a plain decimal number")
        return int(value) if value.isdigit() else float(value)
    if isinstance(value, float) and value == 0:
        return 0.0  # -0.0 is stored and shown as 0
    return value


def _paper_number(value, unit: re.Pattern | None = None):
    """The reference's reading: "$", "," and "%" (and ``unit``) stripped from a string, then a float."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        text = value.translate(_PAPER_STRIP).strip()
        text = unit.sub("", text) if unit is not None else text
        if not _PAPER_NUMBER.fullmatch(text):
            raise ValueError(f"{value[:40]!r} is not a number")
        return float(text) + 0.0  # -0 is 0
    return value + 0.0 if isinstance(value, float) else value


# Bounds go before the validator so that they reach the JSON schema as minimum/maximum.
Percent = Annotated[int, Field(ge=0, le=100), BeforeValidator(plain_decimal)]
"""A whole percent in [0, 100], as the improved prompts ask for rates."""
PaperNumber = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_paper_number)]
"""A paper-mode DELTA entry: read leniently, any finite value (the caller clips and rounds as the paper does)."""
PaperHours = Annotated[float, Field(ge=0, allow_inf_nan=False),
                       BeforeValidator(functools.partial(_paper_number, unit=_HOURS_UNIT))]
"""Paper-mode LABOR: "40 hours" accepted; NaN, inf and negative hours invalid; above the cap it is clipped."""


def hours_type(cap: float):
    """Weekly hours in [0, ``cap``]: a JSON number or a plain decimal string."""
    return Annotated[float, Field(ge=0, le=cap, allow_inf_nan=False), BeforeValidator(plain_decimal)]


Hours = hours_type(100)


class PaperLabor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    LABOR: PaperHours


class WorkerAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: Hours = Field(description="weekly hours of labour")
    reason: str = Field(max_length=REASON_LENGTH, description="why, in one short sentence")


@functools.cache
def worker_answer(cap: float) -> type[BaseModel]:
    """:class:`WorkerAnswer` with hours bounded by ``cap`` (the schema sent to the server carries it)."""
    if cap == 100:
        return WorkerAnswer
    name = f"WorkerAnswerCap{cap:g}".replace(".", "_").replace("+", "")
    return create_model(name, __base__=WorkerAnswer,
                        hours=(hours_type(cap), Field(description="weekly hours of labour")))


class Satisfaction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thought: str = Field(max_length=600)
    ANSWER: Literal["YES", "NO"]


class PaperDelta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    DELTA: list[PaperNumber]


class PlannerAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rates: list[Percent] = Field(description="marginal rate per bracket, in whole percent")
    reason: str = Field(max_length=REASON_LENGTH)


@functools.cache
def sized(schema: type[BaseModel], brackets: int) -> type[BaseModel]:
    """``schema`` (PlannerAnswer or PaperDelta) with exactly one list entry per bracket, so constrained decoding
    cannot run on past the last bracket."""
    field, item = ("rates", Percent) if schema is PlannerAnswer else ("DELTA", PaperNumber)
    sized_list = Annotated[list[item], Field(min_length=brackets, max_length=brackets,
                                             description=schema.model_fields[field].description)]
    return create_model(f"{schema.__name__}{brackets}", __base__=schema, **{field: (sized_list, ...)})


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


def count_clipped(owner, llm, n: int = 1) -> None:
    """Count ``n`` answers that had to be clipped, on ``owner`` and in ``llm``'s accounting when it keeps one."""
    if n:
        owner.clipped += n
        accounting = getattr(llm, "accounting", None)
        if accounting is not None:
            accounting.add(clipped=n)


@dataclass
class WorkerMemory:
    """One step of a worker's (or archetype's) own history; replaced, never changed, once observed."""

    period: int
    rates: tuple[float, ...]
    skill: float
    hours: float
    income: float
    tax: float
    rebate: float
    post_tax: float
    utility: float
    marginal_rate: float = float("nan")

    @functools.cached_property
    def line(self) -> str:
        """This step as one line of an improved-mode history (rendered once, shown in many prompts)."""
        return history_line(self)

    @functools.cached_property
    def best_line(self) -> str:
        """This step as an entry of an improved-mode "best so far" list."""
        return f"step {self.period}: {self.hours:.1f} h, utility {self.utility:.4f}"


def percent(rates) -> str:
    return "[" + ", ".join(f"{100 * r:.0f}" for r in rates) + "]"


def worker_block(memory: WorkerMemory, paper: bool) -> str:
    """The per-step history block (spec section 2.3)."""
    lines = [f"Timestep {memory.period}:", f"TAX: = {percent(memory.rates)}", f"skill: s = {memory.skill:.2f}",
             f"LABOR: = {memory.hours:.0f}" if paper else f"LABOR: = {memory.hours:.1f}",
             f"pre-tax income: z = s * l = {memory.income:.2f}", f"tax_i = {memory.tax:.2f}",
             f"rebate = {memory.rebate:.2f}",
             f"post-tax income: z~ = z - tax_i + rebate = {memory.post_tax:.2f}",
             f"utility: u = z~ - c * l^d = {memory.utility:.2f}" if paper else f"utility: u = {memory.utility:.4f}"]
    return "\n".join(lines)


def reflection(previous: WorkerMemory | None, current: WorkerMemory, paper: bool) -> str:
    """The finite-difference hint on the last labour change (improved mode: only under unchanged rates)."""
    if previous is None or previous.hours == current.hours:
        return ""
    if not paper and previous.rates != current.rates:
        return ""
    more = current.hours > previous.hours
    better = current.utility > previous.utility
    verb = "Increasing" if more else "Decreasing"
    effect = "increased" if better else "decreased"
    if more == better:
        advice = f"This implies labor l is too low and needs to be increased above l={current.hours:.0f}."
    else:
        advice = f"This implies labor l is too high and needs to be decreased below l={current.hours:.0f}."
    return f"{verb} labor {effect} utility. {advice}"


def best_memories(history: list[WorkerMemory], count: int = 5) -> list[WorkerMemory]:
    """Top ``count`` steps by utility, de-duplicated on (utility, hours)."""
    seen, best = set(), []
    for memory in sorted(history, key=lambda m: m.utility, reverse=True):
        if (memory.utility, memory.hours) not in seen:
            seen.add((memory.utility, memory.hours))
            best.append(memory)
        if len(best) == count:
            break
    return best


PAY_HOURS = (20, 40, 60)


def pay_table(schedule, skills, rebate: float) -> tuple[np.ndarray, np.ndarray]:
    """Marginal rate and take-home pay of each worker (rows) at each of ``PAY_HOURS`` (columns)."""
    incomes = np.asarray(skills, dtype=float)[:, None] * np.asarray(PAY_HOURS, dtype=float)
    return schedule.marginal_rate(incomes), incomes - schedule.tax(incomes) + rebate


def worker_messages(*, worker: int, skill: float, history: list[WorkerMemory], history_length: int,
                    exploit: bool, mode: str, persona: str | None = None, schedule=None,
                    rebate: float = 0.0, schedule_text: str | None = None, pay=None,
                    best: list[WorkerMemory] | None = None) -> list[dict]:
    """Chat messages for one worker's labour decision.

    ``schedule_text``, ``pay`` (this worker's row of :func:`pay_table`) and ``best`` (its
    :func:`best_memories`) may be passed in when prompts for many workers are built at once; by default
    they are computed from ``schedule`` and ``history``.
    """
    best = best_memories(history) if best is None else best
    if mode == "paper":
        return _paper_worker_messages(worker, skill, history, history_length, exploit, best)
    if schedule is not None:
        schedule_text = schedule_text or schedule.describe()
        pay = pay if pay is not None else tuple(row[0] for row in pay_table(schedule, [skill], rebate))
    return _improved_worker_messages(worker, skill, history, history_length, exploit, persona, schedule_text,
                                     pay, rebate, best)


def _paper_worker_messages(worker, skill, history, history_length, exploit, best) -> list[dict]:
    recent = history[-history_length:] if history_length else []
    blocks = []
    for i, memory in enumerate(recent):
        previous = recent[i - 1] if i else (history[-len(recent) - 1] if len(history) > len(recent) else None)
        hint = reflection(previous, memory, True)
        blocks.append(worker_block(memory, True) + (f"\n{hint}" if hint else ""))
    system = (f"You are worker_{worker}, a citizen of Princetonia. Your skill level is {skill:.2f} with an expected "
              f"income of {40 * skill:.2f} at 40 hours of labor each week. Each year you will have the option to "
              "choose the number of hours of labor to perform each week. You may work overtime (more than 40 "
              "hours each week) or less than 40 hours each week. Your income is proportional to your hours and "
              "skill. Your goal is to maximize your isoelastic utility: u = z~ - c * l^d. Make sure to "
              "sufficiently explore different amounts of LABOR before exploiting the best one for maximum "
              'utility. Your output MUST be a JSON like {"LABOR": "X"}.')
    average_hours = round(np.mean([m.hours for m in recent]) / 10) * 10 if recent else 40
    average_utility = np.mean([m.utility for m in recent]) if recent else 0.0
    cue = ("Choose the best LABOR for maximum utility." if exploit else
           "Balance exploration and exploitation by choosing varying amounts of LABOR.")
    user = (f"The running average LABOR choice historically was LABOR={average_hours:.0f} hours corresponding to "
            f"average utility u={average_utility:.2f}. {cue} Next year, you may perform LABOR: "
            "[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100] hours. "
            'Your output MUST be a JSON like {"LABOR": "X"}.')
    parts = []
    if blocks:
        parts.append("Historical data:\n" + "\n\n".join(blocks))
    if best:
        parts.append("Best 5 timesteps:\n" + "\n".join(
            f"Timestep {m.period}: LABOR={m.hours:.1f}, utility={m.utility:.4f}" for m in best))
    parts.append(user)
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


IMPROVED_WORKER_SYSTEM = (
    "You decide how many hours a week to work this year. Income is hours x skill; income tax follows the marginal "
    "rates shown; all tax revenue is returned to everyone as an equal rebate. You want the highest utility: more "
    "take-home pay is good, more hours of work are tiring. Explore at first, then settle on what worked best. "
    'Answer with JSON: {"hours": number from 0 to 100, "reason": "at most 160 characters"}.')


def history_line(memory: WorkerMemory) -> str:
    """One step of an improved-mode history: compact, so the prompt stays short."""
    rate = "" if np.isnan(memory.marginal_rate) else f", marginal rate {100 * memory.marginal_rate:.0f}%"
    return f"step {memory.period}: {memory.hours:.1f} h{rate}, take-home {memory.post_tax:,.0f}, utility {memory.utility:.4f}"


def _improved_worker_messages(worker, skill, history, history_length, exploit, persona, schedule_text, pay,
                              rebate, best):
    """Shared text first (instructions, this year's brackets), then the worker's own facts and a bounded history."""
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
        hint = reflection(previous, history[-1], False)
        if hint:
            facts.append(hint)
    if best:
        facts.append("Best so far: " + "; ".join(m.best_line for m in best) + ".")
    facts.append("Choose the hours that gave you the best utility so far." if exploit else
                 "You may try hours you have not tried yet.")
    return [{"role": "system", "content": IMPROVED_WORKER_SYSTEM}, {"role": "user", "content": "\n".join(facts)}]
