"""Population sources: where a model's workers come from.

A source is a function ``(n, rng) -> pandas.DataFrame`` with one row per worker and at
least a ``skill`` column: annual income per weekly hour, so a worker's income is skill x
weekly hours (for ``census``, skill = hourly wage x 52). Other columns (hourly_wage, age,
sex, occupation, ...) are carried onto the agents as attributes. All randomness
comes from the ``rng`` passed in, which the model hands over from its own ``rng``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from calibration.gb2 import sample_gb2_skills

PopulationSource = Callable[[int, np.random.Generator], pd.DataFrame]


def paper_gb2(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """The reference implementation's prior: i.i.d. GB2 skills, no demographics."""
    return pd.DataFrame({"skill": sample_gb2_skills(n, rng)})


def census(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Employed wage earners from BLS and CPS tables: hourly wage, occupation, sex, age, household."""
    from calibration.census import census as sample  # deferred: builds tables from data files

    return sample(n, rng)


SOURCES: dict[str, PopulationSource] = {"paper_gb2": paper_gb2, "census": census}
DEFAULT_SOURCE = "census"


def register_source(name: str, source: PopulationSource) -> None:
    """Make ``source`` available to models as ``population=name``."""
    SOURCES[name] = source


def sample_population(source: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Draw ``n`` workers from the named source."""
    if source not in SOURCES:
        raise ValueError(f"population: unknown source {source!r}; allowed: {', '.join(sorted(SOURCES))}")
    frame = SOURCES[source](n, rng)
    if "skill" not in frame.columns or len(frame) != n:
        raise ValueError(f"population: source {source!r} must return {n} rows with a 'skill' column")
    return frame
