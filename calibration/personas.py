"""Template persona text for sampled workers (second person, three sentences).

The text is a deterministic function of a worker's attributes: occupation, age, sex, state,
household (marital status and children), hourly wage and financial attitude. The attitude
is the only attribute drawn here; it follows ``ATTITUDES``, a stated modelling assumption
(no survey source), independent of the other attributes:

===========================  ======  ==================================================
attitude                     share   sentence
===========================  ======  ==================================================
cautious saver               0.30    saves steadily, avoids debt, wary of losing income
pragmatic budgeter           0.30    plans around take-home pay
comfortable spender          0.15    spends on the present, dislikes paying more tax
ambitious earner             0.15    wants to keep most of any extra pay
community-minded taxpayer    0.10    accepts taxes that fund services
===========================  ======  ==================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ATTITUDES: dict[str, tuple[float, str]] = {
    "cautious saver": (
        0.30,
        "You save steadily, avoid debt and worry about anything that eats into your income.",
    ),
    "pragmatic budgeter": (
        0.30,
        "You budget carefully and judge policies by what they leave in your take-home pay.",
    ),
    "comfortable spender": (
        0.15,
        "You enjoy spending on the present and resent taxes that squeeze your budget.",
    ),
    "ambitious earner": (
        0.15,
        "You work to get ahead and want to keep most of every extra dollar you earn.",
    ),
    "community-minded taxpayer": (
        0.10,
        "You accept paying taxes when they fund schools, roads and services you rely on.",
    ),
}

_NUMBERS = ("no", "one", "two", "three", "four", "five", "six")
_TEXT = pd.StringDtype("pyarrow", na_value=np.nan)


def draw_attitude_codes(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws from ``ATTITUDES``, as indices into its keys."""
    probs = np.array([p for p, _ in ATTITUDES.values()])
    return rng.choice(len(probs), size=n, p=probs / probs.sum())


def draw_attitudes(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` financial attitude labels drawn from ``ATTITUDES``."""
    return np.array(list(ATTITUDES))[draw_attitude_codes(n, rng)]


def occupation_phrase(title: str) -> str:
    """OEWS plural title as a phrase: 'Registered Nurses' -> 'registered nurses'."""
    return " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in str(title).split())


def household_phrase(marital_status: str, children: int) -> str:
    """'married with two children under 18', 'single with no children under 18', ..."""
    children = int(children)
    count = _NUMBERS[children] if children < len(_NUMBERS) else str(children)
    noun = "child" if children == 1 else "children"
    return f"{marital_status} with {count} {noun} under 18"


def _age_opening(age: int) -> str:
    article = "an" if age in (8, 11, 18) or 80 <= age <= 89 else "a"
    return f"You are {article} {age}-year-old "


def _rounded_wage(hourly: np.ndarray) -> np.ndarray:
    """Hourly wages as said aloud: to the nearest 25 cents below $100, else the nearest dollar."""
    return np.where(hourly < 100, np.round(hourly * 4) / 4, np.round(hourly))


def _wage_phrase(hourly: float) -> str:
    return f"${hourly:,.2f} an hour. " if hourly < 100 else f"${hourly:,.0f} an hour. "


def _pieces(column: pd.Series, phrase) -> pa.Array:
    """``phrase(value)`` for every value, built once per distinct value.

    Large strings (64-bit offsets): joined, the personas of more than about 8 million workers pass the
    2 GiB that a plain arrow string column can hold.
    """
    codes, uniques = pd.factorize(column, sort=False)
    return pa.array([phrase(v) for v in uniques], type=pa.large_string()).take(pa.array(codes))


def personas(frame: pd.DataFrame) -> pd.Series:
    """Persona text for every row of a population frame (second person, three sentences).

    Needs columns occupation, age, sex, state_name, marital_status, children, hourly_wage
    and financial_attitude.
    """
    household = frame["marital_status"].astype(str) + "|" + frame["children"].astype(int).astype(str)
    parts = [
        _pieces(frame["age"].astype(int), _age_opening),
        _pieces(frame["sex"], lambda s: "woman in " if s == "female" else "man in "),
        _pieces(frame["state_name"], lambda s: f"{s} working as one of the nation's "),
        _pieces(frame["occupation"], lambda t: f"{occupation_phrase(t)}. You are "),
        _pieces(household, lambda h: household_phrase(*h.split("|")) + " and earn about "),
        _pieces(pd.Series(_rounded_wage(frame["hourly_wage"].to_numpy(dtype=float))), _wage_phrase),
        _pieces(frame["financial_attitude"], lambda a: ATTITUDES[a][1]),
    ]
    text = pc.binary_join_element_wise(*parts, pa.scalar("", pa.large_string()))
    return pd.Series(text, index=frame.index, dtype=_TEXT)


def persona_text(occupation, age, sex, state_name, marital_status, children, hourly_wage, attitude) -> str:
    """One persona, e.g. 'You are a 34-year-old woman in Ohio working as one of the nation's ...'."""
    row = pd.DataFrame(
        {
            "occupation": [occupation],
            "age": [age],
            "sex": [sex],
            "state_name": [state_name],
            "marital_status": [marital_status],
            "children": [children],
            "hourly_wage": [hourly_wage],
            "financial_attitude": [attitude],
        }
    )
    return personas(row).iloc[0]
