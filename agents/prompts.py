"""What the prompt styles share: the answer schemas, a worker's remembered steps and the text they make.

The styles themselves (``paper``, ``improved`` and any a user registers) are in :mod:`agents.prompt_styles`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

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
"""A paper-style DELTA entry: read leniently, any finite value (the style clips and rounds it)."""
PaperHours = Annotated[float, Field(ge=0, allow_inf_nan=False),
                       BeforeValidator(functools.partial(_paper_number, unit=_HOURS_UNIT))]
"""Paper-style LABOR: "40 hours" accepted; NaN, inf and negative hours invalid; above the cap, clipped."""


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


class Candidacy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: bool
    rates: list[Percent] = Field(
        description="proposed marginal rate per bracket, percent; empty if not running")


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


@functools.cache
def sized(schema: type[BaseModel], brackets: int) -> type[BaseModel]:
    """``schema`` (PlannerAnswer or PaperDelta) with exactly one list entry per bracket, so constrained decoding
    cannot run on past the last bracket."""
    field, item = ("rates", Percent) if schema is PlannerAnswer else ("DELTA", PaperNumber)
    sized_list = Annotated[list[item], Field(min_length=brackets, max_length=brackets,
                                             description=schema.model_fields[field].description)]
    return create_model(f"{schema.__name__}{brackets}", __base__=schema, **{field: (sized_list, ...)})


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
        """This step as one line of an improved-style history (rendered once, shown in many prompts)."""
        return history_line(self)

    @functools.cached_property
    def best_line(self) -> str:
        """This step as an entry of an improved-style "best so far" list."""
        return f"year {self.period}: {self.hours:.1f} h, utility {self.utility:.4f}"


def percent(rates) -> str:
    return "[" + ", ".join(f"{100 * r:.0f}" for r in rates) + "]"


def worker_block(memory: WorkerMemory, *, hours: str, utility: str) -> str:
    """The per-step history block (spec section 2.3), with the hours and utility as a style writes them."""
    lines = [f"Timestep {memory.period}:", f"TAX: = {percent(memory.rates)}", f"skill: s = {memory.skill:.2f}",
             f"LABOR: = {hours}", f"pre-tax income: z = s * l = {memory.income:.2f}",
             f"tax_i = {memory.tax:.2f}", f"rebate = {memory.rebate:.2f}",
             f"post-tax income: z~ = z - tax_i + rebate = {memory.post_tax:.2f}", f"utility: {utility}"]
    return "\n".join(lines)


def reflection(previous: WorkerMemory | None, current: WorkerMemory) -> str:
    """The finite-difference hint on the last labour change ("" when the hours did not change)."""
    if previous is None or previous.hours == current.hours:
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


def history_line(memory: WorkerMemory) -> str:
    """One step of an improved-style history, which the worker reads as a year of work (its income is a year's,
    as its prompt says): compact, so the prompt stays short."""
    rate = "" if np.isnan(memory.marginal_rate) else f", marginal rate {100 * memory.marginal_rate:.0f}%"
    return f"year {memory.period}: {memory.hours:.1f} h{rate}, take-home {memory.post_tax:,.0f}, utility {memory.utility:.4f}"
