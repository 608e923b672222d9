"""Settings of ``run.py``: one table of options for flags and TOML files, all validated before any work starts.

A setting comes from its flag, else from the ``--config`` TOML file (the same names with underscores), else from
the command's default. Every problem raises :class:`ConfigError`, one line naming the field and what is allowed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

COMMANDS = ("run", "compare", "sweep", "replay", "resume", "dashboard")
EXECUTORS = ("local", "dask")
MAX_RUNS = 100_000
PARTIAL_SUFFIX = ".partial"


class ConfigError(ValueError):
    """Bad input: ``field: problem; allowed: ...`` on one line (exit status 2)."""

    def __init__(self, field: str, problem: str, allowed: str):
        self.field, self.problem, self.allowed = field, problem, allowed
        super().__init__(f"{field}: {problem}; allowed: {allowed}")


@cache
def names() -> dict[str, tuple[str, ...]]:
    """The allowed names of presets, planners, ... (read from the model, the single source of truth)."""
    from agents.planner import PLANNERS
    from agents.prompts import PROMPT_MODES
    from agents.worker import WORKER_MINDS
    from llm.config import BACKENDS
    from model.model import PRESETS, SCENARIOS
    from model.taxes import BRACKET_SETS
    from model.welfare import OBJECTIVES

    return {"preset": tuple(PRESETS), "brackets": tuple(BRACKET_SETS), "planner": (*PLANNERS, "llm"),
            "baseline": tuple(PLANNERS), "worker_mind": tuple(WORKER_MINDS), "scenario": tuple(SCENARIOS),
            "objective": tuple(OBJECTIVES), "prompt_mode": tuple(PROMPT_MODES), "backend": tuple(BACKENDS),
            "executor": EXECUTORS}


# --- value parsers: (field, value, from_flag) -> value --------------------------------------------------------
Parser = Callable[[str, object, bool], object]


def integer(low: int, high: int) -> Parser:
    allowed = f"an integer from {low:,} to {high:,}".replace(",", "_") if high >= 10_000 else \
        f"an integer from {low} to {high}"

    def parse(field, value, from_flag):
        if from_flag and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(field, f"{value!r} is not an integer", allowed) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(field, f"{value!r} is not an integer", allowed)
        if not low <= value <= high:
            raise ConfigError(field, f"{value} is out of range", allowed)
        return value

    return parse


def choice(kind: str) -> Parser:
    def parse(field, value, from_flag):
        allowed = names()[kind]
        if not isinstance(value, str) or value not in allowed:
            raise ConfigError(field, f"unknown {kind.replace('_', ' ')} {value!r}", ", ".join(allowed))
        return value

    return parse


def name_list(kind: str, empty: str | None = None) -> Parser:
    """Comma-separated names (a flag) or a list of names (TOML); ``empty`` is the word for none."""
    def parse(field, value, from_flag):
        allowed = names()[kind]
        words = ", ".join(allowed) + (f" (comma-separated), or {empty}" if empty else " (comma-separated)")
        if isinstance(value, str):
            value = [] if empty and value.strip() == empty else [v.strip() for v in value.split(",")]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(field, f"{value!r} is not a list of names", words)
        if not value and not empty:
            raise ConfigError(field, "no names given", words)
        for item in value:
            if item not in allowed:
                raise ConfigError(field, f"unknown {kind.replace('_', ' ')} {item!r}", words)
        if len(set(value)) != len(value):
            raise ConfigError(field, f"{', '.join(value)} names one twice", words)
        return list(value)

    return parse


def seed_list(field, value, from_flag):
    allowed = "integers from 0 to 2**32 - 1, comma-separated, each once"
    if isinstance(value, str):
        parts = [v.strip() for v in value.split(",")]
        try:
            value = [int(v) for v in parts]
        except ValueError:
            raise ConfigError(field, f"{value!r} is not a list of integers", allowed) from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
        raise ConfigError(field, f"{value!r} is not a non-empty list of integers", allowed)
    if any(not 0 <= v < 2 ** 32 for v in value) or len(set(value)) != len(value):
        raise ConfigError(field, f"{value} has a seed out of range or twice", allowed)
    return list(value)


def text(field, value, from_flag):
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise ConfigError(field, f"{value!r} is not a name", "a non-empty one-line string")
    return value.strip()


def urls(field, value, from_flag):
    from llm.config import check_url
    from llm.errors import LLMConfigError

    allowed = "http(s)://host[:port]/v1, several comma-separated"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, f"{value!r} is not a URL", allowed)
    for url in (u.strip() for u in value.split(",")):
        try:
            check_url(url)
        except LLMConfigError:
            raise ConfigError(field, f"{url!r} is not a valid URL", allowed) from None
        if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
            raise ConfigError(field, "a URL with user:password would be written to the results",
                              "a URL without credentials; keys go in OPENAI_API_KEY or LLM_API_KEY")
    return ",".join(u.strip() for u in value.split(","))


def path(field, value, from_flag):
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(field, f"{value!r} is not a path", "a folder path")
    return value


def address(field, value, from_flag):
    allowed = "tcp://host:port (a running dask scheduler)"
    if not isinstance(value, str) or not re.fullmatch(r"(tcp|tls)://[^\s:/]+:\d{1,5}", value):
        raise ConfigError(field, f"{value!r} is not a scheduler address", allowed)
    return value


def table(field, value, from_flag):
    if from_flag or not isinstance(value, dict):
        raise ConfigError(field, f"{value!r} is not a table", "a TOML table, e.g. {rates = [0.1, 0.2, 0.3]}")
    return value


# --- the options --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    name: str
    parse: Parser
    default: object
    help: str
    metavar: str | None = None
    flag: bool = True          # False: TOML only
    unset: str = "none"        # what a default of None means

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")


GRID_KEYS = ("workers", "steps", "tax_year_length", "preset", "brackets", "planner", "worker_mind", "scenario",
             "objective", "prompt_mode", "archetypes")


def grid(field, value, from_flag):
    """``NAME=V1,V2`` flags (a list of them) or a TOML table ``{NAME = [V1, V2]}``."""
    allowed = f"NAME=V1,V2,... with NAME one of {', '.join(GRID_KEYS)}"
    if from_flag:
        pairs = {}
        for item in value:
            name, sep, values = item.partition("=")
            if not sep or not values.strip():
                raise ConfigError(field, f"{item!r} is not NAME=V1,V2", allowed)
            if name.strip() in pairs:
                raise ConfigError(field, f"{name.strip()} given twice", allowed)
            pairs[name.strip()] = [v.strip() for v in values.split(",")]
        value = pairs
    if not isinstance(value, dict):
        raise ConfigError(field, f"{value!r} is not a table of lists", allowed)
    out = {}
    for name, values in value.items():
        if name not in GRID_KEYS:
            raise ConfigError(field, f"{name!r} cannot be swept", allowed)
        if not isinstance(values, list) or not values:
            raise ConfigError(field, f"{name} = {values!r} is not a non-empty list", allowed)
        parsed = [OPTIONS[name].parse(f"{field} {name}", v, from_flag) for v in values]
        if len(set(map(str, parsed))) != len(parsed):
            raise ConfigError(field, f"{name} lists a value twice", allowed)
        out[name] = parsed
    return out


def _options() -> dict[str, Option]:
    opts = [
        Option("workers", integer(1, 10_000_000), 100, "number of workers"),
        Option("steps", integer(1, 1_000_000), 100, "steps to run"),
        Option("tax_year_length", integer(1, 1_000_000), 25, "steps per tax year (the planner acts once a year)"),
        Option("preset", choice("preset"), "calibrated", "economics preset"),
        Option("brackets", choice("brackets"), None, "bracket set", unset="the preset's"),
        Option("planner", choice("planner"), None, "planner: llm or a baseline", unset="the preset's"),
        Option("worker_mind", choice("worker_mind"), "rational", "how workers decide"),
        Option("scenario", choice("scenario"), "rational", "scenario"),
        Option("objective", choice("objective"), None, "planner objective", unset="the preset's"),
        Option("prompt_mode", choice("prompt_mode"), "improved", "prompt style of LLM minds"),
        Option("archetypes", integer(0, 1_000_000), 0, "LLM workers decide per archetype, K clusters (0 = each)"),
        Option("agent_interval", integer(0, 1_000_000), 1, "collect worker data every N steps (0 = never)"),
        Option("backend", choice("backend"), "auto",
               "LLM backend: auto (LLM_BASE_URL/OPENAI_API_KEY when set, else embedded), openai, embedded"),
        Option("base_url", urls, None, "OpenAI-compatible base URL(s), comma-separated",
               unset="$LLM_BASE_URL"),
        Option("model", text, None, "model name on the LLM server",
               unset="$LLM_MODEL, else the server's first"),
        Option("seed", integer(0, 2 ** 32 - 1), 42, "random seed: same seed, same population and data"),
        Option("out", path, None, "results folder"),
        Option("baselines", name_list("baseline", "none"), ["us_federal", "saez", "oracle", "blackbox"],
               "baseline planners run with rational workers on the same population and seed, or none"),
        Option("planners", name_list("baseline"), ["us_federal", "saez_reference", "saez", "oracle", "blackbox",
                                                   "fixed"], "planners to compare, comma-separated"),
        Option("planner_options", table, None, "keyword arguments of the planner rule (TOML table only)",
               flag=False),
        Option("grid", grid, {}, "a swept parameter: NAME=V1,V2 (repeat for a grid)", metavar="NAME=V1,V2"),
        Option("seeds", seed_list, [1, 2, 3], "seeds of every grid point, comma-separated"),
        Option("executor", choice("executor"), "local", "where sweep runs go: local processes or a dask cluster"),
        Option("scheduler", address, None, "dask scheduler tcp://host:port", unset="a local cluster"),
        Option("jobs", integer(1, 1024), os.cpu_count() or 1, "parallel runs (local processes or cluster workers)"),
        Option("run", path, None, "results folder of the run"),
        Option("host", text, "127.0.0.1", "dashboard host (127.0.0.1 keeps it local)"),
        Option("port", integer(1, 65535), 8765, "dashboard port"),
    ]
    return {o.name: o for o in opts}


OPTIONS = _options()
_LLM = ("backend", "base_url", "model", "prompt_mode", "archetypes")
COMMAND_OPTIONS = {
    "run": ("workers", "steps", "tax_year_length", "preset", "brackets", "planner", "worker_mind", "scenario",
            "objective", "seed", "agent_interval", "baselines", *_LLM, "planner_options", "out"),
    "compare": ("workers", "steps", "tax_year_length", "preset", "brackets", "objective", "seed", "planners",
                "out"),
    "sweep": ("workers", "steps", "tax_year_length", "preset", "brackets", "planner", "worker_mind", "scenario",
              "objective", *_LLM, "planner_options", "grid", "seeds", "executor", "scheduler", "jobs", "out"),
    "replay": ("run",),
    "resume": ("run",),
    "dashboard": ("host", "port"),
}
COMMAND_HELP = {
    "run": "the main job (default): LLM workers and an LLM planner, then the baselines; writes a results folder",
    "compare": "one rational population under several planners, side by side",
    "sweep": "a parameter grid x seeds; writes one tidy parquet table of all runs",
    "replay": "rerun a finished run from its stored responses only (no request is sent)",
    "resume": "continue an interrupted or crashed run: stored responses replay, then it goes live",
    "dashboard": "start the Solara dashboard",
}


# --- command line --------------------------------------------------------------------------------------------------
class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are ConfigErrors (one line, exit 2) instead of usage text."""

    def error(self, message):
        match = re.match(r"argument ([^:]+): (.*)", message)
        if match and match.group(1) == "COMMAND":
            raise ConfigError("command", match.group(2).split(" (choose")[0], ", ".join(COMMANDS))
        if match:
            field = match.group(1).split("/")[-1]
            raise ConfigError(field, match.group(2), f"see `python run.py {self._command()}--help`")
        if message.startswith("unrecognized arguments"):
            raise ConfigError("arguments", message, f"the options of `python run.py {self._command()}--help`")
        raise ConfigError("command", message, ", ".join(COMMANDS))

    def _command(self) -> str:
        parts = self.prog.split()
        return f"{parts[-1]} " if len(parts) > 1 else ""


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "none"
    return "none" if value in (None, {}) else str(value)


