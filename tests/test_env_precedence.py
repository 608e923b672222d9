"""The README's environment variables, read from its own table: each wins over its default (the one the README
states) and loses to the model argument or flag that sets the same thing. No request is sent: only settings are
built (LLMClient is replaced by a stand-in that returns the configuration it was given)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import llm_runtime
import run
from agents.llm_settings import llm_client
from experiments.cli import COMMAND_OPTIONS, flag
from experiments.config import resolve
from experiments.runner import model_kwargs
from agents.llm_settings import LLM_PARAMETERS
from llm_runtime.config import API_KEY_ENV, LLMConfig, resolve_backend, server_named
from model.params import EconomyParams
from validation import ParameterError, validate

ROOT = Path(__file__).parent.parent
LOOPBACK, OTHER_LOOPBACK = "http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1"


def readme_variables() -> dict[str, str]:
    """Each variable of the README's table, with its row's default cell."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("\n### Environment variables\n", 1)[1].split("\n#", 1)[0]
    found = {}
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            found[name] = cells[2]
    return found


VARIABLES = readme_variables()
FIELD = {LLMConfig.variable(field): field for field in LLMConfig.model_fields}
# For each LLMConfig field read from a variable: (the variable's text, the value it gives, a keyword's value)
SAMPLES = {
    "backend": ("embedded", "embedded", "openai"),
    "base_urls": (LOOPBACK, (LOOPBACK,), (OTHER_LOOPBACK,)),
    "model": ("env-model", "env-model", "keyword-model"),
    "concurrency": ("3", 3, 7),
    "timeout_s": ("12.5", 12.5, 30.0),
    "max_retries": ("5", 5, 0),
    "deadline_s": ("100", 100.0, 50.0),
    "max_answer_bytes": ("2048", 2048, 4096),
    "rate_limit_wait_s": ("60", 60.0, 30.0),
    "store_path": ("env/answers.sqlite", "env/answers.sqlite", "keyword/answers.sqlite"),
    "store_mode": ("replay", "replay", "off"),
    "embedded_model_path": ("/models/env.gguf", "/models/env.gguf", "/models/keyword.gguf"),
    "embedded_slots": ("2", 2, 3),
    "embedded_threads": ("2", 2, 1),
    "embedded_ctx_per_slot": ("4096", 4096, 2048),
    "max_reasks": ("0", 0, 1),
    "temperature": ("0.7", 0.7, 0.2),
    "seed": ("7", 7, 9),
    "max_tokens": ("64", 64, 32),
    "connect_timeout_s": ("2.5", 2.5, 1.0),
    "check_server": ("false", False, True),
}
# LLMConfig fields that are also model parameters (EconomyParams), and so flags where run.py has them
PARAMETER = {setting: parameter for parameter, setting in LLM_PARAMETERS.items()}


@pytest.fixture
def clean_env(monkeypatch):
    """No LLM variable or key from the machine running the tests."""
    for name in [*FIELD, *API_KEY_ENV]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(llm_runtime, "LLMClient", lambda config: config)  # llm_client returns its configuration
    return monkeypatch


def keyword(field: str, value):
    return ",".join(value) if field == "base_urls" else value


def test_the_readme_lists_every_variable_the_llm_layer_reads():
    assert set(VARIABLES) == set(FIELD) | set(API_KEY_ENV)
    assert set(SAMPLES) == set(LLMConfig.model_fields), "give the new setting a sample above"


@pytest.mark.parametrize("variable", sorted(set(VARIABLES) & set(FIELD)))
def test_a_variable_wins_over_its_default_and_loses_to_a_keyword(variable, clean_env):
    field = FIELD[variable]
    given, value, other = SAMPLES[field]
    default = getattr(LLMConfig(), field)
    assert value != default and other != value
    clean_env.setenv(variable, given)
    assert getattr(LLMConfig(), field) == value
    assert getattr(LLMConfig(**{field: keyword(field, other)}), field) == other
    if default not in (None, ()):  # the README states the default the code has
        shown = VARIABLES[variable].replace(",", "")
        written = f"`{default}`" if isinstance(default, str) else f"`{str(default).lower()}`" \
            if isinstance(default, bool) else str(default) if isinstance(default, int) else f"{default:g}"
        assert written in (shown if isinstance(default, str) else shown.split()), (variable, shown, default)


@pytest.mark.parametrize("variable", sorted(v for v in VARIABLES if FIELD.get(v) in PARAMETER))
def test_a_variable_wins_over_the_models_default_and_loses_to_its_argument(variable, clean_env, tmp_path):
    field = FIELD[variable]
    parameter = PARAMETER[field]
    given, value, other = SAMPLES[field]
    clean_env.chdir(tmp_path)
    clean_env.setenv(variable, given)
    assert getattr(llm_client(validate(EconomyParams, {})), field) == value
    argument = keyword(field, other)
    assert getattr(llm_client(validate(EconomyParams, {parameter: argument})), field) == other


@pytest.mark.parametrize("variable", sorted(v for v in VARIABLES if FIELD.get(v) in PARAMETER))
def test_run_py_a_flag_wins_over_a_variable_and_its_own_store_over_both(variable, clean_env, tmp_path):
    field = FIELD[variable]
    given, value, other = SAMPLES[field]
    name = PARAMETER[field]
    small = ["run", "--worker-mind", "rational", "--planner", "us_federal", "--baselines", "none"]
    store = str(tmp_path / "run" / "responses.sqlite")

    def client_of(argv: list[str]) -> LLMConfig:
        _, settings = resolve([*small, *argv, "--out", str(tmp_path / f"out{len(argv)}")], run.DEFAULTS)
        kwargs = model_kwargs(settings, seed=1, run_id="run", store=store)  # as `run` builds its model
        return llm_client(validate(EconomyParams, {k: v for k, v in kwargs.items() if k != "rng"}))

    clean_env.setenv(variable, given)
    if name in COMMAND_OPTIONS["run"]:
        assert getattr(client_of([]), field) == value
        assert getattr(client_of([flag(name), str(keyword(field, other))]), field) == other
    elif name == "llm_store":  # a run's answers are always recorded in its results folder
        config = client_of([])
        assert (config.store_path, config.store_mode) == (store, "record")
    else:  # and a mode other than record is refused, by the variable's name
        assert name == "llm_store_mode"
        with pytest.raises(ParameterError) as refused:
            client_of([])
        assert str(refused.value).startswith(f"{variable}: ")


@pytest.mark.parametrize("variable", sorted(set(VARIABLES) & set(API_KEY_ENV)))
def test_a_key_names_a_server_and_an_explicit_backend_wins(variable, clean_env):
    config = LLMConfig(base_urls=(LOOPBACK,), model="m")
    assert resolve_backend(config, env={}).api_key == "not-needed"
    assert resolve_backend(config, env={variable: "secret-key-123"}).api_key == "secret-key-123"
    assert not server_named(LLMConfig(), env={}) and server_named(LLMConfig(), env={variable: "secret-key-123"})
    assert not server_named(LLMConfig(backend="embedded"), env={variable: "secret-key-123"})
