"""Parameters declared with pydantic, and their problems as one line: ``field: problem; allowed: ...``.

:func:`validate` turns pydantic's structured errors into a :class:`ParameterError` without reading any
message text: what is wrong comes from the error's type and input, what is allowed from the field's
declaration (its bounds, its choices, or ``json_schema_extra={"allowed": ...}``).
"""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError


def _one_line(text: str) -> str:
    """Line breaks in user input shown as escapes, so an error stays on one line."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


class ParameterError(ValueError):
    """A bad parameter: ``field: problem; allowed: ...`` on one line."""

    def __init__(self, field: str, problem: str, allowed: str):
        field, problem, allowed = (_one_line(text) for text in (field, problem, allowed))
        self.field, self.problem, self.allowed = field, problem, allowed
        super().__init__(f"{field}: {problem}; allowed: {allowed}")


def _names(registry) -> str:
    return ", ".join(registry)


def choice(registry, kind: str | None = None):
    """A field whose value must be a name in ``registry`` (a Registry, dict or tuple), checked when validated."""
    kind = kind or getattr(registry, "kind", "name")

    def check(value):
        names = registry if hasattr(registry, "__contains__") else registry()
        if value is not None and (not isinstance(value, str) or value not in names):
            raise PydanticCustomError("choice", "unknown {kind} {value}",
                                      {"kind": kind.replace("_", " "), "value": repr(value), "allowed": _names(names)})
        return value

    check.names = lambda: registry if hasattr(registry, "__contains__") else registry()
    return BeforeValidator(check)


def _choices(annotation) -> str | None:
    """The names a choice field (or a list of them) accepts, found in its annotation."""
    for item in (*getattr(annotation, "__metadata__", ()), *get_args(annotation)):
        names = getattr(getattr(item, "func", None), "names", None)
        found = ", ".join(names()) if names else _choices(item) if get_args(item) else None
        if found:
            return found
    return None


def allowed(model: type[BaseModel], field: str, error: dict | None = None) -> str:
    """What ``field`` of ``model`` accepts, in words, from its declaration."""
    if error is not None and "allowed" in error.get("ctx", {}):
        return error["ctx"]["allowed"]
    info = model.model_fields.get(field) or next(  # a field may be named by its alias (e.g. a variable)
        (info for info in model.model_fields.values() if info.validation_alias == field), None)
    if info is None:
        return ", ".join(model.model_fields)
    if isinstance(info.json_schema_extra, dict) and "allowed" in info.json_schema_extra:
        return info.json_schema_extra["allowed"]
    names = _choices(Annotated[info.annotation, *info.metadata]) if info.metadata else _choices(info.annotation)
    if names:
        return f"one or more of {names}, comma-separated" if "list" in str(info.annotation) else f"one of {names}"
    bounds = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in info.metadata
              if type(m).__name__ in ("Ge", "Gt", "Le", "Lt")}
    for meta in info.metadata:  # the bounds of list items and optional values sit one level down
        bounds |= {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in getattr(meta, "metadata", ())
                   if type(m).__name__ in ("Ge", "Gt", "Le", "Lt")}
    text = str(info.annotation)
    if "Literal" in text:
        return "one of " + ", ".join(map(str, get_args(info.annotation)))
    kind = "an integer" if "int" in text else "a number" if "float" in text else None
    if "list" in text:
        kind = "a list of numbers" if "float" in text or "int" in text else "a list of names"
    if "bool" in text:
        return "true or false"
    if kind and bounds:
        low = bounds.get("Ge", bounds.get("Gt"))
        high = bounds.get("Le", bounds.get("Lt"))
        def fmt(x):
            return f"{x:_}" if isinstance(x, int) and abs(x) >= 10_000 else f"{x:g}"
        if kind == "a number":
            return f"a number in {'[' if 'Ge' in bounds else '('}{fmt(low)}, {fmt(high)}{']' if 'Le' in bounds else ')'}"
        return f"{kind} >= {fmt(low)} and <= {fmt(high)}"
    if field == "planner_options":
        return "a table of the planner rule's options, e.g. {rates = [0.1, 0.2, 0.3]}"
    if field == "skills":
        return "a non-empty array of finite positive numbers"
    lengths = [getattr(m, "max_length", None) for m in info.metadata if getattr(m, "max_length", None)]
    return kind or (f"a one-line string of at most {lengths[0]:,} characters" if lengths else "a one-line string")


def problem(error: dict) -> str:
    """What is wrong with the value, in words, from pydantic's structured error."""
    value, kind = error.get("input"), error["type"]
    if kind in ("choice", "url"):
        return error["msg"]
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{value!r} is not an integer"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"{value!r} is not a finite number"
    if kind in ("bool_type", "bool_parsing"):
        return f"{value!r} is not true or false"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"{value!r} is out of range"
    if kind in ("string_type", "string_too_short", "string_too_long"):
        return f"{value!r} is not a name" if kind != "string_too_long" else "is too long"
    if kind == "extra_forbidden":
        return "unknown parameter"
    if kind in ("list_type", "dict_type"):
        return f"{value!r} is not a {'list' if kind == 'list_type' else 'table'}"
    if kind == "value_error":
        return f"{value!r} {error['ctx']['error']}"
    if kind == "missing":
        return "is required"
    return error["msg"]


def parameter_error(error: ValidationError, model: type[BaseModel], name=lambda field: field) -> ParameterError:
    """The first problem of a pydantic ``error`` as a :class:`ParameterError` (field named by ``name``).

    A ParameterError raised inside a validator comes back wrapped: it is unwrapped, and named by where it was
    raised (a field, or its own field for a rule across fields)."""
    items = error.errors(include_url=False)
    for item in items:
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, ParameterError):
            return ParameterError(name(str(item["loc"][0]) if item["loc"] else cause.field), cause.problem,
                                  cause.allowed)
    first = items[0]
    field = str(first["loc"][0]) if first["loc"] else "parameters"
    return ParameterError(name(field), problem(first), allowed(model, field, first))


def validate(model: type[BaseModel], values: dict, *, strings: bool = False, name=lambda field: field):
    """``model`` validated from ``values`` (typed, or command-line strings); raises :class:`ParameterError`."""
    try:
        if strings:
            return model.model_validate_strings(values, strict=False)
        return model.model_validate(values)
    except ParameterError as error:
        raise ParameterError(name(error.field), error.problem, error.allowed) from None
    except ValidationError as error:
        raise parameter_error(error, model, name) from None
