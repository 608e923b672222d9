"""Population sources: where a model's workers come from.

A source is a :class:`PopulationSource` subclass registered in :data:`POPULATION_SOURCES`. Its
``sample(n, rng)`` returns a ``pandas.DataFrame`` with one row per worker and at least a ``skill`` column:
annual income per weekly hour, so a worker's income is skill x weekly hours (for ``census``, skill = hourly
wage x 52). Other columns (hourly_wage, age, sex, occupation, ...) are carried onto the agents as attributes.
All randomness comes from the ``rng`` passed in, which the model hands over from its own ``rng``.
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pandas as pd

from calibration.gb2 import sample_gb2_skills
from registry import Registry


class PopulationSource:
    """Where workers come from: subclass it, define :meth:`sample` and register it in POPULATION_SOURCES."""

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        raise NotImplementedError


POPULATION_SOURCES: Registry[type[PopulationSource]] = Registry("population source", base=PopulationSource)
DEFAULT_SOURCE = "census"


@POPULATION_SOURCES.register("paper_gb2")
class PaperGB2(PopulationSource):
    """The reference implementation's prior: i.i.d. GB2 skills, no demographics."""

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        return pd.DataFrame({"skill": sample_gb2_skills(n, rng)})


@POPULATION_SOURCES.register("census")
class Census(PopulationSource):
    """Employed wage earners from BLS and CPS tables: hourly wage, occupation, sex, age, household."""

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        from calibration.census import census as sample  # deferred: builds tables from data files

        return sample(n, rng)


# the draws kept inside draws_reused(): (source, n, rng state before) -> (workers, rng state after)
_REUSED: ContextVar[dict | None] = ContextVar("reused_population_draws", default=None)


@contextmanager
def draws_reused():
    """Inside it, a draw of as many workers from the same source with an rng in the same state is sampled once:
    a later one gets a copy of the first's workers and leaves its rng where the first draw left it, so a model
    built again with the same seed gets the same workers, and the same randomness after them, without sampling
    them again."""
    token = _REUSED.set({} if _REUSED.get() is None else _REUSED.get())
    try:
        yield
    finally:
        _REUSED.reset(token)


def sample_population(source: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Draw ``n`` workers from the named source (inside :func:`draws_reused`, a repeated draw is reused)."""
    if source not in POPULATION_SOURCES:
        raise ValueError(f"population: unknown source {source!r}; allowed: {', '.join(sorted(POPULATION_SOURCES))}")
    reused = _REUSED.get()
    # the state's bytes, as its arrays (MT19937's key) neither hash nor compare as one value
    key = (POPULATION_SOURCES[source], n, pickle.dumps(rng.bit_generator.state)) if reused is not None else None
    if key in (reused or {}):
        frame, after = reused[key]
        rng.bit_generator.state = after
        return frame.copy()
    frame = POPULATION_SOURCES[source]().sample(n, rng)
    if "skill" not in frame.columns or len(frame) != n:
        raise ValueError(f"population: source {source!r} must return {n} rows with a 'skill' column")
    if reused is not None:
        reused[key] = (frame.copy(), rng.bit_generator.state)
    return frame
