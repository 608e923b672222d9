"""The ``census`` population source: employed wage earners with hourly wages from BLS and CPS tables.

Each worker gets, in order (see ``calibration.census_model`` for the tables): a detailed
occupation (OEWS employment shares), a sex given the occupation, an age band given the
occupation group and sex, an hourly wage given the occupation and sex, and an age and
household from an earner-table record in that age band.

Skill keeps the model's unit, annual income per weekly hour: ``skill = hourly_wage x 52``,
what one weekly hour at that rate earns over a full year, so ``skill x 40`` is the income of
a full-time, full-year worker (``annual_wage``, OEWS's hourly x 2,080). Hours are the model's
choice; part-time and part-year work lower income through hours, not through the wage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from calibration import tables, wage_model
from calibration.census_model import categorical_rows, census_model
from calibration.personas import ATTITUDES, draw_attitude_codes, personas

WEEKS_PER_YEAR = 52.0


def _category(codes, categories) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=list(categories))


def sample_census(
    n: int, rng: np.random.Generator, data_dir: Path | str = tables.DATA_DIR, with_personas: bool = True
) -> pd.DataFrame:
    """Draw ``n`` workers; all randomness comes from ``rng``.

    Text columns are pandas categoricals, except ``persona`` (str). ``with_personas=False``
    skips the text, which is most of the cost of a large draw.
    """
    model = census_model(str(data_dir))
    detail = np.searchsorted(model.cum_share, rng.random(n) * model.cum_share[-1], side="right")
    detail = np.minimum(detail, len(model.codes) - 1)
    group = model.group[detail]
    female = (rng.random(n) < model.female[detail]).astype(np.intp)
    n_age = model.age_given.shape[2]
    age_band = categorical_rows(model.age_given.reshape(-1, n_age), group * 2 + female, rng.random(n))

    score = model.score_mean[detail, female] + model.score_sd[detail] * rng.standard_normal(n)
    hourly = np.round(np.exp(wage_model.log_wage(score, detail, model.log_knots, model.slope)), 2)
    hourly = np.maximum(hourly, 0.01)  # to the cent, and never 0: the model needs positive skills

    # an earner-table record within the age band, by weight
    start, end = model.band_start[age_band], model.band_start[age_band + 1]
    before = np.where(start > 0, model.band_cum[np.maximum(start - 1, 0)], 0.0)
    target = before + rng.random(n) * (model.band_cum[end - 1] - before)
    pick = np.clip(np.searchsorted(model.band_cum, target, side="right"), start, end - 1)
    earners = model.earners

    def earner_column(name):
        codes, categories = model.earner_codes[name]
        return _category(codes[pick], categories)

    frame = pd.DataFrame(
        {
            "skill": hourly * WEEKS_PER_YEAR,
            "hourly_wage": hourly,
            "annual_wage": hourly * tables.HOURS_PER_YEAR,
            "age": earners["age"].to_numpy(dtype=int)[pick],
            "age_band": _category(age_band, tables.AGE_BANDS),
            "sex": _category(female, ("male", "female")),
            "occupation": _category(detail, model.titles),
            "occupation_code": _category(detail, model.codes),
            "occupation_group": _category(group, model.group_titles),
            "occupation_group_code": _category(group, model.group_codes),
            "state": earner_column("state"),
            "state_name": earner_column("state_name"),
            "marital_status": earner_column("marital_status"),
            "filing_status": earner_column("filing_status"),
            "children": earners["children"].to_numpy(dtype=int)[pick],
            "financial_attitude": _category(draw_attitude_codes(n, rng), ATTITUDES),
        }
    )
    if with_personas:
        frame["persona"] = personas(frame)
    return frame


def census(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Population source ``census`` (default data directory, with personas)."""
    return sample_census(n, rng)
