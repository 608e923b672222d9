"""Failures cannot hide: a wrong model or key stops the run at once (exit 2, one line, nothing written); a run
whose requests fail says so at the top of summary.md and in its exit status; --model never picks the backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_runtime import LLMClient, LLMConfig, resolve_backend
from validation import ParameterError
from tests.llm_helpers.common import work_requests
from tests.llm_server import FaultServer

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

ROOT = Path(__file__).parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_"))}


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=ENV if env is None else env)


def small_run(url: str, out: Path, *extra) -> list:
    return ["run", "--workers", 4, "--steps", 2, "--tax-year-length", 1, "--base-url", url, "--baselines", "saez",
            "--out", out, *extra]


def one_line(done: subprocess.CompletedProcess) -> str:
    """The one line of the error (progress bars aside)."""
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip() and "step/s]" not in line]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.parametrize("listed", [True, False], ids=["models listed", "no model list"])
def test_an_unknown_model_stops_the_run_in_its_first_batch_and_writes_nothing(tmp_path, listed):
    out = tmp_path / "run"
    with FaultServer(list_models=listed) as srv:
        done = cli(*small_run(srv.base_url, out, "--model", "no-such-model"))
        sent = srv.stats()["requests"]
    assert done.returncode == 2
    line = one_line(done)
    assert line.startswith("run.py: error: --llm-model:") and "no-such-model" in line
    if listed:
        assert "fault-model" in line and sent == 0  # the server's list names what it serves
    else:
        assert sent == 4  # one batch: the first step's workers, each refused once (a 404 is not retried)
    assert not out.exists() and not out.with_name("run.partial").exists()


def test_a_rejected_key_stops_the_run_in_its_first_batch(tmp_path):
    with FaultServer(api_key="right", list_models=False) as srv:
        done = cli(*small_run(srv.base_url, tmp_path / "run", "--model", "fault-model"),
                   env=dict(ENV, OPENAI_API_KEY="wrong"))
    assert done.returncode == 2 and "api_key" in one_line(done)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_a_run_whose_requests_fail_writes_its_results_says_so_first_and_exits_1(tmp_path):
    out = tmp_path / "run"
    with FaultServer(fault_rate=1.0, faults=("refusal",)) as srv:  # the server answers, with no usable answer
        done = cli(*small_run(srv.base_url, out, "--model", "fault-model"), env=ENV)
    assert done.returncode == 1, done.stderr
    assert "LLM requests failed" in done.stderr.strip().splitlines()[-1] and "Traceback" not in done.stderr
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[2].startswith("**FAILED: 9 of 9 LLM requests failed")  # 4 workers x 2 steps, 1 planner year
    assert summary[4].startswith("LLM requests: 9, failures 9 (refusal 9), retries 0, re-asks 18, store hits 0")
    assert summary[6] == "Faults met on the way, retried or re-asked or not: refusal 27."
    assert json.loads((out / "llm_accounting.json").read_text())["failures"] == {"refusal": 9}


def test_a_server_that_stops_answering_interrupts_the_run(tmp_path):
    out = tmp_path / "run"
    with FaultServer(fault_rate=1.0, faults=("server_error",), retry_after_ms=1) as srv:
        done = cli(*small_run(srv.base_url, out, "--model", "fault-model"), env=dict(ENV, LLM_MAX_RETRIES="0"))
    assert done.returncode == 75, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and "stopped answering: every request of a batch of 4 failed" in lines[-2]
    assert lines[-1].strip().endswith(f"run.py resume --run {out}")
    assert not out.exists() and (tmp_path / "run.partial" / "config.json").is_file()
    assert json.loads((tmp_path / "run.partial" / "llm_accounting.json").read_text())["failures"] == \
        {"server_error": 4}


def test_the_failure_threshold_is_a_flag(tmp_path):
    with FaultServer(fault_rate=1.0, faults=("refusal",)) as srv:
        done = cli(*small_run(srv.base_url, tmp_path / "run", "--model", "fault-model", "--max-failure-rate", 1),
                   env=ENV)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "summary.md").read_text().splitlines()[2].startswith("LLM requests: 9, failures 9")


def test_a_clean_llm_run_shows_its_requests_first(tmp_path):
    with FaultServer() as srv:
        done = cli(*small_run(srv.base_url, tmp_path / "run", "--model", "fault-model"))
    assert done.returncode == 0, done.stderr
    top = (tmp_path / "run" / "summary.md").read_text().splitlines()[2]
    assert top.startswith("LLM requests: 9, failures 0, retries 0") and "fault-model" in top


def test_model_with_the_embedded_backend_must_name_the_embedded_model(tmp_path):
    done = cli("run", "--backend", "embedded", "--model", "other", "--workers", 2, "--steps", 1, "--out",
               tmp_path / "run")
    assert done.returncode == 2 and one_line(done).startswith("run.py: error: --llm-model: 'other' is not the embedded")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_model_alone_never_changes_the_backend():
    with pytest.raises(ParameterError, match="not the embedded model"):
        resolve_backend(LLMConfig(model="gpt-4o", store_mode="off"), env={})
    embedded = resolve_backend(LLMConfig(store_mode="off"), env={}).model
    assert resolve_backend(LLMConfig(model=embedded, store_mode="off"), env={}).kind == "embedded"
    assert resolve_backend(LLMConfig(model="gpt-4o", store_mode="off"), env={"OPENAI_API_KEY": "k"}).kind == "openai"


def test_a_batch_refused_for_its_model_raises_a_config_error_naming_the_model():
    with FaultServer(list_models=False) as srv, LLMClient(LLMConfig(
            base_urls=(srv.base_url,), model="absent", store_mode="off"), env={}) as client:
        with pytest.raises(ParameterError) as err:
            client.run_batch(work_requests(5))
    assert err.value.field == "model" and "absent" in err.value.problem
