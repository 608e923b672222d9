"""The ``census`` population source: workers drawn jointly from CPS and BLS data.

Each worker is one draw (by weight) from the earner table, which supplies annual wage,
age, state, marital and filing status and children. Occupation group and detailed
occupation are then drawn from P(group | wage band, age band) and P(detailed | group,
wage band), and sex from P(female | age band, group) (see ``calibration.imputation``).

Skill follows the reference convention, skill = annual wage / 40: the observed annual
wage is read as the income of a 40-hour week worked all year (2,080 hours), so skill x 40
hours reproduces it. Part-time and part-year earners therefore get a low skill (their
annual wage spread over 2,080 hours), not their hourly rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from calibration import tables
from calibration.imputation import categorical_rows, imputation_model
from calibration.personas import ATTITUDES, draw_attitude_codes, personas

HOURS_AT_REFERENCE = 40.0


def sample_census(
    n: int, rng: np.random.Generator, data_dir: Path | str = tables.DATA_DIR, with_personas: bool = True
) -> pd.DataFrame:
    """Draw ``n`` workers; all randomness comes from ``rng``.

    Text columns are pandas categoricals, except ``persona`` (str). ``with_personas=False``
    skips the text, which is most of the cost of a large draw.
    """
    model = imputation_model(str(data_dir))
    earners = model.earners
    pick = np.searchsorted(model.cum_weight, rng.random(n) * model.cum_weight[-1], side="right")
    pick = np.minimum(pick, len(earners) - 1)
    wage_band = earners["wage_band"].to_numpy()[pick]
    age_band = earners["age_band"].to_numpy()[pick]

    n_age, n_group = model.group_given_cell.shape[1:]
    group = categorical_rows(
        model.group_given_cell.reshape(-1, n_group), wage_band * n_age + age_band, rng.random(n)
    )
    n_bands, width = model.detail_given_cell.shape[1:]
    slot = categorical_rows(
        model.detail_given_cell.reshape(-1, width), group * n_bands + wage_band, rng.random(n)
    )
    detail = model.detail_index[group, slot]
    female = rng.random(n) < model.female_given_cell[age_band, group]

    def category(codes, categories):
        return pd.Categorical.from_codes(codes, categories=list(categories))

    def earner_column(name):
        codes, categories = model.earner_codes[name]
        return category(codes[pick], categories)

    wage = earners["wage"].to_numpy(dtype=float)[pick]
    attitudes = list(ATTITUDES)
    frame = pd.DataFrame(
        {
            "skill": wage / HOURS_AT_REFERENCE,
            "annual_wage": wage,
            "age": earners["age"].to_numpy(dtype=int)[pick],
            "age_band": category(age_band, tables.AGE_BANDS),
            "sex": category(female.astype(np.int8), ("male", "female")),
            "occupation": category(detail, model.detail_titles),
            "occupation_code": category(detail, model.detail_codes),
            "occupation_group": category(group, model.group_titles),
            "occupation_group_code": category(group, model.group_codes),
            "state": earner_column("state"),
            "state_name": earner_column("state_name"),
            "marital_status": earner_column("marital_status"),
            "filing_status": earner_column("filing_status"),
            "children": earners["children"].to_numpy(dtype=int)[pick],
            "financial_attitude": category(draw_attitude_codes(n, rng), attitudes),
        }
    )
    if with_personas:
        frame["persona"] = personas(frame)
    return frame


def census(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Population source ``census`` (default data directory, with personas)."""
    return sample_census(n, rng)
