"""Piecewise-linear marginal income tax schedules and the named bracket sets."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from registry import Registry
from validation import ParameterError

TAX_TABLE = Path(__file__).parent / "data" / "us_federal_income_tax_brackets_taxcalc_6_8_0.csv"


@dataclass(frozen=True, eq=False)
class TaxSchedule:
    """Marginal rates on brackets of taxable income (income minus a standard deduction).

    ``edges`` are the brackets' lower edges, starting at 0 and strictly increasing; the
    last bracket is open above. ``rates`` are marginal rates in [0, 1], one per bracket.
    """

    edges: np.ndarray
    rates: np.ndarray
    deduction: float = 0.0
    _cumulative: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        edges = np.asarray(self.edges, dtype=float).ravel()
        rates = np.asarray(self.rates, dtype=float).ravel()
        if edges.size == 0 or edges[0] != 0.0:
            raise ValueError(f"edges: must start at 0, got {edges.tolist()}")
        if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise ValueError(f"edges: must be finite and strictly increasing, got {edges.tolist()}")
        if rates.shape != edges.shape:
            raise ParameterError("rates", f"{rates.size} rates for {edges.size} brackets", "one rate per bracket")
        if not np.all(np.isfinite(rates)) or np.any((rates < 0) | (rates > 1)):
            raise ParameterError("rates", f"{rates.tolist()} has a rate out of range", "each rate in [0, 1]")
        if not np.isfinite(self.deduction) or self.deduction < 0:
            raise ValueError(f"deduction: must be a finite number >= 0, got {self.deduction}")
        edges.flags.writeable = False
        rates.flags.writeable = False
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "deduction", float(self.deduction))
        cumulative = np.concatenate([[0.0], np.cumsum(rates[:-1] * np.diff(edges))])
        object.__setattr__(self, "_cumulative", cumulative)

    @property
    def n_brackets(self) -> int:
        return self.edges.size

    def with_rates(self, rates) -> TaxSchedule:
        """The same brackets and deduction with new marginal rates."""
        return TaxSchedule(self.edges, rates, self.deduction)

    def taxable(self, income):
        return np.maximum(np.asarray(income, dtype=float) - self.deduction, 0.0)

    def _bracket(self, taxable):
        return np.searchsorted(self.edges, taxable, side="right") - 1

    def tax(self, income):
        """Tax owed on pre-tax ``income`` (scalar or array)."""
        taxable = self.taxable(income)
        j = self._bracket(taxable)
        return self._cumulative[j] + self.rates[j] * (taxable - self.edges[j])

    def marginal_rate(self, income):
        """Marginal rate at ``income`` (the rate of the bracket just above it; 0 below the deduction)."""
        income = np.asarray(income, dtype=float)
        rate = self.rates[self._bracket(self.taxable(income))]
        return np.where(income < self.deduction, 0.0, rate)

    def segments(self):
        """``(lower, upper, rate)`` arrays of pre-tax income on which the marginal rate is constant."""
        lower = np.concatenate([[0.0], self.deduction + self.edges]) if self.deduction > 0 else self.edges.copy()
        rate = np.concatenate([[0.0], self.rates]) if self.deduction > 0 else self.rates.copy()
        upper = np.concatenate([lower[1:], [np.inf]])
        return lower, upper, rate

    def describe(self) -> str:
        parts = []
        for j, (lo, r) in enumerate(zip(self.edges, self.rates, strict=True)):
            hi = f"{self.edges[j + 1]:,.0f}" if j + 1 < self.n_brackets else "inf"
            parts.append(f"[{lo:,.0f}, {hi}): {100 * r:.1f}%")
        suffix = f" after a {self.deduction:,.0f} deduction" if self.deduction else ""
        return "; ".join(parts) + suffix


@dataclass(frozen=True)
class BracketSet:
    """A named set of brackets with its statutory (or reference default) rates and deduction."""

    name: str
    edges: tuple[float, ...]
    default_rates: tuple[float, ...]
    standard_deduction: float = 0.0
    statutory: bool = False

    def __post_init__(self):
        self.schedule()  # edges from 0, increasing, one default rate in [0, 1] per bracket: checked when made

    def schedule(self, rates=None, *, deduction: bool = True) -> TaxSchedule:
        rates = self.default_rates if rates is None else rates
        return TaxSchedule(np.array(self.edges), np.asarray(rates, float), self.standard_deduction if deduction else 0.0)


@cache
def _us_bracket_set(year: int, status: str = "single") -> BracketSet:
    if not TAX_TABLE.exists():
        raise FileNotFoundError(f"tax data file missing: {TAX_TABLE}")
    with TAX_TABLE.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["tax_year"] == str(year) and r["filing_status_taxcalc_MARS"] == status]
    try:
        rows.sort(key=lambda r: int(r["bracket"]))
        edges = tuple(float(r["taxable_income_lower_usd"]) for r in rows)
        rates = tuple(float(r["marginal_rate"]) for r in rows)
        deductions = {float(r["standard_deduction_usd"]) for r in rows}
    except (KeyError, ValueError) as error:
        raise ValueError(f"tax data file {TAX_TABLE.name} is malformed: {error}") from error
    if len(rows) != 7 or len(deductions) != 1:
        raise ValueError(f"tax data file {TAX_TABLE.name}: expected 7 brackets for {year} {status}, found {len(rows)}")
    return BracketSet(f"us_{year}_{status}", edges, rates, deductions.pop(), statutory=True)


PAPER_INITIAL_RATE = 0.5

BRACKET_SETS: Registry[BracketSet] = Registry("bracket set", base=BracketSet, instances=True)
"""Bracket sets by name; ``brackets=name`` picks one (``three`` is the paper's)."""
BRACKET_SETS.register("three", BracketSet("three", (0.0, 90_000.0, 159_100.0), (PAPER_INITIAL_RATE,) * 3))
BRACKET_SETS.register("flat", BracketSet("flat", (0.0,), (PAPER_INITIAL_RATE,)))
BRACKET_SETS.register("us_2024_single", _us_bracket_set(2024))
BRACKET_SETS.register("us_2025_single", _us_bracket_set(2025))


def bracket_set(name: str) -> BracketSet:
    """Look up a registered bracket set: ``three`` (paper), ``flat``, ``us_2024_single``, ``us_2025_single``, ..."""
    if name not in BRACKET_SETS:
        raise ValueError(f"brackets: unknown bracket set {name!r}; allowed: {', '.join(BRACKET_SETS)}")
    return BRACKET_SETS[name]
