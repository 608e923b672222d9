"""Results folders: written in ``<name>.partial`` and renamed to ``<name>`` only when complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import folders, plots
from experiments.cli import ALIASES
from llm_runtime.config import API_KEY_ENV, redact_url
from validation import ParameterError as ConfigError

STORE_NAME = "responses.sqlite"
CONFIG_NAME = "config.json"


def write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_config(folder: Path) -> dict:
    """A results folder's settings; a missing or garbled file is bad input (``--run``)."""
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError("--run", f"cannot read {folder / CONFIG_NAME} ({type(error).__name__})",
                          "a results folder written by run.py, with its config.json intact") from None
    if not isinstance(config, dict) or not isinstance(config.get("settings", {}), dict):
        raise ConfigError("--run", f"{folder / CONFIG_NAME} is not a run.py configuration",
                          "a results folder written by run.py, with its config.json intact")
    settings = config.get("settings", {})  # written under a short spelling before settings took their own names
    for alias, name in ALIASES.items():
        if alias in settings and name not in settings:
            settings[name] = settings.pop(alias)
    return config


def start(out: Path, config: dict, field: str = "--out", overwrite: bool = False):
    """Take the staging folder of ``out``, atomically, with its config, and hold it (and ``out`` itself when an
    earlier run's results are there to replace) while the ``with`` block runs; yields the staging folder."""
    return folders.take(out, field, overwrite, prepare=lambda folder: write_json(folder / CONFIG_NAME, config))


def finish(out: Path) -> Path:
    """Replace ``out`` by its completed staging folder (the old results, if any, go only after the rename)."""
    return folders.finish(out)


def llm_settings(model) -> dict | None:
    """The LLM layer's resolved settings (backend, URLs without credentials, model); never a key."""
    if model.llm is None:
        return None
    public = model.llm.config.public_dict()
    backend = model.llm.backend
    public["resolved"] = {"kind": backend.kind, "model": model.llm.model,
                          "base_urls": [redact_url(u) for u in backend.base_urls],
                          "model_path": backend.model_path,
                          # which variable held the key (never the key): a resume needs it again
                          "api_key_env": next((v for v in API_KEY_ENV if os.environ.get(v)), None)
                          if backend.kind == "openai" else None}
    public.pop("store_path", None)
    return public


def model_frame(model) -> pd.DataFrame:
    frame = model.datacollector.get_model_vars_dataframe()
    frame.index.name = "step"
    return frame


def write_model_data(model, folder: Path) -> pd.DataFrame:
    """Model data (parquet and CSV), worker data (parquet), LLM accounting and transcripts, elections."""
    frame = model_frame(model)
    frame.to_parquet(folder / "model.parquet")
    frame.to_csv(folder / "model.csv")
    if model.agent_interval:
        workers = model.datacollector.get_agenttype_vars_dataframe(model.worker_class)
        workers.index = workers.index.set_levels(workers.index.levels[0].astype(int), level=0)  # float time
        workers.to_parquet(folder / "agents.parquet")
    if model.llm is not None:
        model.llm.accounting.write_json(folder / "llm_accounting.json")
        model.llm.export_transcripts(folder / "transcripts.jsonl")
    if model.elections:
        write_json(folder / "elections.json", model.elections)
    return frame


def final_state(model) -> dict:
    """Hours and incomes of the last step (for the distribution plots)."""
    w = model.workforce
    return {"hours": np.array(w.hours), "pre_tax": np.array(w.income),
            "post_tax": np.array(w.consumption - model.preferences.base_consumption),
            "cap": float(model.hours_cap)}


def write_plots(folder: Path, frame: pd.DataFrame, baselines: dict[str, pd.DataFrame], state: dict,
                objective_name: str, label: str, elections: list[dict]) -> list[Path]:
    written = [plots.rates(frame, folder / "rates.png"),
               plots.objective(frame, baselines, objective_name, label, folder / "objective.png"),
               plots.hours(state["hours"], folder / "hours.png", cap=state["cap"]),
               plots.income(state["pre_tax"], state["post_tax"], folder / "income.png")]
    if elections:
        written.append(plots.elections(elections, folder / "elections.png"))
    return written


def summary_row(name: str, frame: pd.DataFrame, seconds: float) -> dict:
    last = frame.iloc[-1]
    rates = [c for c in frame.columns if c.startswith("rate_")]
    return {"run": name, "objective": last["objective"], "utilitarian": last["utilitarian"],
            "paper_swf": last["paper_swf"], "mean_hours": last["mean_hours"], "median_hours": last["median_hours"],
            "zero_hours_%": 100 * last["share_zero_hours"], "gini_post_tax": last["gini_post_tax"],
            "rates_%": " ".join(f"{100 * last[c]:.0f}" for c in rates), "seconds": seconds}


def table_text(table: pd.DataFrame) -> str:
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format",
                           "{:,.3f}".format):
        return table.to_string()