def build_parser(defaults: dict[str, dict]) -> argparse.ArgumentParser:
    """``defaults[command][name]`` overrides an option's default for that command."""
    parser = ArgumentParser(prog="run.py", description="The LLM Economist on Mesa: run experiments. With no command, "
                    "`run` (the main job).", epilog="`python run.py COMMAND --help` lists each command's options.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for command in COMMANDS:
        sub = commands.add_parser(command, help=COMMAND_HELP[command], description=COMMAND_HELP[command],
                                  argument_default=argparse.SUPPRESS)
        for name in COMMAND_OPTIONS[command]:
            option = OPTIONS[name]
            if not option.flag:
                continue
            default = defaults.get(command, {}).get(name, option.default)
            shown = _default_out(command) if name == "out" else option.unset if default is None else _shown(default)
            kinds = {"preset": "preset", "brackets": "brackets", "planner": "planner", "worker_mind": "worker_mind",
                     "scenario": "scenario", "objective": "objective", "prompt_mode": "prompt_mode",
                     "backend": "backend", "executor": "executor", "baselines": "baseline", "planners": "baseline"}
            one_of = f"; one of {', '.join(names()[kinds[name]])}" if name in kinds else ""
            if name == "run":
                sub.add_argument(option.flag_name, required=True, help=option.help, metavar="DIR")
                continue
            kwargs = {"action": "append"} if name == "grid" else {}
            sub.add_argument(option.flag_name, help=f"{option.help}{one_of} (default: {shown})",
                             metavar=option.metavar or name.upper(), **kwargs)
        if command not in ("replay", "resume", "dashboard"):
            sub.add_argument("--config", metavar="FILE.toml",
                             help="settings from a TOML file (same names, with underscores); flags win")
    return parser


def _default_out(command: str) -> str:
    return {"run": "results/<preset>-<planner>-seed<seed>", "sweep": "results/sweep",
            "compare": "none (print only)"}.get(command, "none")


def load_toml(file: str, command: str) -> dict:
    p = Path(file)
    if not p.is_file():
        raise ConfigError("--config", f"no such file {file!r}", "a readable TOML file")
    try:
        values = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError("--config", f"cannot read {file!r} ({type(err).__name__})", "a readable TOML file") \
            from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("--config", f"{file} is not valid TOML ({str(err).splitlines()[0]})",
                          "a TOML file of name = value lines") from None
    allowed = [n for n in COMMAND_OPTIONS[command] if n not in ("run",)]
    for key in values:
        if key not in allowed:
            where = "unknown key" if key not in OPTIONS and key != "config" else f"not a setting of `{command}`"
            raise ConfigError(f"{file}: {key}", where, ", ".join(allowed))
    return values


def resolve(argv: list[str], defaults: dict[str, dict]) -> tuple[str, dict]:
    """Parse and validate a command line: ``(command, settings)``; raises ConfigError."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    namespace = vars(build_parser(defaults).parse_args(argv))
    command = namespace.pop("command")
    file = namespace.pop("config", None)
    from_file = load_toml(file, command) if file is not None else {}
    settings = {}
    for name in COMMAND_OPTIONS[command]:
        option = OPTIONS[name]
        if name in namespace:
            settings[name] = option.parse(option.flag_name, namespace[name], True)
        elif name in from_file:
            settings[name] = option.parse(f"{name} ({file})", from_file[name], False)
        else:
            default = defaults.get(command, {}).get(name, option.default)
            settings[name] = default if default is None else option.parse(option.flag_name, default, False)
    check(command, settings)
    return command, settings


# --- checks across settings -------------------------------------------------------------------------------------
def statutory(brackets: str | None, preset: str) -> bool:
    from model.model import PRESET_DEFAULTS
    from model.taxes import bracket_set

    return bracket_set(brackets or PRESET_DEFAULTS[preset]["brackets"]).statutory


def check_model(s: dict, where: str = "") -> None:
    """Cross-setting rules of one model run (``where`` names a sweep point)."""
    if s["scenario"] == "bounded" and s["worker_mind"] != "llm":
        raise ConfigError(f"--scenario{where}", "'bounded' needs LLM workers (personas judge the policy)",
                          "--worker-mind llm, or scenario rational or democratic")
    if s.get("archetypes", 0) > s["workers"]:
        raise ConfigError(f"--archetypes{where}", f"{s['archetypes']} is more than --workers {s['workers']}",
                          "0 (off) to --workers")
    if s.get("planner") == "us_federal" and s["scenario"] != "democratic" and not statutory(s["brackets"],
                                                                                            s["preset"]):
        raise ConfigError(f"--planner{where}", "'us_federal' needs US brackets",
                          "--brackets us_2024_single or us_2025_single, or another planner")


def check(command: str, s: dict) -> None:
    if command == "run":
        s["planner"] = s["planner"] or "llm"
        check_model(s)
        s["out"] = s["out"] or f"results/{s['preset']}-{s['planner']}-seed{s['seed']}"
        check_out("--out", Path(s["out"]))
    elif command == "compare":
        if s["out"] is not None:
            check_out("--out", Path(s["out"]))
    elif command == "sweep":
        if s["scheduler"] is not None and s["executor"] != "dask":
            raise ConfigError("--scheduler", "is only used with --executor dask", "--executor dask, or no --scheduler")
        points = sweep_points(s)
        if len(points) * len(s["seeds"]) > MAX_RUNS:
            raise ConfigError("--grid", f"{len(points) * len(s['seeds'])} runs", f"at most {MAX_RUNS} runs")
        for point in points:
            where = "" if not s["grid"] else " (grid point " + ", ".join(f"{k}={point[k]}" for k in s["grid"]) + ")"
            check_model(point, where)
        s["out"] = s["out"] or "results/sweep"
        check_out("--out", Path(s["out"]))
    elif command in ("replay", "resume"):
        s["run"] = str(run_folder(s["run"], command))


def sweep_points(s: dict) -> list[dict]:
    """The settings of every grid point (seeds not included), in a fixed order."""
    keys = list(s["grid"])
    return [dict(s, **dict(zip(keys, values))) for values in itertools.product(*(s["grid"][k] for k in keys))]


def partial_dir(out: Path) -> Path:
    """Where a run writes until it finishes (then renamed to ``out``)."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def check_out(field: str, out: Path) -> None:
    """``out`` can be created or replaced: a new folder, or an earlier run's results, in a writable place."""
    if out.name in ("", ".", "..") or out.name.endswith(PARTIAL_SUFFIX):
        raise ConfigError(field, f"{str(out)!r} is not a folder name", f"a folder name not ending in {PARTIAL_SUFFIX}")
    if out.exists() and not out.is_dir():
        raise ConfigError(field, f"{out} is a file", "a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise ConfigError(field, f"{out} holds files that are not results of run.py",
                          "a new folder, or the folder of an earlier run to replace")
    partial = partial_dir(out)
    if partial.exists():
        raise ConfigError(field, f"an interrupted run is in {partial}",
                          f"`python run.py resume --run {out}`, or remove {partial} first")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(field, f"{parent} is not a folder", "a path whose parents are folders")
    try:
        handle, probe = tempfile.mkstemp(prefix=".run-py-write-test-", dir=parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(field, f"cannot write in {parent} ({err.strerror})", "a folder you can write to") from None


def run_folder(value: str, command: str) -> Path:
    """The final folder of the run named by ``--run`` (DIR or DIR.partial), checked for ``command``."""
    given = Path(value)
    out = given.with_name(given.name[: -len(PARTIAL_SUFFIX)]) if given.name.endswith(PARTIAL_SUFFIX) else given
    partial = partial_dir(out)
    if command == "resume":
        if (partial / "config.json").is_file():
            return out
        if (out / "config.json").is_file():
            raise ConfigError("--run", f"{out} has finished; nothing to resume",
                              "the folder of an interrupted run (use replay to rerun a finished one)")
        raise ConfigError("--run", f"no interrupted run at {value}", "the folder an interrupted run printed")
    if not (out / "config.json").is_file():
        raise ConfigError("--run", f"no finished run at {value} (no config.json)", "a results folder of run.py")
    if partial.exists():
        raise ConfigError("--run", f"{partial} exists (an interrupted run)", f"resume it first, or remove {partial}")
    return out
