"""Every prompt and answer schema of both prompt styles, byte for byte as in tests/data/prompt_capture.json.

Small models (rng=1) run their LLM workers, planner, elections and satisfaction stage against a scripted
client that keeps each request and answers it validly, so the minds build their real prompts. A change to
any message, schema or the values decoded from the answers shows here. After an intended change, rewrite the
capture with ``python -m tests.test_prompt_capture --write`` and review its diff.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path

import numpy as np

from llm_runtime import Failure, FailureKind, LLMResult
from model.model import EconomyModel

CAPTURE = Path(__file__).parent / "data" / "prompt_capture.json"
STYLES = ("improved", "paper")
# name -> model keywords; each runs until it stops, with the scripted client
MODELS = {
    # personas (census population), history, explore and exploit steps, two planner years
    "workers_and_planner": dict(workers=3, worker_mind="llm", planner="llm", tax_year_length=2, max_steps=5),
    # no personas, three brackets, the paper planner's start
    "paper_preset": dict(preset="paper", workers=3, worker_mind="llm", planner="llm", tax_year_length=2,
                         max_steps=3),
    # candidacy and ballots in two elections, and a non-binding leader's own rates in between
    "democratic": dict(workers=4, worker_mind="llm", scenario_name="democratic", tax_year_length=2,
                       max_steps=4),
    # each worker's satisfaction with the step
    "bounded": dict(workers=2, worker_mind="llm", scenario_name="bounded", planner="us_federal", max_steps=2),
}
# (period, stage, decider) of requests that fail: that worker keeps its hours, the planner its rates
FAILING = {(2, "work", 1), (4, "plan", "planner")}


class ScriptedClient:
    """An LLM client that answers every request validly (the same answer for the same key) and keeps it."""

    def __init__(self):
        self.requests = []
        self.brackets = None  # set once the model is built: candidacy schemas do not carry it

    def run_batch(self, requests):
        results = []
        for request in requests:
            self.requests.append(request)
            if tuple(request.key[1:]) in FAILING:
                failure = Failure(FailureKind.CONNECTION, "offline")
                results.append(LLMResult(key=request.key, value=None, failure=failure))
                continue
            answer = self.answer(request)
            value = request.schema.model_validate(answer)
            results.append(LLMResult(key=request.key, value=value, failure=None, raw=json.dumps(answer)))
        return results

    def answer(self, request) -> dict:
        _, period, stage, row = request.key
        turn = period + (row if isinstance(row, int) else 0)
        fields = request.schema.model_fields
        user = request.messages[-1]["content"]
        candidates = [int(c) for c in re.findall(r"^worker_(\d+): TAX", user, flags=re.M)]
        if "LABOR" in fields:  # one answer above the cap, clipped
            return {"LABOR": "120" if turn % 5 == 4 else f"{30 + 10 * (turn % 4)} hours"}
        if "hours" in fields:
            return {"hours": 20 + 7.5 * (turn % 5), "reason": "scripted"}
        if "ANSWER" in fields:
            return {"thought": "scripted", "ANSWER": "NO" if turn % 2 else "YES"}
        if "LEADER" in fields:
            return {"LEADER": f"worker_{candidates[row % len(candidates)]}"}
        if "vote" in fields:  # the last worker names someone who does not run
            return {"vote": 99 if row == 3 else candidates[row % len(candidates)], "reason": "scripted"}
        if "run" in fields:
            running = row % 2 == 0
            rates = [(10 * (row + j + 1) + period) % 101 for j in range(self.brackets)]
            return {"run": running, "rates": rates if running else []}
        if "DELTA" in fields:  # +25 is clipped to 20; 5 and 15 are rounded to 0 and 20
            delta = [(25, -10, 0, 10, -20, 5, 15)[(j + turn) % 7] for j in range(self.brackets)]
            return {"DELTA": None if stage == "candidacy" and row % 2 else delta}
        return {"rates": [(20 + 5 * j + turn) % 101 for j in range(self.brackets)], "reason": "scripted"}


def _plain(value):
    """numpy values as JSON's own."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _counts(part) -> dict | None:
    """Failed and clipped answers of a mind, of the rule that sets the rates (planner or leader), or of an
    election."""
    return None if part is None or not hasattr(part, "failures") else {
        "failures": part.failures, "clipped": getattr(part, "clipped", 0)}


def run_model(style: str, options: dict) -> dict:
    """The requests one model sends in its run, and what it made of the answers."""
    client = ScriptedClient()
    model = EconomyModel(**options, prompt_mode=style, agent_interval=0, llm=client, rng=1)
    client.brackets = model.schedule.n_brackets
    hours = []
    while model.running:
        model.step()
        hours.append(model.workforce.hours.tolist())
    return {
        "requests": [{"key": list(r.key[1:]), "schema": r.schema.__name__, "messages": r.messages}
                     for r in client.requests],
        "outcome": {"rates": [[period, list(rates)] for period, rates in model.planner.history],
                    "hours": hours, "elections": model.elections, "votes": model.workforce.vote,
                    "counts": {"workers": _counts(model.worker_mind), "rates": _counts(model.planner.rule),
                               "election": _counts(model.election)}},
        "schemas": {r.schema.__name__: r.schema.model_json_schema() for r in client.requests},
    }


def capture() -> str:
    """Every style's runs and the JSON schemas of the answers they asked for, as the capture file's text."""
    styles = {}
    for style in STYLES:
        runs = {name: run_model(style, options) for name, options in MODELS.items()}
        schemas = {}
        for run in runs.values():
            schemas.update(run.pop("schemas"))
        styles[style] = {"runs": runs, "schemas": dict(sorted(schemas.items()))}
    return json.dumps(styles, indent=1, ensure_ascii=False, default=_plain) + "\n"


def test_prompts_and_schemas_match_the_capture():
    expected, now = CAPTURE.read_text(encoding="utf-8"), capture()
    diff = difflib.unified_diff(expected.splitlines(), now.splitlines(), "captured", "now", lineterm="")
    shown = list(diff)[:60]  # the first differences, not the whole file
    assert now == expected, "\n".join(["to rewrite: python -m tests.test_prompt_capture --write", *shown])


def test_the_capture_covers_every_stage_of_both_styles():
    stages = {"work", "plan", "candidacy", "vote", "lead", "satisfaction"}
    for style, captured in json.loads(CAPTURE.read_text(encoding="utf-8")).items():
        seen = {request["key"][1] for run in captured["runs"].values() for request in run["requests"]}
        assert seen == stages, style


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_prompt_capture --write")
    CAPTURE.parent.mkdir(parents=True, exist_ok=True)
    CAPTURE.write_text(capture(), encoding="utf-8")
    print(f"wrote {CAPTURE}")
