"""Persona text: deterministic, second person, three sentences, built from the attributes."""

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from calibration import personas
from calibration.census import sample_census


def test_known_persona_text():
    text = personas.persona_text(
        "Registered Nurses", 34, "female", "Ohio", "married", 2, 37.70, "cautious saver"
    )
    assert text == (
        "You are a 34-year-old woman in Ohio working as one of the nation's registered nurses. "
        "You are married with two children under 18 and earn about $37.75 an hour. "
        "You save steadily, avoid debt and worry about anything that eats into your income."
    )


def test_articles_numbers_and_wages_as_said_aloud():
    text = personas.persona_text("Cashiers", 18, "male", "Iowa", "single", 1, 11.9, "ambitious earner")
    assert text.startswith("You are an 18-year-old man in Iowa") and "one child under 18" in text
    assert "earn about $12.00 an hour." in text
    chief = personas.persona_text(
        "Chief Executives", 58, "female", "Iowa", "married", 0, 1_254.4, "cautious saver"
    )
    assert "earn about $1,254 an hour." in chief


def test_sampled_personas_mention_their_attributes():
    frame = sample_census(400, np.random.default_rng(11))
    for row in frame.itertuples():
        text = row.persona
        assert text.startswith("You are") and len(re.findall(r"[.!?](?:\s|$)", text)) == 3
        assert f"{row.age}-year-old" in text and row.state_name in text
        assert personas.occupation_phrase(row.occupation) in text
        assert ("woman" if row.sex == "female" else "man") in text
        assert row.marital_status in text
        assert personas.ATTITUDES[row.financial_attitude][1] in text
        said = round(row.hourly_wage * 4) / 4 if row.hourly_wage < 100 else round(row.hourly_wage)
        assert f"earn about ${said:,.{2 if said < 100 else 0}f} an hour." in text


def test_persona_is_a_function_of_the_attributes():
    frame = sample_census(300, np.random.default_rng(2))
    again = personas.personas(frame.drop(columns="persona").sample(frac=1.0, random_state=0)).sort_index()
    pd.testing.assert_series_equal(again, frame["persona"], check_names=False)


def test_attitudes_follow_the_documented_distribution():
    drawn = pd.Series(personas.draw_attitudes(200_000, np.random.default_rng(4)))
    shares = drawn.value_counts(normalize=True)
    for label, (probability, _) in personas.ATTITUDES.items():
        assert abs(shares[label] - probability) < 0.01
    assert np.isclose(sum(p for p, _ in personas.ATTITUDES.values()), 1.0)


def test_empty_and_single_draws():
    assert sample_census(0, np.random.default_rng(0))["persona"].size == 0
    assert sample_census(1, np.random.default_rng(0))["persona"].iloc[0].startswith("You are")


def test_personas_are_joined_with_64_bit_offsets(monkeypatch):
    """Large strings: the personas of 10 million workers (about 2.6 GB) pass the 2 GiB of a plain arrow string."""
    join, joined = pc.binary_join_element_wise, []
    monkeypatch.setattr(personas.pc, "binary_join_element_wise", lambda *a: joined.append(join(*a)) or joined[-1])
    frame = sample_census(20, np.random.default_rng(3))
    assert joined[-1].type == pa.large_string() and joined[-1].to_pylist() == frame["persona"].tolist()
