"""The model's LLM parameters: settings of the LLM layer (:class:`llm_runtime.config.LLMConfig`) under the model's
names, declared there once, and the client they make.

A parameter left None takes its setting's ``LLM_*`` variable, else the setting's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from llm_runtime.config import LLMConfig
from validation import ParameterError, allowed

LLM_PARAMETERS = {"backend": "backend", "base_url": "base_urls", "llm_model": "model", "llm_store": "store_path",
                  "llm_store_mode": "store_mode", "llm_concurrency": "concurrency"}
"""Model parameter -> the LLM setting it sets."""


def llm_parameter(name: str) -> Any:
    """The type of model parameter ``name``: its setting's declaration, or None for the setting's variable."""
    setting = LLM_PARAMETERS[name]
    info = LLMConfig.model_fields[setting]
    default = "the server's first" if setting == "model" else info.default
    default = ",".join(default) if isinstance(default, tuple) else default
    about = f"{info.description} (default: ${info.validation_alias}" + \
        (f", else {default})" if default not in (None, "", ()) else ")")
    # several URLs stay one comma-separated text, as a flag gives them: a value for results tables and config.json
    joined = (AfterValidator(",".join),) if setting == "base_urls" else ()
    return Annotated[Annotated[info.annotation, *info.metadata, *joined] | None,
                     Field(description=about, json_schema_extra={"allowed": allowed(LLMConfig, setting)})]


def llm_settings(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The LLM settings that model parameters give (those absent or None are not given)."""
    return {setting: parameters[name] for name, setting in LLM_PARAMETERS.items()
            if parameters.get(name) is not None}


def as_parameter_error(error: ParameterError) -> ParameterError:
    """An LLM setting's error under the model parameter's name (``model`` -> ``llm_model``), its variable kept."""
    setting, _, variable = error.field.partition(" ")
    names = {setting: name for name, setting in LLM_PARAMETERS.items()}
    if setting not in names:
        return error
    return ParameterError(" ".join(filter(None, (names[setting], variable))), error.problem, error.allowed)


def llm_client(params):
    """The LLM client the parameters describe (``backend``, ``base_url``, ``llm_model``, store, concurrency)."""
    from llm_runtime import LLMClient

    if params.llm_store:
        Path(params.llm_store).parent.mkdir(parents=True, exist_ok=True)
    try:
        return LLMClient(LLMConfig(**llm_settings(dict(params))))
    except ParameterError as error:
        raise as_parameter_error(error) from None
