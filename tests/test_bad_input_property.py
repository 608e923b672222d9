"""Property: any keywords or flags give a valid model (or settings) or one line naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import run
from experiments.cli import COMMAND_OPTIONS, flag
from experiments.config import resolve
from model.model import EconomyModel
from model.params import EconomyParams
from validation import ParameterError, validate

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**13, 10**13), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["llm", "oracle", "paper", "three", "bounded", "democratic", "record",
                                          "rational_agent", "http://127.0.0.1:1/v1", "http://u:p@h/v1", "0.5"]),
    st.lists(st.floats(-1, 2), max_size=8), st.dictionaries(st.sampled_from(["rates", "sigma", "bogus"]),
                                                            st.floats(-2, 2), max_size=2))
NAMES = st.sampled_from([*EconomyParams.model_fields, "colour"])


class Unreachable:
    """An in-process LLM client whose every request fails (counted; workers and planner keep their choices)."""

    def run_batch(self, requests):
        from llm_runtime import Failure, FailureKind, LLMResult

        return [LLMResult(key=r.key, value=None, failure=Failure(FailureKind.CONNECTION, "offline"))
                for r in requests]


def one_line_naming(error: ParameterError, given: set[str]) -> bool:
    text = str(error)
    names = given | ({"rates"} if "initial_rates" in given else set())  # the schedule names its rates
    return "\n" not in text and "; allowed: " in text and any(name in text for name in names)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, VALUES, max_size=3))
def test_model_keywords_build_a_model_or_name_the_field(kwargs):
    try:
        params = validate(EconomyParams, dict(kwargs))
    except ParameterError as error:
        assert one_line_naming(error, set(kwargs)), (kwargs, str(error))
        return
    if params.workers > 300 or params.planner in ("oracle", "oracle_sample", "saez") or params.skills is not None:
        return  # valid, but too large or slow to build here
    try:
        model = EconomyModel(**kwargs, llm=Unreachable() if params.needs_llm else None, rng=1)
    except ParameterError as error:  # checks that need the population (e.g. archetypes vs its size)
        assert one_line_naming(error, set(kwargs)), (kwargs, str(error))
        return
    built[0] += 1
    model.step()
    assert np.isfinite(model.objective) or params.objective == "rawlsian"


built = [0]


def test_the_property_built_models():
    """Run after the property: some of its examples were valid models (the test exercises both sides)."""
    assert built[0] > 0


FLAGS = sorted({name for names in COMMAND_OPTIONS.values() for name in names} - {"planner_options"})


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["run", "compare", "sweep", "replay", "resume", "dashboard"]),
       st.lists(st.tuples(st.sampled_from(FLAGS), st.one_of(st.text(max_size=12), st.integers(-5, 10**9).map(str),
                                                             st.sampled_from(["none", "saez,saez", "a=1", "llm"]))),
                max_size=3))
def test_flags_give_settings_or_one_line_naming_the_flag(command, pairs):
    argv = [command]
    for name, value in pairs:
        argv += [flag(name), value]
    try:
        resolve(argv, run.DEFAULTS)
    except ParameterError as error:
        text = str(error)
        assert "\n" not in text and "; allowed: " in text, text
        named = {flag(name) for name, _ in pairs} | {"arguments", "--run", "--out", "command"}
        assert any(text.startswith(f) or f in text for f in named), (argv, text)
    except SystemExit as stop:  # a value that is -h or --help (or its prefix) where an option may start asks for help
        assert stop.code == 0 and any(word == "-h" or len(word) > 2 and "--help".startswith(word)
                                      for word in argv), argv


# Inputs that once gave a traceback or a silent exit: each exits 2 with one line naming its field, and writes
# nothing. (name, argv with {tmp} for the test's folder, the field, what else the line names; plugin files
# are written first from PLUGINS)
SMALL = ["--worker-mind", "rational", "--planner", "us_federal", "--baselines", "none", "--workers", "20",
         "--steps", "3", "--tax-year-length", "1"]
LONG = "a" * 300
PLUGINS = {"exits.py": "import sys\nsys.exit(0)\n", "system_exit.py": "raise SystemExit(0)\n",
           "interrupts.py": "raise KeyboardInterrupt\n", "base_exception.py": "raise BaseException('x')\n",
           "planner_42.py": "from agents.planner import PLANNERS\nPLANNERS.register('x', 42)\n",
           "mind_42.py": "from agents.worker import WORKER_MINDS\nWORKER_MINDS.register('y')(42)\n"}
BAD_INPUTS = [
    ("long --out", ["run", *SMALL, "--out", f"{{tmp}}/{LONG}"], "--out", "300 bytes"),
    ("long --out with .partial", ["run", *SMALL, "--out", f"{{tmp}}/{'a' * 250}"], "--out", "250 bytes"),
    ("--out longer than a run id", ["run", *SMALL, "--out", f"{{tmp}}/{'a' * 201}"], "--out", "at most 200"),
    ("long --out of compare", ["compare", "--out", f"{{tmp}}/{'a' * 250}"], "--out", "250 bytes"),
    ("long folder in --out", ["sweep", "--out", f"{{tmp}}/{LONG}/sweep"], "--out", "300 bytes"),
    ("long --run of replay", ["replay", "--run", f"{{tmp}}/{LONG}"], "--run", "300 bytes"),
    ("long --run of resume", ["resume", "--run", f"{{tmp}}/{LONG}.partial"], "--run", "300 bytes"),
    ("long --plugin", ["run", *SMALL, "--plugin", f"{{tmp}}/{LONG}.py", "--out", "{tmp}/out"], "--plugin",
     "cannot be read"),
    ("newline in --base-url", ["run", "--base-url", "http://127.0.0.1:1/v\n1", "--out", "{tmp}/out"], "--base-url",
     "line break"),
    ("tab in --base-url", ["run", "--base-url", "http://127.0.0.1:1/v1\t", "--out", "{tmp}/out"], "--base-url",
     "control character"),
    *[(f"plugin {name}", ["run", *SMALL, "--plugin", f"{{tmp}}/{name}", "--out", "{tmp}/out"], "--plugin",
       f"{{tmp}}/{name} failed to load") for name in PLUGINS],
]
# the LLM layer's settings from the environment: checked before any work, named by their variable
BAD_ENVIRONMENT = [
    ("LLM_TIMEOUT", "inf", "timeout_s ($LLM_TIMEOUT)", "a finite number of seconds"),
    ("LLM_TIMEOUT", "nan", "timeout_s ($LLM_TIMEOUT)", "a finite number of seconds"),
    ("LLM_TIMEOUT", "1e400", "timeout_s ($LLM_TIMEOUT)", "a finite number of seconds"),
    ("LLM_TIMEOUT", "soon", "timeout_s ($LLM_TIMEOUT)", "a finite number of seconds"),
    ("LLM_DEADLINE", "-1", "deadline_s ($LLM_DEADLINE)", "a finite number of seconds"),
    ("LLM_RATE_LIMIT_WAIT", "inf", "rate_limit_wait_s ($LLM_RATE_LIMIT_WAIT)", "a finite number of seconds"),
    ("LLM_MAX_ANSWER_BYTES", "10", "max_answer_bytes ($LLM_MAX_ANSWER_BYTES)", "an integer >= 1024"),
    ("LLM_BACKEND", "bogus", "backend ($LLM_BACKEND)", "auto, openai, embedded"),
    ("LLM_BASE_URL", "http://127.0.0.1:1/v1\nx", "base_url ($LLM_BASE_URL)", "line break"),
    ("LLM_BASE_URL", "http://127.0.0.1:1/v1/sk-abcdefghijklmnopqrstu", "base_url ($LLM_BASE_URL)", "looks like a key"),
    ("LLM_STORE_MODE", "replay", "LLM_STORE_MODE", "record (or unset)"),
]


@pytest.mark.parametrize(("variable", "value", "field", "allowed"), BAD_ENVIRONMENT,
                         ids=[f"{v}={x!r}" for v, x, _, _ in BAD_ENVIRONMENT])
def test_a_bad_llm_variable_exits_2_with_one_line_naming_it(variable, value, field, allowed, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setenv(variable, value)
    assert run.main(["run", "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"run.py: error: {field}: "), captured.err
    assert allowed in lines[0] and "; allowed: " in lines[0]
    assert not list(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize(("argv", "field", "names"), [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_naming_its_field(argv, field, names, tmp_path, capsys):
    for name, code in PLUGINS.items():
        (tmp_path / name).write_text(code)
    written = sorted(tmp_path.iterdir())
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert run.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"run.py: error: {field}: "), captured.err
    assert names.replace("{tmp}", str(tmp_path)) in lines[0] and "; allowed: " in lines[0], lines[0]
    assert captured.out == "" and sorted(tmp_path.iterdir()) == written  # nothing was written


@pytest.mark.parametrize("rng", ["42", -1, True, 4.0, [1, 2]])
def test_a_bad_rng_names_rng(rng):
    with pytest.raises(ParameterError) as raised:
        EconomyModel(workers=10, rng=rng)
    assert str(raised.value).startswith("rng: ") and "an integer seed >= 0" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_seeds_the_model_takes():
    draws = {EconomyModel(workers=10, rng=rng).rng.random() for rng in (7, np.int64(7))}
    assert len(draws) == 1
    for rng in (None, np.random.default_rng(7), np.random.SeedSequence(7), np.random.PCG64(7)):
        EconomyModel(workers=10, rng=rng)
