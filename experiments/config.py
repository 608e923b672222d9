"""Settings of ``run.py``: flags, else the ``--config`` TOML file (same names, underscores), else the defaults.

Model settings are :class:`model.params.EconomyParams` fields (a few under shorter flag names); the rest are
:class:`experiments.cli.CliSettings`. Both declare type, default and allowed values once; each problem raises
:class:`ConfigError`, one line naming the flag or TOML key and what is allowed.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import TypeAdapter, ValidationError

from experiments.cli import (ALIASES, COMMA_LISTS, COMMAND_OPTIONS, COMMANDS, GRID_KEYS, MAX_RUNS, default_of,
                             owner, flag, option_help, parse_command_line)
from experiments.folders import check_out, python_command, run_folder, settings_hash
from experiments.plugins import load_plugins, model_class_spec
from agents.llm_settings import as_parameter_error, llm_settings
from llm_runtime.config import LLMConfig, server_named
from model.params import EconomyParams
from validation import allowed, problem, validate
from validation import ParameterError as ConfigError

@cache
def _adapter(name: str) -> TypeAdapter:
    model, field = owner(name)
    info = model.model_fields[field]
    return TypeAdapter(Annotated[info.annotation, info])


def parse(name: str, value, *, flag: bool, label: str):
    """One setting from a flag's text or a TOML value."""
    model, field = owner(name)
    if flag and name in COMMA_LISTS:
        value = [] if name == "baselines" and value.strip() == "none" else [v.strip() for v in value.split(",")]
    try:
        if flag and isinstance(value, list):  # a comma-separated flag: each item is text
            return _adapter(name).validate_python(value, strict=False)
        if flag:
            return _adapter(name).validate_strings(value, strict=False)
        return _adapter(name).validate_python(value, strict=True)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise ConfigError(label, problem(first), allowed(model, field, first)) from None


def load_toml(file: str, command: str) -> dict:
    try:
        values = tomllib.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise ConfigError("--config", f"cannot read {file!r} as TOML ({type(err).__name__})",
                          "a readable TOML file of name = value lines") from None
    known = {name for names in COMMAND_OPTIONS.values() for name in names}
    for key in [key for key in values if key in ALIASES and ALIASES[key] not in values]:
        values[ALIASES[key]] = values.pop(key)
    for key in values:
        if key not in COMMAND_OPTIONS[command]:
            where = f"not a setting of `{command}`" if key in known else "unknown key"
            raise ConfigError(f"{file}: {key}", where, ", ".join(COMMAND_OPTIONS[command]))
    return values


def parse_grid(value, *, flag_given: bool, label: str) -> dict[str, list]:
    words = f"NAME=V1,V2,... with NAME one of {', '.join(GRID_KEYS)}"
    if flag_given:
        pairs = [item.partition("=") for item in value]
        if any(not sep or not values.strip() for _, sep, values in pairs) or len({n for n, _, _ in pairs}) < len(pairs):
            raise ConfigError(label, f"{value!r} is not NAME=V1,V2 once per name", words)
        value = {name.strip(): [v.strip() for v in values.split(",")] for name, _, values in pairs}
        if lists := [name for name in value if name in COMMA_LISTS and name in GRID_KEYS]:
            raise ConfigError(label, f"{lists[0]} takes a list per grid point",
                              f"a [grid] table in the --config file, e.g. {lists[0]} = [[0.1, 0.2], [0.3, 0.4]]")
    if isinstance(value, dict):  # from a flag or a [grid] table, a short spelling is the parameter's own name
        value = {ALIASES.get(name, name): values for name, values in value.items()}
    if not isinstance(value, dict) or any(n not in GRID_KEYS or not isinstance(v, list) or not v
                                          for n, v in value.items()):
        raise ConfigError(label, f"{value!r} is not a table of non-empty lists of sweepable names", words)
    grid = {n: [parse(n, v, flag=flag_given, label=f"{label} {n}") for v in vs] for n, vs in value.items()}
    for name, values in grid.items():
        if len(set(map(str, values))) != len(values):
            raise ConfigError(label, f"{name} lists a value twice", words)
    return grid


SERVER_OPTIONS = ("backend", "base_url")
SERVER_DEFAULTS = "_with_server"


