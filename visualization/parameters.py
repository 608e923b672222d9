"""The dashboard's controls and the model they build.

:class:`DashboardEconomy` is an :class:`~model.model.EconomyModel` built from the raw
values of the dashboard's controls (text fields arrive as strings). Invalid values do not
raise: the model keeps the defaults, records ``input_error`` (naming the field and the
allowed values) and stops running, so the page shows the message and keeps serving.
"""

from __future__ import annotations

from agents.planner import PLANNERS
from agents.worker import WORKER_MINDS
from llm.config import BACKENDS
from model.model import PRESET_DEFAULTS, PRESETS, SCENARIOS, EconomyModel
from model.network import NETWORKS
from model.taxes import BRACKET_SETS
from model.welfare import OBJECTIVES
from visualization.baselines import ORACLE_MAX_EVALUATIONS

PRESET_DEFAULT = "preset default"
SCENARIO_DEFAULT = "scenario default"
PLANNER_NAMES = (*PLANNERS, "llm")
MAX_WORKERS = 10_000

CONTROLS = {
    "workers": {"type": "InputText", "value": "100", "label": f"Workers (2-{MAX_WORKERS})"},
    "preset": {"type": "Select", "value": "calibrated", "values": list(PRESETS), "label": "Preset"},
    "brackets": {"type": "Select", "value": PRESET_DEFAULT, "values": [PRESET_DEFAULT, *BRACKET_SETS],
                 "label": "Brackets"},
    "planner": {"type": "Select", "value": PRESET_DEFAULT, "values": [PRESET_DEFAULT, *PLANNER_NAMES],
                "label": "Planner"},
    "objective": {"type": "Select", "value": PRESET_DEFAULT, "values": [PRESET_DEFAULT, *OBJECTIVES],
                  "label": "Objective"},
    "worker_mind": {"type": "Select", "value": "rational", "values": list(WORKER_MINDS),
                    "label": "Worker mind"},
    "backend": {"type": "Select", "value": "auto", "values": list(BACKENDS), "label": "LLM backend"},
    "tax_year_length": {"type": "SliderInt", "value": 25, "min": 1, "max": 100, "step": 1,
                        "label": "Tax-year length (steps)"},
    "max_steps": {"type": "SliderInt", "value": 100, "min": 10, "max": 500, "step": 10,
                  "label": "Steps to run"},
    "scenario_name": {"type": "Select", "value": SCENARIOS[0], "values": list(SCENARIOS),
                      "label": "Scenario"},
    "network": {"type": "Select", "value": SCENARIO_DEFAULT, "values": [SCENARIO_DEFAULT, *NETWORKS],
                "label": "Social network"},
    "rng": {"type": "InputText", "value": "42", "label": "Seed"},
}
"""``model_params`` for :class:`~mesa.visualization.SolaraViz`."""

DEFAULTS = {name: spec["value"] for name, spec in CONTROLS.items()}


def _whole_number(name, value, low, high):
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ValueError(f"{name}: must be a whole number from {low} to {high}, got {value!r}")
    return number


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}: unknown value {value!r}; allowed: {', '.join(map(str, allowed))}")
    return None if value in (PRESET_DEFAULT, SCENARIO_DEFAULT) else value


def model_kwargs(workers, preset, brackets, planner, objective, worker_mind, backend, tax_year_length,
                 max_steps, scenario_name, network, rng) -> dict:
    """Validate control values and turn them into :class:`EconomyModel` keyword arguments."""
    preset = _choice("preset", preset, PRESETS)
    planner = _choice("planner", planner, [PRESET_DEFAULT, *PLANNER_NAMES])
    return {
        "workers": _whole_number("workers", workers, 2, MAX_WORKERS),
        "preset": preset,
        "brackets": _choice("brackets", brackets, [PRESET_DEFAULT, *BRACKET_SETS]),
        "planner": planner,
        "objective": _choice("objective", objective, [PRESET_DEFAULT, *OBJECTIVES]),
        "worker_mind": _choice("worker_mind", worker_mind, list(WORKER_MINDS)),
        "backend": _choice("backend", backend, BACKENDS),
        "scenario_name": _choice("scenario_name", scenario_name, SCENARIOS),
        "network": _choice("network", network, [SCENARIO_DEFAULT, *NETWORKS]),
        "tax_year_length": _whole_number("tax_year_length", tax_year_length, 1, 10_000),
        "max_steps": _whole_number("max_steps", max_steps, 1, 100_000),
        "planner_options": ({"max_evaluations": ORACLE_MAX_EVALUATIONS}
                            if (planner or PRESET_DEFAULTS[preset]["planner"]) == "oracle" else None),
        "rng": _whole_number("seed", rng, 0, 2**32 - 1),
    }


class DashboardEconomy(EconomyModel):
    """An :class:`EconomyModel` built from dashboard control values.

    The scenario control is named ``scenario_name`` because Mesa's model controller reserves
    ``scenario`` for its own :class:`~mesa.experimental.scenarios.Scenario`.
    """

    def __init__(self, workers="100", preset="calibrated", brackets=PRESET_DEFAULT, planner=PRESET_DEFAULT,
                 objective=PRESET_DEFAULT, worker_mind="rational", backend="auto", tax_year_length=25,
                 max_steps=100, scenario_name="rational", network=SCENARIO_DEFAULT, rng="42"):
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

    def step(self):
        """Advance the economy; a model built from invalid input stays where it is."""
        if self.input_error is None:
            super().step()
