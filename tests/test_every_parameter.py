"""Every model parameter is reachable from run.py the same way: a flag, a TOML key and a --grid name, under one
name, reaching the model's keyword arguments under its parameter name; the ones left out are named."""

from __future__ import annotations

import json

import pytest

import run
from experiments import sweep
from experiments.cli import (COMMA_LISTS, COMMAND_OPTIONS, NOT_SETTINGS, NOT_SWEPT, TOML_ONLY, default_of,
                             flag, option_help)
from experiments.config import resolve
from experiments.runner import model_kwargs
from model.params import EconomyParams
from validation import ParameterError

# A valid value of each parameter, other than its default (and settings it needs beside it). A parameter added
# to EconomyParams fails the walk below until it is given one here, or is named in NOT_SETTINGS.
VALUES = {
    "workers": 7, "preset": "paper", "brackets": "three", "planner": "saez", "worker_mind": "rational_agent",
    "tax_year_length": 3, "objective": "rawlsian", "max_steps": 9, "agent_interval": 2, "population": "paper_gb2",
    "initial_rates": [0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4], "planner_options": {"sigma": 0.2}, "hours_grid": 5.0,
    "standard_deduction": False, "eta": 2.0, "frisch": 0.5, "scenario_name": "democratic",
    "network": "watts_strogatz", "binding_platforms": True, "conformity": 0.5, "candidates": 3,
    "backend": "embedded", "base_url": "http://127.0.0.1:9/v1", "llm_model": "some-model", "prompt_mode": "paper",
    "history_length": 3, "archetypes": 2, "llm_concurrency": 7,
}
BESIDE = {"planner_options": {"planner": "blackbox"}, "brackets": {"planner": "fixed"},
          "initial_rates": {"planner": "fixed"}}
WALKED = [field for field in EconomyParams.model_fields if field not in NOT_SETTINGS]


def beside(field: str) -> list[str]:
    return [arg for key, item in BESIDE.get(field, {}).items() for arg in (flag(key), text(item))]


def text(value) -> str:
    """A value as a flag gives it."""
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def toml(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(toml, value)) + "]"
    return json.dumps(value)  # strings, numbers and booleans are written alike in JSON and TOML


def reached(settings: dict) -> dict:
    """The model's keyword arguments for a run's settings, as `run` builds them."""
    return model_kwargs(settings, seed=settings["seed"], run_id="run", store="responses.sqlite",
                        agent_interval=settings["agent_interval"])


def test_the_walk_covers_every_parameter():
    assert set(NOT_SETTINGS) <= set(EconomyParams.model_fields)  # no stale name among those left out
    assert set(WALKED) == set(VALUES), "give the new parameter a value in VALUES, or name it in NOT_SETTINGS"
    for field in WALKED:  # each value differs from every default, so that reaching the model means something
        name = field
        defaults = {EconomyParams.model_fields[field].default, *(str(default_of(name, run.DEFAULTS.get(command, {})))
                                                                 for command in ("run", "sweep"))}
        assert str(VALUES[field]) not in map(str, defaults), field


@pytest.mark.parametrize("field", WALKED)
def test_a_flag_and_a_toml_key_reach_the_model_under_the_parameters_name(field, tmp_path):
    name, value = field, VALUES[field]
    given = [] if field in TOML_ONLY else [flag(name), text(value)]
    (tmp_path / "c.toml").write_text(f"{name} = {toml(value)}\n", encoding="utf-8")
    for argv in (given, ["--config", str(tmp_path / "c.toml")]):
        if not argv:
            continue
        _, settings = resolve(["run", *beside(field), *argv, "--out", str(tmp_path / "out")], run.DEFAULTS)
        assert settings[name] == value
        assert reached(settings)[field] == value, argv
    if field not in TOML_ONLY:  # and --help shows it
        assert name in option_help("run", run.DEFAULTS)


@pytest.mark.parametrize("field", [f for f in WALKED if f not in TOML_ONLY and f not in NOT_SWEPT])
def test_a_grid_name_reaches_each_runs_model(field, tmp_path):
    name, value = field, VALUES[field]
    (tmp_path / "g.toml").write_text(f"[grid]\n{name} = [{toml(value)}]\n", encoding="utf-8")
    ways = [["--config", str(tmp_path / "g.toml")]]
    if name not in COMMA_LISTS:
        ways.append(["--grid", f"{name}={text(value)}"])
    for argv in ways:
        _, settings = resolve(["sweep", *beside(field), *argv, "--seeds", "1", "--out", str(tmp_path / "out")], run.DEFAULTS)
        assert settings["grid"] == {name: [value]}
        [task] = sweep.tasks(settings, tmp_path / "responses.sqlite")
        assert task["kwargs"][field] == value and task["params"] == {name: value}, argv


@pytest.mark.parametrize("field", list(NOT_SETTINGS))
def test_the_parameters_left_out_are_refused_by_name(field, tmp_path):
    (tmp_path / "c.toml").write_text(f"{field} = \"x\"\n", encoding="utf-8")
    for argv, named in (([flag(field), "x"], "arguments"), (["--config", str(tmp_path / "c.toml")], "unknown key"),
                        (["--grid", f"{field}=x"], "--grid")):
        command = "sweep" if argv[0] == "--grid" else "run"
        with pytest.raises(ParameterError) as refused:
            resolve([command, *argv, "--out", str(tmp_path / "out")], run.DEFAULTS)
        assert named in str(refused.value) and "\n" not in str(refused.value)
    assert field not in {name for names in COMMAND_OPTIONS.values() for name in names}


def test_a_list_in_a_grid_flag_points_to_the_toml_table(tmp_path, capsys):
    assert run.main(["sweep", "--grid", "initial_rates=0.1,0.2", "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("run.py: error: --grid: initial_rates") and "[grid] table" in line


@pytest.mark.parametrize(("argv", "named"), [
    (["--eta", "0"], "--eta: "), (["--conformity", "2"], "--conformity: "), (["--network", "ring"], "--network: "),
    (["--standard-deduction", "maybe"], "--standard-deduction: "), (["--initial-rates", "0.1,0.2"], "--initial-rates: "),
    (["--hours-grid", "0.01"], "--hours-grid: "), (["--llm-concurrency", "0"], "--llm-concurrency: "),
    (["--candidates", "0"], "--candidates: "), (["--population", "mars"], "--population: "),
])
def test_a_bad_value_is_named_by_its_flag(argv, named, tmp_path, capsys):
    assert run.main(["run", *argv, "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"run.py: error: {named}") and "; allowed: " in line and "\n" not in line
    assert not (tmp_path / "out").exists()


def test_the_baselines_run_on_the_runs_own_economy(tmp_path):
    from experiments.runner import baseline_kwargs

    argv = ["run", "--population", "paper_gb2", "--eta", "2", "--frisch", "0.5", "--hours-grid", "1",
            "--standard-deduction", "false", "--worker-mind", "rational", "--planner", "us_federal",
            "--out", str(tmp_path / "out")]
    _, s = resolve(argv, run.DEFAULTS)
    kwargs = baseline_kwargs(s, "saez")
    assert (kwargs["population"], kwargs["eta"], kwargs["frisch"], kwargs["hours_grid"],
            kwargs["standard_deduction"]) == ("paper_gb2", 2.0, 0.5, 1.0, False)
    assert kwargs["planner"] == "saez" and kwargs["rng"] == s["seed"]
