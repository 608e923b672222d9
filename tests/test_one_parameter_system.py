"""Parameters are declared once: the LLM settings with pydantic-settings, the model's LLM parameters from them,
one error class and format everywhere, one URL check, one redactor, the dashboard's defaults from its model."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from agents.llm_settings import LLM_PARAMETERS
from llm_runtime.config import LLMConfig
from model.params import EconomyParams
from validation import ParameterError, allowed, validate
from visualization.parameters import CONTROLS, DEFAULTS, UNSET, DashboardEconomy, DashboardParams

ROOT = Path(__file__).parent.parent
RUNTIME = [path for package in ("registry.py", "validation.py", "public_finance", "calibration", "llm_runtime",
                                "agents", "model", "experiments", "visualization", "run.py")
           for path in ([ROOT / package] if package.endswith(".py") else sorted((ROOT / package).rglob("*.py")))]


def definitions(kind: type) -> list[str]:
    """Names of the project's classes and functions of ``kind`` (ast node type), with their module."""
    return [f"{path.relative_to(ROOT)}:{node.name}" for path in RUNTIME
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, kind)]


def test_one_error_class_for_bad_parameters_and_settings():
    errors = [name for name in definitions(ast.ClassDef) if name.endswith(("ConfigError", "ParameterError"))]
    assert errors == ["validation.py:ParameterError"]


@pytest.mark.parametrize("build", [lambda: LLMConfig(concurrency=0), lambda: validate(EconomyParams, {"workers": 0}),
                                   lambda: validate(EconomyParams, {"llm_concurrency": 0})])
def test_settings_and_parameters_fail_in_one_format(build):
    with pytest.raises(ParameterError) as info:
        build()
    field, _, rest = str(info.value).partition(": ")
    assert field in ("concurrency", "workers", "llm_concurrency") and "; allowed: an integer >= 1 and <= " in rest


def test_one_url_check_and_one_redactor():
    functions = definitions(ast.FunctionDef)
    assert {f for f in functions if f.endswith(("check_url", "_base_urls", "_checked_urls"))} == \
        {"llm_runtime/config.py:check_url", "llm_runtime/config.py:_checked_urls"}
    assert {f for f in functions if "redact" in f.lower() or "credentials" in f.lower()} == \
        {"llm_runtime/config.py:redact_url", "llm_runtime/config.py:redact"}


@pytest.mark.parametrize("parameter", sorted(LLM_PARAMETERS))
def test_the_models_llm_parameters_are_the_llm_settings(parameter):
    setting = LLM_PARAMETERS[parameter]
    assert allowed(EconomyParams, parameter) == allowed(LLMConfig, setting)
    assert EconomyParams.model_fields[parameter].default is None  # None: the setting's variable, else its default
    assert f"${LLMConfig.variable(setting)}" in EconomyParams.model_fields[parameter].description


def test_every_llm_setting_is_read_from_the_environment_by_pydantic_settings(monkeypatch):
    for name in LLMConfig.model_fields:
        monkeypatch.delenv(LLMConfig.variable(name), raising=False)
    monkeypatch.setenv("LLM_MAX_REASKS", "5")
    assert LLMConfig().max_reasks == 5 and LLMConfig(max_reasks=1).max_reasks == 1


def test_the_dashboards_defaults_are_its_parameter_models():
    for name, control in CONTROLS.items():
        if name == "rng":
            continue
        default = DashboardParams.model_fields[name].default
        assert str(control["value"]) == str(UNSET[name] if default is None else default), name
    signature = inspect.signature(DashboardEconomy.__init__).parameters
    assert {name: signature[name].default for name in CONTROLS} == DEFAULTS
