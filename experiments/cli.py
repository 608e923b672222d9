"""The command line's shape: commands, their settings and flags; argparse errors as one-line ConfigErrors."""

from __future__ import annotations

import argparse
import ipaddress
import os
from urllib.parse import urlsplit
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agents.planner import PLANNERS
from experiments.folders import python_command
from model.params import EconomyParams
from validation import allowed, choice
from validation import ParameterError as ConfigError

COMMANDS = ("run", "compare", "sweep", "replay", "resume", "dashboard")
HELP = {"run": "the main job (default): the baselines, then LLM workers and an LLM planner; writes a results folder",
        "compare": "one rational population under several planners, side by side",
        "sweep": "a parameter grid x seeds; writes one tidy parquet table of all runs",
        "replay": "rerun a finished run from its stored responses only (no request is sent)",
        "resume": "continue an interrupted or crashed run: stored responses replay, then it goes live",
        "dashboard": "start the Solara dashboard"}
REPEATED = ("grid", "plugin")  # flags given once per value
SWITCHES = ("overwrite", "allow_other_model")  # flags without a value
COMMA_LISTS = ("baselines", "planners", "seeds", "initial_rates")  # flags whose value is a comma-separated list
MAX_RUNS = 100_000
ALIASES = {"steps": "max_steps", "scenario": "scenario_name", "model": "llm_model"}
"""Short spellings accepted for a flag or TOML key; help, errors and config.json use the parameter's own name."""
# Model parameters that are not settings of run.py, and why. Every other EconomyParams field is a flag, a TOML key
# and a --grid name, under its own name.
NOT_SETTINGS = {
    "skills": "an array of skills: EconomyModel(skills=...) only",
    "run_id": "run.py names each run after its results folder (a sweep's runs: run-0000, ...)",
    "llm_store": "run.py keeps the answers of a run in <results folder>/responses.sqlite",
    "llm_store_mode": "run.py records (run, resume, sweep) or replays (replay)",
}
TOML_ONLY = ("planner_options",)  # a table: a TOML key, neither a flag nor a --grid name
NOT_SWEPT = {"agent_interval": "a sweep keeps model data only"}
PARAMETERS = tuple(field for field in EconomyParams.model_fields if field not in NOT_SETTINGS)
COMMAND_OPTIONS = {
    "run": ("plugin", "model_class", *PARAMETERS, "seed", "baselines", "max_failure_rate", "out", "overwrite"),
    "compare": ("plugin", "workers", "max_steps", "tax_year_length", "preset", "brackets", "objective", "seed",
                "planners", "out", "overwrite"),
    "sweep": ("plugin", "model_class", *(name for name in PARAMETERS if name not in NOT_SWEPT), "grid", "seeds",
              "executor", "scheduler", "jobs", "out", "overwrite"),
    "replay": ("run", "base_url", "llm_model", "allow_other_model"),
    "resume": ("run", "base_url", "llm_model", "allow_other_model"), "dashboard": ("plugin", "host", "port"),
}
GRID_KEYS = tuple(name for name in COMMAND_OPTIONS["sweep"] if name in PARAMETERS and name not in TOML_ONLY)


def _unique(values: list) -> list:
    if len(set(map(str, values))) != len(values):
        raise ValueError("names a value twice")
    return values


