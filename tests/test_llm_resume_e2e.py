"""Long LLM runs against a server that dies or is killed: a run configured by the environment, killed or left
without its server, resumes with the printed command on the same server and model, in a clean environment that
holds only the key, and ends byte for byte as an uninterrupted run, asking nothing it had stored."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shlex
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.llm_server import FaultServer
from tests.test_cli_runs import scripted

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

ROOT = Path(__file__).parent.parent
KEY = "sk-test-resume-" + "4f2a" * 6
RUN = ["run", "--workers", 12, "--steps", 6, "--tax-year-length", 3, "--baselines", "none"]


def clean_env(**extra) -> dict:
    """The environment of a new shell: no LLM_* or OpenAI variables unless given."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_"))}
    return keep | {k: str(v) for k, v in extra.items()}


def server_env(url: str) -> dict:
    return clean_env(LLM_BASE_URL=url, LLM_MODEL="fault-model", LLM_API_KEY=KEY)


def cli(*args, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def start(*args, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "run.py", *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def rows(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.Error:
        return 0


def stored_ids(store: Path) -> Counter:
    """Request ids of the answers in the store (a refused connection stores no answer: a resume asks again)."""
    with sqlite3.connect(store) as conn:
        identities = [r[0] for r in conn.execute("SELECT identity FROM responses WHERE body IS NOT NULL")]
    return Counter(hashlib.sha256(i.encode()).hexdigest()[:24] for i in identities)


def resume_in_a_new_shell(out: Path, printed: str | None = None) -> subprocess.CompletedProcess:
    """The printed resume command (or the one the README gives), in an environment holding only the key."""
    command = printed or f".venv/bin/python run.py resume --run {shlex.quote(str(out))}"
    words = shlex.split(command)
    assert words[0] == ".venv/bin/python" and words[1:4] == ["run.py", "resume", "--run"], command
    return subprocess.run([sys.executable, *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env=clean_env(LLM_API_KEY=KEY))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same run from start to end: its model data (as CSV bytes) and the requests its server saw."""
    out = tmp_path_factory.mktemp("whole") / "run"
    with FaultServer(script=scripted, latency=0.01, slots=4, api_key=KEY) as srv:
        done = cli(*RUN, "--out", out, env=server_env(srv.base_url))
        assert done.returncode == 0, done.stderr
        return (out / "model.csv").read_bytes(), Counter(srv.stats()["by_request_id"])


def test_kill_9_at_a_random_step_then_the_resume_command_with_only_the_key(uninterrupted, tmp_path):
    expected, requests = uninterrupted
    target = random.Random(21).randrange(10, sum(requests.values()) - 10)
    out = tmp_path / "run"
    with FaultServer(script=scripted, latency=0.01, slots=4, api_key=KEY) as srv:
        process = start(*RUN, "--out", out, env=server_env(srv.base_url))
        store = tmp_path / "run.partial" / "responses.sqlite"
        while process.poll() is None and rows(store) < target:
            time.sleep(0.005)
        process.kill()
        process.wait()
        assert process.returncode == -9
        recorded = json.loads((tmp_path / "run.partial" / "config.json").read_text())["llm"]["resolved"]
        assert recorded["base_urls"] == [srv.base_url] and recorded["model"] == "fault-model"
        assert recorded["api_key_env"] == "LLM_API_KEY" and KEY not in json.dumps(recorded)
        at_kill = stored_ids(store)
        done = resume_in_a_new_shell(out)
        assert done.returncode == 0, done.stderr
        seen = Counter(srv.stats()["by_request_id"])
    assert (out / "model.csv").read_bytes() == expected
    assert all(seen[rid] == 1 for rid in at_kill)  # no stored answer was asked again
    assert set(seen) == set(requests)


def test_a_server_that_stops_interrupts_the_run_and_resume_finishes_it_once_it_is_back(uninterrupted, tmp_path):
    expected, requests = uninterrupted
    out = tmp_path / "run"
    store = tmp_path / "run.partial" / "responses.sqlite"
    srv = FaultServer(script=scripted, latency=0.01, slots=4, api_key=KEY).start()
    port, url = srv.port, srv.base_url
    process = start(*RUN, "--out", out, env=dict(server_env(url), LLM_MAX_RETRIES="1"))
    while process.poll() is None and rows(store) < sum(requests.values()) // 2:
        time.sleep(0.005)
    srv.stop()  # the server goes away mid-run
    _, err = process.communicate(timeout=120)
    assert process.returncode == 75, err  # interrupted: not a finished run, not a failed one
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "stopped answering" in lines[-2] and "connection_refused" in lines[-2]
    printed = lines[-1].strip()
    assert not out.exists() and rows(store) > 0
    refused = json.loads((tmp_path / "run.partial" / "llm_accounting.json").read_text())["failures"]
    assert set(refused) == {"connection_refused"}
    before = stored_ids(store)
    with FaultServer(script=scripted, latency=0.01, slots=4, api_key=KEY, port=port) as back:
        done = resume_in_a_new_shell(out, printed)
        assert done.returncode == 0, done.stderr
        seen = Counter(back.stats()["by_request_id"])
    assert (out / "model.csv").read_bytes() == expected
    assert not set(seen) & set(before)  # what was stored before the stop is never asked again


def test_resume_pointed_at_another_model_or_server_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    with FaultServer(script=scripted, api_key=KEY, models=("fault-model", "other-model")) as srv:
        process = start(*RUN, "--out", out, env=server_env(srv.base_url))
        while process.poll() is None and rows(tmp_path / "run.partial" / "responses.sqlite") < 5:
            time.sleep(0.005)
        process.kill()
        process.wait()
        for asked in (dict(LLM_MODEL="other-model"), dict(LLM_BASE_URL="http://127.0.0.1:9/v1")):
            done = cli("resume", "--run", out, env=clean_env(LLM_API_KEY=KEY, **asked))
            assert done.returncode == 2, done.stderr
            (line,) = done.stderr.strip().splitlines()
            assert f"ran on model 'fault-model' on {srv.base_url}; asked now: " in line
            assert "--allow-other-model" in line
        done = cli("resume", "--run", out, env=clean_env())  # the run sent a key: without it, the variable is named
        assert done.returncode == 2 and done.stderr.strip() == (
            "run.py: error: LLM_API_KEY: is not set; the run sent its requests with a key from it; allowed: the "
            "server's key in LLM_API_KEY (keys are never written to results)")
        sent = srv.stats()["requests"]
        done = cli("resume", "--run", out, "--model", "other-model", "--allow-other-model",
                   env=clean_env(LLM_API_KEY=KEY))
        assert done.returncode == 0, done.stderr
        assert srv.stats()["requests"] > sent
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[2] == (f"**This run started on model 'fault-model' on {srv.base_url} and was resumed on model "
                          f"'other-model' on {srv.base_url} (--allow-other-model): every answer in its data comes "
                          "from the second, as a stored answer is found only for the model that gave it.**")


def test_replay_only_mode_with_an_empty_store_sends_nothing_and_says_so_in_one_line(tmp_path):
    with FaultServer(script=scripted, api_key=KEY) as srv:
        done = cli(*RUN, "--out", tmp_path / "run", env=dict(server_env(srv.base_url), LLM_STORE_MODE="replay"))
        assert srv.stats()["requests"] == 0
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("run.py: error: LLM_STORE_MODE: 'replay' is not for `run.py run`")
    assert not list(tmp_path.iterdir())


def test_a_run_against_a_server_that_rate_limits_30_percent_completes_and_counts_the_waits(tmp_path):
    out = tmp_path / "run"
    with FaultServer(script=scripted, fault_rate=0.3, faults=("rate_limit",), retry_after_ms=None,
                     api_key=KEY) as srv:
        done = cli(*RUN[:2], 4, *RUN[3:], "--out", out, env=server_env(srv.base_url))  # 4 workers
        limited = srv.stats()["by_kind"]["rate_limit"]
    assert done.returncode == 0, done.stderr
    accounting = json.loads((out / "llm_accounting.json").read_text())
    assert accounting["failures"] == {} and limited > 0
    assert accounting["rate_limit_waits"] == accounting["faults"]["rate_limit"] == limited
    assert accounting["rate_limit_wait_s"] >= limited  # each 429 asked for a second, and got it


def test_a_429_asking_for_an_hour_beyond_the_wait_budget_stops_the_run_for_a_resume(tmp_path):
    out = tmp_path / "run"
    with FaultServer(script=scripted, fault_rate=1.0, faults=("rate_limit",), retry_after_ms=None,
                     retry_after_s=3600, api_key=KEY) as srv:
        done = cli(*RUN, "--out", out, env=dict(server_env(srv.base_url), LLM_RATE_LIMIT_WAIT="30"))
    assert done.returncode == 75, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[-2].endswith(f" of 6 ({srv.base_url} answers 429: waiting 3,600 s more would go beyond the "
                              "rate-limit budget of 30 s per request (rate_limit_wait_s, $LLM_RATE_LIMIT_WAIT)); "
                              "stored responses are kept. Resume with:")
    assert lines[-2].startswith("run.py: stopped at step ")
    assert (tmp_path / "run.partial" / "config.json").is_file() and not out.exists()
