"""Tolerant parsing of answers and classification of bad ones."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from llm_runtime import FailureKind
from llm_runtime.parsing import extract_json, parse_answer, response_format
from tests.llm_helpers.common import Work


class Rate(BaseModel):
    rate: float = Field(ge=0, le=1)


class Nested(BaseModel):
    work: Work
    rates: list[float] = Field(default_factory=list, max_length=7)


@pytest.mark.parametrize("text,hours", [
    ('{"hours": 40, "reason": "r"}', 40),
    ('```json\n{"hours": 40, "reason": "r"}\n```', 40),
    ('```\n{"hours": 41, "reason": "r"}\n```', 41),
    ('Sure! {"hours": 42, "reason": "r"} Hope that helps.', 42),
    ('{"hours": "40 hours", "reason": "r"}', 40),
    ('{"hours": "about 35", "reason": "r"}', 35),
    ('{"hours": "22%", "reason": "r"}', 22),
    ('{"hours": 40.0, "reason": "r"}', 40),
])
def test_junk_around_valid_answers_is_tolerated(text, hours):
    value, failure = parse_answer(text, Work)
    assert failure is None and value.hours == hours


def test_percent_becomes_a_fraction_when_the_field_is_a_fraction():
    value, failure = parse_answer('{"rate": "22%"}', Rate)
    assert failure is None and value.rate == pytest.approx(0.22)


@pytest.mark.parametrize("text,kind", [
    ("", FailureKind.EMPTY),
    ("I'm sorry, I can't help with that.", FailureKind.REFUSAL),
    ('{"hours": 40, "reason": "r",,}', FailureKind.MALFORMED_JSON),
    ('{"hours": 40, "rea', FailureKind.TRUNCATED_JSON),
    ('{"hours": 40', FailureKind.TRUNCATED_JSON),
    ('{"hrs": 40, "why": "r"}', FailureKind.WRONG_KEYS),
    ('{"hours": 40, "reason": "r", "extra": 1}', FailureKind.WRONG_KEYS),
    ('{"hours": 140, "reason": "r"}', FailureKind.OUT_OF_RANGE),
    ('{"hours": -1, "reason": "r"}', FailureKind.OUT_OF_RANGE),
    ('{"hours": 10, "reason": "' + "x" * 81 + '"}', FailureKind.OUT_OF_RANGE),
    ('{"hours": "many", "reason": "r"}', FailureKind.INVALID_TYPE),
])
def test_bad_answers_are_typed(text, kind):
    value, failure = parse_answer(text, Work)
    assert value is None and failure.kind is kind and failure.message


def test_finish_reason_length_marks_cut_answers_as_truncated():
    _, failure = parse_answer('{"hours": 40, "reason": "r" "x"}', Work, finish_reason="length")
    assert failure.kind is FailureKind.TRUNCATED_JSON


def test_the_requested_schema_closes_every_object_and_requires_every_property():
    schema = response_format(Nested, "json_schema")["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and schema["required"] == ["work", "rates"]
    work = schema["$defs"]["Work"]
    assert work["additionalProperties"] is False and work["required"] == ["hours", "reason"]


def test_nested_models_are_coerced_and_validated():
    value, failure = parse_answer('{"work": {"hours": "30h", "reason": "x"}, "rates": ["10", 0.2]}', Nested)
    assert failure is None and value.work.hours == 30 and value.rates == [10.0, 0.2]


@settings(max_examples=200, deadline=None)
@given(hours=st.integers(0, 100), reason=st.text(max_size=80),
       before=st.sampled_from(["", "Here you go: ", "```json\n", "Answer:\n"]),
       after=st.sampled_from(["", " Thanks!", "\n```", "\nLet me know."]))
def test_any_valid_answer_survives_prose_and_fences(hours, reason, before, after):
    text = before + json.dumps({"hours": hours, "reason": reason}) + after
    value, failure = parse_answer(text, Work)
    assert failure is None and value == Work(hours=hours, reason=reason)


@given(st.text(max_size=200))
def test_parse_never_raises(text):
    value, failure = parse_answer(text, Work)
    assert (value is None) != (failure is None)


def test_fences_inside_strings_do_not_break_extraction():
    text = '```json\n{"hours": 3, "reason": "a ``` b"}\n```'
    value, failure = parse_answer(text, Work)
    assert failure is None and value.reason == "a ``` b"


def test_extract_json_takes_the_first_object():
    assert extract_json('a {"x": 1} b {"y": 2}') == ({"x": 1}, None)
