"""The dashboard's controls and the model they build.

:class:`DashboardEconomy` is an :class:`~model.model.EconomyModel` built from the raw
values of the dashboard's controls (text fields arrive as strings). Invalid values do not
raise: the model keeps the defaults, records ``input_error`` (naming the field and the
allowed values) and stops running, so the page shows the message and keeps serving.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.network import NETWORKS
from agents.planner import PLANNERS
from agents.worker import WORKER_MINDS
from llm_runtime.config import BACKENDS
from model.model import EconomyModel
from model.params import PRESETS, EconomyParams
from model.scenarios import SCENARIOS
from public_finance.taxes import BRACKET_SETS
from public_finance.welfare import OBJECTIVES
from validation import validate
from visualization import lifecycle
from visualization.baselines import ORACLE_MAX_EVALUATIONS

PRESET_DEFAULT = "preset default"
SCENARIO_DEFAULT = "scenario default"
SEED = 42
MAX_WORKERS = 10_000


def _declared(name: str):
    """The type of model parameter ``name``, as :class:`EconomyParams` declares it."""
    info = EconomyParams.model_fields[name]
    return Annotated[info.annotation, *info.metadata]


class DashboardParams(EconomyParams):
    """The model's parameters, with the sizes a browser session can show, and the defaults of an economy that moves
    when played: the black-box planner tries new rates at the end of each 5-step tax year."""

    workers: Annotated[int, Field(ge=2, le=MAX_WORKERS, json_schema_extra={
        "allowed": f"a whole number from 2 to {MAX_WORKERS}"})] = 100
    planner: _declared("planner") = "blackbox"
    tax_year_length: Annotated[int, Field(ge=1, le=10_000)] = 5
    max_steps: Annotated[int, Field(ge=1, le=100_000)] = 100


# what a control shows for a parameter left to its default elsewhere (the preset, the scenario, the environment)
UNSET = {"brackets": PRESET_DEFAULT, "planner": PRESET_DEFAULT, "objective": PRESET_DEFAULT,
         "network": SCENARIO_DEFAULT, "backend": "auto"}


def _value(name: str):
    default = DashboardParams.model_fields[name].default
    return UNSET[name] if default is None else default


def _select(name: str, label: str, values) -> dict:
    return {"type": "Select", "value": _value(name), "values": list(values), "label": label}


CONTROLS = {
    "workers": {"type": "InputText", "value": str(_value("workers")), "label": f"Workers (2-{MAX_WORKERS})"},
    "preset": _select("preset", "Preset", PRESETS),
    "brackets": _select("brackets", "Brackets", [PRESET_DEFAULT, *BRACKET_SETS]),
    "planner": _select("planner", "Planner", [PRESET_DEFAULT, *PLANNERS]),
    "objective": _select("objective", "Objective", [PRESET_DEFAULT, *OBJECTIVES]),
    "worker_mind": _select("worker_mind", "Worker mind", WORKER_MINDS),
    "backend": _select("backend", "LLM backend", BACKENDS),
    "tax_year_length": {"type": "SliderInt", "value": _value("tax_year_length"), "min": 1, "max": 100, "step": 1,
                        "label": "Tax-year length (steps)"},
    "max_steps": {"type": "SliderInt", "value": _value("max_steps"), "min": 10, "max": 500, "step": 10,
                  "label": "Steps to run"},
    "scenario_name": _select("scenario_name", "Scenario", SCENARIOS),
    "network": _select("network", "Social network", [SCENARIO_DEFAULT, *NETWORKS]),
    "rng": {"type": "InputText", "value": str(SEED), "label": "Seed"},
}
"""``model_params`` for :class:`~mesa.visualization.SolaraViz`, their defaults those of :class:`DashboardParams`."""

DEFAULTS = {name: spec["value"] for name, spec in CONTROLS.items()}


def model_kwargs(**values) -> dict:
    """Validate control values (text fields arrive as strings) into :class:`EconomyModel` keyword arguments."""
    seed = str(values.pop("rng")).strip()
    if not seed.isdigit() or int(seed) >= 2**32:
        raise ValueError(f"seed: {seed!r} is not a seed; allowed: an integer from 0 to 4_294_967_295")
    chosen = {name: value for name, value in values.items() if value not in (PRESET_DEFAULT, SCENARIO_DEFAULT)}
    params = validate(DashboardParams, {name: str(value) for name, value in chosen.items()}, strings=True)
    kwargs = {name: getattr(params, name) if name in chosen else None for name in values}
    kwargs["preset"] = params.preset
    if params.planner == "oracle":
        kwargs["planner_options"] = {"max_evaluations": ORACLE_MAX_EVALUATIONS}
    return {**kwargs, "rng": int(seed)}


class DashboardEconomy(EconomyModel):
    """An :class:`EconomyModel` built from dashboard control values.

    The scenario control is named ``scenario_name`` because Mesa's model controller reserves
    ``scenario`` for its own :class:`~mesa.experimental.scenarios.Scenario`.
    """

    def __init__(self, workers=DEFAULTS["workers"], preset=DEFAULTS["preset"], brackets=DEFAULTS["brackets"],
                 planner=DEFAULTS["planner"], objective=DEFAULTS["objective"], worker_mind=DEFAULTS["worker_mind"],
                 backend=DEFAULTS["backend"], tax_year_length=DEFAULTS["tax_year_length"],
                 max_steps=DEFAULTS["max_steps"], scenario_name=DEFAULTS["scenario_name"],
                 network=DEFAULTS["network"], rng=DEFAULTS["rng"]):
        values = dict(workers=workers, preset=preset, brackets=brackets, planner=planner, objective=objective,
                      worker_mind=worker_mind, backend=backend, tax_year_length=tax_year_length,
                      max_steps=max_steps, scenario_name=scenario_name, network=network, rng=rng)
        try:
            self.model_kwargs = model_kwargs(**values)
            super().__init__(**self.model_kwargs)
            self.input_error = None
        except ValueError as error:
            vars(self).clear()  # start again from a blank object: a failed __init__ leaves partial state
            self.model_kwargs = model_kwargs(**{name: DEFAULTS[name] for name in values})
            super().__init__(**self.model_kwargs)
            self.input_error = str(error)
            self.running = False
        lifecycle.adopt(self)  # in a browser session, the model this one replaces is closed

    def step(self):
        """Advance the economy; a model built from invalid input stays where it is."""
        if self.input_error is None:
            super().step()