def resolve(argv: list[str], defaults: dict[str, dict]) -> tuple[str, dict]:
    """Parse and validate a command line: ``(command, settings)``; raises ConfigError.

    ``defaults[command]`` are the defaults of a command; ``defaults[command + "_with_server"]``, where given, replace
    them when the LLM requests go to a server (flags, TOML or the LLM_* / OPENAI_API_KEY environment).
    """
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    namespace = parse_command_line(argv, {command: option_help(command, defaults) for command in COMMANDS},
                                   with_config=("run", "compare", "sweep"))
    command, file = namespace.pop("command"), namespace.pop("config", None)
    from_file = load_toml(file, command) if file is not None else {}
    settings = {}
    command_defaults = defaults.get(command, {})
    if "plugin" in COMMAND_OPTIONS[command]:  # first: the names they register are valid in the other settings
        plugins = parse("plugin", namespace.pop("plugin", None) or from_file.pop("plugin", []), flag=False,
                        label="--plugin")
        load_plugins(plugins)
        settings["plugin"] = [str(Path(p).resolve()) for p in plugins]  # resume and sweep workers load them too
    # where requests go comes first: a command may have other defaults when a server is named (SERVER_DEFAULTS)
    with_server = None
    for name in sorted(COMMAND_OPTIONS[command], key=lambda n: n not in SERVER_OPTIONS):
        if name == "plugin":
            continue
        if name not in SERVER_OPTIONS and with_server is None:  # the server options are all read by now
            with_server = f"{command}{SERVER_DEFAULTS}" in defaults and server_named(llm_config(settings))
            command_defaults = defaults[f"{command}{SERVER_DEFAULTS}"] if with_server else command_defaults
        given, label = (namespace, flag(name)) if name in namespace else (from_file, f"{name} ({file})")
        if name not in given:
            settings[name] = default_of(name, command_defaults)
        elif name == "grid":
            settings[name] = parse_grid(given[name], flag_given=given is namespace, label=label)
        else:
            settings[name] = parse(name, given[name], flag=given is namespace, label=label)
    check(command, settings)
    return command, settings


def model_settings(s: dict, where: str = "") -> None:
    """The rules that tie model settings together, checked as the model will check them."""
    values = {n: v for n, v in s.items() if owner(n)[0] is EconomyParams and v is not None}
    validate(EconomyParams, values,  # a table's key (planner_options.x) is named as written in TOML
             name=lambda field: (field if "." in field else flag(field)) + where)


def check(command: str, s: dict) -> None:
    if command in ("run", "sweep") and s["model_class"] is not None:
        s["model_class"] = model_class_spec(s["model_class"])  # resume, replay and sweep workers load it again
    if command == "run":
        s["planner"] = s["planner"] or "llm"
        model_settings(s)
        s["out"] = s["out"] or f"results/{s['preset']}-{s['planner']}-seed{s['seed']}-{settings_hash(s)}"
    elif command == "sweep":
        if s["scheduler"] is not None and s["executor"] != "dask":
            raise ConfigError("--scheduler", "is only used with --executor dask", "--executor dask, or no --scheduler")
        points = sweep_points(s)
        if len(points) * len(s["seeds"]) > MAX_RUNS:
            raise ConfigError("--grid", f"{len(points) * len(s['seeds'])} runs", f"at most {MAX_RUNS} runs")
        for point in points:
            model_settings(point, "" if not s["grid"] else
                           " (grid point " + ", ".join(f"{k}={point[k]}" for k in s["grid"]) + ")")
        s["out"] = s["out"] or "results/sweep"
    elif command in ("replay", "resume"):
        if s["run"] is None:
            raise ConfigError("--run", "is required", "the results folder of a run")
        s["run"] = str(run_folder(s["run"], command))
    if command in ("run", "sweep"):
        llm_environment(s)
    if command in ("run", "sweep") or command == "compare" and s["out"] is not None:
        check_out("--out", Path(s["out"]), s["overwrite"])
    if command == "run":  # the folder's name is the run's id in the response store
        longest = next(m.max_length for m in EconomyParams.model_fields["run_id"].metadata if hasattr(m, "max_length"))
        if len(Path(s["out"]).name) > longest:
            raise ConfigError("--out", f"a folder name of {len(Path(s['out']).name):,} characters is too long",
                              f"a folder name of at most {longest} characters (it is the run's id)")


def llm_environment(s: dict) -> None:
    """The LLM layer's settings from ``LLM_*`` variables (timeouts, backend, URLs, ...) are checked before any work,
    as flags are: a bad one is named by its variable."""
    mode = os.environ.get("LLM_STORE_MODE")
    if mode and mode != "record":  # run.py keeps every answer in the results folder, for resume and replay
        raise ConfigError("LLM_STORE_MODE", f"{mode!r} is not for `run.py {'sweep' if 'grid' in s else 'run'}`, "
                          "whose answers are all kept in its results folder",
                          "record (or unset); to rerun a finished run from its answers: "
                          f"{python_command()} run.py replay --run DIR")
    llm_config(s)


def llm_config(s: dict) -> LLMConfig:
    """The LLM settings of ``s`` (its flags, else ``LLM_*`` variables); an error names the flag or the variable."""
    try:
        return LLMConfig(**llm_settings(s) | {"store_mode": "off"})
    except ConfigError as error:
        error = as_parameter_error(error)
        raise ConfigError(flag(error.field) if error.field in s else error.field, error.problem,
                          error.allowed) from None


def sweep_points(s: dict) -> list[dict]:
    """The settings of every grid point (seeds not included), in a fixed order."""
    keys = list(s["grid"])
    return [dict(s, **dict(zip(keys, values))) for values in itertools.product(*(s["grid"][k] for k in keys))]
