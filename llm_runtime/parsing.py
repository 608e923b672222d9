"""Response formats for requests and parsing of answers into pydantic models.

An answer's JSON is found in prose or code fences, then validated by the schema as it is: numbers are never
coerced here. Any leniency a prompt documents (e.g. "40 hours") belongs to the schema's own field types.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from openai.lib._parsing import type_to_response_format_param
from pydantic import BaseModel, ValidationError

from .records import Failure, FailureKind

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_KEYS = {"missing", "extra_forbidden", "unexpected_keyword_argument"}
_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "string_too_long",
          "string_too_short", "too_long", "too_short", "literal_error", "enum", "multiple_of"}


@functools.cache
def response_format(schema: type[BaseModel], level: str) -> dict | None:
    """The ``response_format`` for a server that supports ``level`` (json_schema, json_object or text).

    The strict schema is openai-python's own; cached: treat the returned dict as read-only.
    """
    if level == "json_schema":
        return type_to_response_format_param(schema)
    if level == "json_object":
        return {"type": "json_object"}
    return None


@functools.cache
def schema_json(schema: type[BaseModel]) -> str:
    """The strict JSON schema as canonical text (part of every request's hash)."""
    return json.dumps(response_format(schema, "json_schema")["json_schema"]["schema"], sort_keys=True)


def schema_instruction(schema: type[BaseModel]) -> str:
    """A system message asking for JSON, for servers without schema-constrained output."""
    return ("Reply with one JSON object only, no prose, that matches this JSON schema: "
            + schema_json(schema))


def extract_json(text: str) -> tuple[Any, Failure | None]:
    """The first JSON object in ``text``, tolerating code fences and prose around it."""
    if not text or not text.strip():
        return None, Failure(FailureKind.EMPTY, "empty answer")
    fenced = _FENCE.search(text)
    if fenced:
        value, failure = _first_object(fenced.group(1))
        if failure is None:
            return value, None
    return _first_object(text)


def _first_object(text: str) -> tuple[Any, Failure | None]:
    start = text.find("{")
    if start < 0:
        return None, Failure(FailureKind.REFUSAL, f"no JSON object in answer: {text[:80]!r}")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
        return value, None
    except json.JSONDecodeError as err:
        if err.pos >= len(text.rstrip()) or text.count("{") > text.count("}"):
            return None, Failure(FailureKind.TRUNCATED_JSON, f"JSON ends early: {err.msg}")
        return None, Failure(FailureKind.MALFORMED_JSON, f"invalid JSON: {err.msg} at {err.pos}")


def classify_validation(err: ValidationError) -> FailureKind:
    """Wrong keys first, then a broken bound; anything else (wrong type, a value a field's validator rejects,
    a non-finite number) is an invalid type."""
    kinds = {e["type"] for e in err.errors()}
    if kinds & _KEYS:
        return FailureKind.WRONG_KEYS
    if kinds & _RANGE:
        return FailureKind.OUT_OF_RANGE
    return FailureKind.INVALID_TYPE


def parse_answer(text: str | None, schema: type[BaseModel],
                 finish_reason: str | None = None) -> tuple[BaseModel | None, Failure | None]:
    """Validated instance of ``schema`` from an answer, or a typed failure; never raises."""
    data, failure = extract_json(text or "")
    if failure is not None:
        if finish_reason == "length" and failure.kind is FailureKind.MALFORMED_JSON:
            failure = Failure(FailureKind.TRUNCATED_JSON, failure.message)
        return None, failure
    try:
        return schema.model_validate(data), None
    except ValidationError as err:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in err.errors()[:5])
        return None, Failure(classify_validation(err), detail)
    except Exception as err:  # noqa: BLE001 - a validator in the caller's model raised
        return None, Failure(FailureKind.INVALID_TYPE, f"{type(err).__name__}: {err}")


def reask_message(failure: Failure) -> dict:
    """The user turn that asks the model to correct an invalid answer."""
    return {"role": "user", "content": f"Your answer was invalid ({failure.kind.value}: {failure.message}). "
                                       "Reply again with only the corrected JSON object."}