def _address(value: str | None) -> str | None:
    """A dask scheduler's tcp:// or tls:// address with a valid host and port."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    host = parts.hostname if parts else None
    numeric = host is not None and host.replace(".", "").isdigit()
    if parts is None or parts.scheme not in ("tcp", "tls") or not host or not port or parts.path not in ("", "/") \
            or numeric and not _is_ip(host):
        raise ValueError("is not a scheduler address")
    return value


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _baselines() -> tuple[str, ...]:
    return tuple(name for name in PLANNERS if not PLANNERS[name].needs_llm)


Baselines = Annotated[list[Annotated[str, choice(_baselines, "baseline")]], AfterValidator(_unique)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class CliSettings(BaseModel):
    """Settings of the command line that are not model parameters."""

    model_config = ConfigDict(strict=True, extra="forbid")
    plugin: Annotated[list[Annotated[str, Field(min_length=1, max_length=1024)]],
                      Field(description="a Python file that registers planners, minds, ... (repeat for more)")] = []
    seed: Annotated[Seed, Field(description="random seed: same seed, same population and data")] = 42
    model_class: Annotated[str | None, Field(min_length=1, max_length=1024, json_schema_extra={
        "allowed": "module:Class or path/to/file.py:Class, a subclass of model.model.EconomyModel"}, description=(
        "your subclass of EconomyModel, as module:Class or path/to/file.py:Class; resume and replay use it too "
        "(default: EconomyModel)"))] = None
    out: Annotated[str | None, Field(min_length=1, max_length=1024, description="results folder")] = None
    overwrite: Annotated[bool, Field(description="replace the results of an earlier run in --out")] = False
    allow_other_model: Annotated[bool, Field(description=(
        "resume or replay on another model or server than the run's own (the summary says so at the top)"))] = False
    baselines: Annotated[Baselines, Field(description="baseline planners run with rational workers")] = \
        ["us_federal", "saez", "oracle", "blackbox"]
    max_failure_rate: Annotated[float, Field(ge=0, le=1, description=(
        "an LLM run whose share of failed requests ends above this exits with status 1, after writing its "
        "results"))] = 0.05
    planners: Annotated[Baselines, Field(min_length=1, description="planners to compare")] = \
        ["us_federal", "saez_reference", "saez", "oracle", "blackbox", "fixed"]
    grid: Annotated[dict[str, list[Any]], Field(description="a swept parameter, NAME=V1,V2 (repeat for a grid)")] = {}
    seeds: Annotated[list[Seed], Field(min_length=1), AfterValidator(_unique),
                     Field(description="seeds of every grid point")] = [1, 2, 3]
    executor: Annotated[str, choice(("local", "dask"), "executor"), Field(description="local processes or dask")] = \
        "local"
    scheduler: Annotated[str | None, AfterValidator(_address), Field(
        max_length=300, description="dask scheduler", json_schema_extra={"allowed": "tcp://host:port"})] = None
    jobs: Annotated[int, Field(ge=1, le=1024, description="parallel runs")] = os.cpu_count() or 1
    run: Annotated[str | None, Field(min_length=1, max_length=1024, description="results folder of the run")] = None
    host: Annotated[str, Field(min_length=1, max_length=255, description="dashboard host")] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535, description="dashboard port")] = 8765




def owner(name: str) -> tuple[type[BaseModel], str]:
    return (CliSettings, name) if name in CliSettings.model_fields else (EconomyParams, name)


def default_of(name: str, defaults: dict):
    model, field = owner(name)
    return defaults.get(name, model.model_fields[field].default)


def option_help(command: str, defaults: dict[str, dict]) -> dict[str, str]:
    """Each flag of ``command`` and its help line: what it sets, what it allows, its default."""
    lines = {}
    for name in COMMAND_OPTIONS[command]:
        if name in TOML_ONLY:
            continue
        model, field = owner(name)
        default = default_of(name, defaults.get(command, {}))
        about = model.model_fields[field].description or field
        shown = "none" if default in (None, {}, []) else ",".join(map(str, default)) \
            if isinstance(default, list) else str(default).lower() if isinstance(default, bool) else default
        shown = "" if default is None and "(default:" in about else f" (default: {shown})"
        lines[name] = f"{about}; {allowed(model, field)}{shown}"
    return lines


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class _Parser(argparse.ArgumentParser):
    """Errors argparse reports without an ArgumentError (unknown arguments) as a ConfigError."""

    def error(self, message):
        raise ConfigError("arguments", message, f"the options of `{python_command()} run.py COMMAND --help`")


def build_parser(options: dict[str, dict[str, str]], with_config: tuple[str, ...]) -> argparse.ArgumentParser:
    """``options[command]`` maps each setting to its help line; flags are kept as the text given."""
    parser = _Parser(prog="run.py", exit_on_error=False,
                     description="The LLM Economist on Mesa. With no command, `run` (the main job).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        sub = commands.add_parser(command, help=HELP[command], description=HELP[command], exit_on_error=False,
                                  argument_default=argparse.SUPPRESS)
        for name, line in options[command].items():
            shown = [(flag(name), line)] + [(flag(alias), argparse.SUPPRESS) for alias, to in ALIASES.items()
                                            if to == name]
            for option, text in shown:
                if name in SWITCHES:
                    sub.add_argument(option, dest=name, action="store_const", const="true", help=text)
                else:
                    sub.add_argument(option, dest=name, action="append" if name in REPEATED else None,
                                     metavar=name.upper(), help=text)
        if command in with_config:
            sub.add_argument("--config", metavar="FILE.toml", help="settings from a TOML file; flags win")
    return parser


def parse_command_line(argv: list[str], options: dict[str, dict[str, str]], with_config: tuple[str, ...]) -> dict:
    """The flags given, as text, with ``command`` (and ``config``); raises ConfigError."""
    try:
        return vars(build_parser(options, with_config).parse_args(argv))
    except argparse.ArgumentError as error:
        name = error.argument_name if error.argument_name not in (None, "COMMAND") else "command"
        name = name.split("/")[-1]
        name = flag(ALIASES.get(name.removeprefix("--").replace("-", "_"), "")) if name.startswith("--") and \
            name.removeprefix("--").replace("-", "_") in ALIASES else name
        raise ConfigError(name, error.message, f"see `{python_command()} run.py --help`") from None
