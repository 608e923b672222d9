"""Response formats for requests and parsing of answers into pydantic models.

An answer's one JSON object is found in prose or code fences, then validated by the schema as it is: numbers are
never coerced here. Any leniency a prompt documents (e.g. "40 hours") belongs to the schema's own field types.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from .records import Failure, FailureKind

_KEYS = {"missing", "extra_forbidden", "unexpected_keyword_argument"}
_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "string_too_long",
          "string_too_short", "too_long", "too_short", "literal_error", "enum", "multiple_of"}


@functools.cache
def response_format(schema: type[BaseModel], level: str) -> dict | None:
    """The ``response_format`` for a server that supports ``level`` (json_schema, json_object or text); cached:
    treat the returned dict as read-only."""
    if level == "json_schema":
        model_schema = schema.model_json_schema()
        return {"type": "json_schema",
                "json_schema": {"schema": _strict(model_schema, model_schema), "name": schema.__name__, "strict": True}}
    if level == "json_object":
        return {"type": "json_object"}
    return None


def _strict(node: dict, root: dict) -> dict:
    """``node`` of a pydantic JSON schema made strict as OpenAI's structured outputs require: every object closed
    (``additionalProperties: false``) with all its properties required, no ``None`` default, a one-entry ``allOf``
    unwrapped, and a ``$ref`` that has sibling keys inlined. (The same result as openai-python's
    ``client.chat.completions.parse``, which keeps its version private.)"""
    for group in ("$defs", "definitions"):
        for child in (node.get(group) or {}).values():
            _strict(child, root)
    if node.get("type") == "object":
        node.setdefault("additionalProperties", False)
    if isinstance(node.get("properties"), dict):
        node["required"] = list(node["properties"])
        node["properties"] = {key: _strict(child, root) for key, child in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root)
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [_strict(child, root) for child in node["anyOf"]]
    if isinstance(node.get("allOf"), list):
        if len(node["allOf"]) == 1:
            node.update(_strict(node.pop("allOf")[0], root))
        else:
            node["allOf"] = [_strict(child, root) for child in node["allOf"]]
    if "default" in node and node["default"] is None:
        del node["default"]
    if "$ref" in node and len(node) > 1:
        target = root
        for key in node.pop("$ref").removeprefix("#/").split("/"):
            target = target[key]
        for key, value in target.items():
            node.setdefault(key, value)
        return _strict(node, root)
    return node


@functools.cache
def schema_json(schema: type[BaseModel]) -> str:
    """The strict JSON schema as canonical text (part of every request's hash)."""
    return json.dumps(response_format(schema, "json_schema")["json_schema"]["schema"], sort_keys=True)


def schema_instruction(schema: type[BaseModel]) -> str:
    """A system message asking for JSON, for servers without schema-constrained output."""
    return ("Reply with one JSON object only, no prose, that matches this JSON schema: "
            + schema_json(schema))


class _Ambiguous(ValueError):
    """A JSON object that gives one key twice: which value was meant cannot be told."""


def _object(pairs: list[tuple[str, Any]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise _Ambiguous(f"a key is given twice: {sorted(k for k in value if [p[0] for p in pairs].count(k) > 1)[:3]}")
    return value


def _constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)


def extract_json(text: str) -> tuple[Any, Failure | None]:
    """The one JSON object in ``text``, with prose or code fences around it allowed.

    An answer with two objects (two replies, or one in the prose and another fenced) or an object that gives a key
    twice has no single reading: it is ``ambiguous``, never resolved by picking one.
    """
    if not text or not text.strip():
        return None, Failure(FailureKind.EMPTY, "empty answer")
    start = text.find("{")
    if start < 0:
        return None, Failure(FailureKind.REFUSAL, f"no JSON object in answer: {text[:80]!r}")
    try:
        value, end = _DECODER.raw_decode(text, start)
    except _Ambiguous as err:
        return None, Failure(FailureKind.AMBIGUOUS, str(err))
    except json.JSONDecodeError as err:
        if err.pos >= len(text.rstrip()) or text.count("{") > text.count("}"):
            return None, Failure(FailureKind.TRUNCATED_JSON, f"JSON ends early: {err.msg}")
        return None, Failure(FailureKind.MALFORMED_JSON, f"invalid JSON: {err.msg} at {err.pos}")
    except (ValueError, RecursionError) as err:  # NaN or Infinity, or nesting deeper than the parser goes
        return None, Failure(FailureKind.MALFORMED_JSON, f"invalid JSON: {type(err).__name__} {err}"[:200])
    while (start := text.find("{", end)) >= 0:
        try:
            _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):  # braces in prose are not an object
            end = start + 1
            continue
        return None, Failure(FailureKind.AMBIGUOUS, "the answer holds more than one JSON object")
    return value, None


def read_completion(body: str) -> tuple[str | None, str | None, tuple[int, int], Failure | None]:
    """``(text, finish_reason, (prompt_tokens, completion_tokens), failure)`` from a chat completion's body.

    Anything that is not a chat completion is a ``bad_response`` (or ``error_in_200`` for an error object sent
    with status 200) and yields no text; content given as a list of text parts is text.
    """
    def bad(problem: str, kind: FailureKind = FailureKind.BAD_RESPONSE):
        return None, None, (0, 0), Failure(kind, problem)

    try:
        completion = json.loads(body, parse_constant=_constant)
    except (ValueError, RecursionError) as err:
        return bad(f"the body is not JSON ({type(err).__name__}: {err})"[:200])
    if not isinstance(completion, dict):
        return bad(f"the body is a JSON {type(completion).__name__}, not an object")
    if "choices" not in completion and completion.get("error") is not None:
        error = completion["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return bad(f"HTTP 200 with an error: {str(message)[:200]}", FailureKind.ERROR_IN_200)
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return bad("no choice in the completion")
    message, finish = choices[0].get("message"), choices[0].get("finish_reason")
    if not isinstance(message, dict):
        return bad("the choice has no message object")
    if finish is not None and not isinstance(finish, str):
        return bad(f"finish_reason is a JSON {type(finish).__name__}, not a string")
    content, refusal = message.get("content"), message.get("refusal")
    if isinstance(content, list):  # content parts, as some servers send them: the text parts are the text
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            return bad("content parts other than text")
        content = "".join(part["text"] for part in content)
    if content is not None and not isinstance(content, str) or refusal is not None and not isinstance(refusal, str):
        return bad(f"content is a JSON {type(content).__name__}, not text")
    usage = completion.get("usage")
    tokens = [0, 0]
    if usage is not None:
        if not isinstance(usage, dict):
            return bad("usage is not an object")
        for i, name in enumerate(("prompt_tokens", "completion_tokens")):
            count = usage.get(name, 0)
            if count is None:
                continue
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_TOKENS_COUNTED:
                return bad(f"usage.{name} is {str(count)[:40]!r}, not a token count")
            tokens[i] = count
    return content or refusal or "", finish, (tokens[0], tokens[1]), None


MAX_TOKENS_COUNTED = 10**9  # more tokens than any context holds: a server's usage above it is garbage


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
