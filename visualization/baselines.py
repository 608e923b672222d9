"""Baseline planners' objective on the dashboard model's own population, computed once per parameter set."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from agents.planner import PLANNERS
from model.model import EconomyModel
from model.params import PRESETS
from public_finance.taxes import bracket_set

BASELINES = ("us_federal", "saez", "oracle")
ORACLE_MAX_WORKERS = 500
ORACLE_MAX_EVALUATIONS = 400
SHARED_ARGUMENTS = ("workers", "preset", "brackets", "objective", "tax_year_length", "max_steps", "rng")


def baseline_planners(model_kwargs: dict) -> tuple[str, ...]:
    """Baselines that apply: those whose rule can set rates on the brackets, the oracle only up to 500 workers."""
    preset = model_kwargs.get("preset", "calibrated")
    brackets = model_kwargs.get("brackets") or PRESETS[preset].brackets
    names = [name for name in BASELINES if PLANNERS[name].applies_to(bracket_set(brackets))]
    if model_kwargs.get("workers", 100) > ORACLE_MAX_WORKERS:
        names.remove("oracle")
    return tuple(names)


def baseline_objectives(model_kwargs: dict) -> dict[str, np.ndarray | str]:
    """Objective per step (0..max_steps) of each baseline planner with rational workers on the same
    population, brackets, objective and seed.

    A baseline that cannot run on these arguments maps to its error message instead.
    """
    shared = {name: model_kwargs[name] for name in SHARED_ARGUMENTS if name in model_kwargs}
    return _cached(json.dumps(shared, sort_keys=True, default=str))


@lru_cache(maxsize=32)
def _cached(key: str) -> dict[str, np.ndarray | str]:
    kwargs = json.loads(key)
    series = {}
    for planner in baseline_planners(kwargs):
        options = {"max_evaluations": ORACLE_MAX_EVALUATIONS} if planner == "oracle" else None
        run_kwargs = {**kwargs, "planner": planner, "planner_options": options, "agent_interval": 0}
        try:
            model = EconomyModel(**run_kwargs)
        except ValueError as error:
            series[planner] = str(error)
            continue
        values = [model.objective]
        while model.running:
            model.step()
            values.append(model.objective)
        series[planner] = np.asarray(values)
    return series
