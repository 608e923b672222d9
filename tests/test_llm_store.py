"""Response store: persist-before-use under kill -9, replay without HTTP, several processes, exports, secrets."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_runtime import LLMClient, LLMConfig, ReplayMissError, ResponseStore, ServerStopped, StoreError
from tests.llm_helpers.common import Work, outcome, request_id, work_requests
from tests.llm_server import FaultServer

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

ROOT = Path(__file__).parent.parent


def config(url: str, store: Path, **kw) -> LLMConfig:
    base = {"base_urls": (url,), "model": "fault-model", "store_path": str(store), "concurrency": 16}
    return LLMConfig(**(base | kw))


def stored_ids(store: Path) -> set[str]:
    if not store.exists():
        return set()
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT identity FROM responses WHERE failure_kind IS NULL").fetchall()
    return {request_id(tuple(json.loads(r[0]))) for r in rows}


def count_rows(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def worker(url: str, store: Path, out: Path, n: int, run: str = "run") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.llm_helpers.batch_worker", url, str(store), str(n), str(out),
                             run], cwd=ROOT)


def sent_ids(before: dict, after: dict) -> set[str]:
    return {k for k, v in after.items() if v > before.get(k, 0)}


def test_kill_9_at_five_random_points_then_resume_sends_only_what_was_not_stored(tmp_path):
    n = 1000
    store, out = tmp_path / "resume.sqlite", tmp_path / "resume.json"
    thresholds = sorted(random.Random(2024).sample(range(60, n // 2), 5))  # half the batch left to kill
    with FaultServer(latency=0.02, slots=16) as srv:
        for threshold in thresholds:
            stored_before = stored_ids(store)
            counts_before = srv.stats()["by_request_id"]
            proc = worker(srv.base_url, store, out, n)
            deadline = time.monotonic() + 60
            while count_rows(store) < threshold and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL, "the worker was killed mid-batch"
            assert count_rows(store) < n
            assert not out.exists()
            sent = sent_ids(counts_before, srv.stats()["by_request_id"])
            assert sent and not (sent & stored_before), "a stored request was sent again"

        stored_before = stored_ids(store)
        counts_before = srv.stats()["by_request_id"]
        proc = worker(srv.base_url, store, out, n)
        assert proc.wait(120) == 0
        after = srv.stats()["by_request_id"]
        all_ids = {request_id(r.key) for r in work_requests(n)}
        assert sent_ids(counts_before, after) == all_ids - stored_before
        assert all(after[i] - counts_before.get(i, 0) == 1 for i in all_ids - stored_before)
        resumed = json.loads(out.read_text())

        clean_out = tmp_path / "clean.json"
        proc = worker(srv.base_url, tmp_path / "clean.sqlite", clean_out, n)
        assert proc.wait(120) == 0
        clean = json.loads(clean_out.read_text())
    assert resumed["results"] == clean["results"]
    assert all(r["failure"] is None for r in clean["results"])
    assert resumed["accounting"]["store_hits"] == len(stored_before)


def test_replay_only_sends_nothing_and_returns_identical_results(tmp_path):
    store = tmp_path / "replay.sqlite"
    with FaultServer(latency=0.001, fault_rate=0.3, seed=3, retry_after_ms=1, timeout_hold=5) as srv:
        with LLMClient(config(srv.base_url, store, timeout_s=0.5, concurrency=32)) as client:
            recorded = client.run_batch(work_requests(300))
        sent = srv.stats()["requests"]
        with LLMClient(config(srv.base_url, store, store_mode="replay")) as client:
            replayed = client.run_batch(work_requests(300))
            acc = client.accounting.to_dict()
        assert srv.stats()["requests"] == sent, "replay sent HTTP requests"
    assert [outcome(r) for r in replayed] == [outcome(r) for r in recorded]
    assert all(r.from_store for r in replayed)
    assert acc["sends"] == 0 and acc["store_hits"] == sum(r.attempts for r in recorded)


def test_replay_only_needs_no_server_and_a_missing_key_is_a_clear_error(tmp_path):
    store = tmp_path / "replay.sqlite"
    with FaultServer() as srv:
        with LLMClient(config(srv.base_url, store)) as client:
            client.run_batch(work_requests(3))
        sent = srv.stats()["requests"]
        dead_url = "http://127.0.0.1:9/v1"  # nothing listens there
        with LLMClient(config(dead_url, store, store_mode="replay")) as client:
            assert all(r.ok for r in client.run_batch(work_requests(3)))
            with pytest.raises(ReplayMissError, match="replay-only"):
                client.run_batch(work_requests(4))
        assert srv.stats()["requests"] == sent


def test_record_mode_serves_stored_keys_and_store_off_always_sends(tmp_path):
    store = tmp_path / "rec.sqlite"
    with FaultServer() as srv:
        with LLMClient(config(srv.base_url, store)) as client:
            first = client.run_batch(work_requests(10))
            second = client.run_batch(work_requests(10))
        assert srv.stats()["requests"] == 10
        assert not any(r.from_store for r in first) and all(r.from_store for r in second)
        with LLMClient(config(srv.base_url, store, store_mode="off")) as client:
            client.run_batch(work_requests(10))
        assert srv.stats()["requests"] == 20


def test_a_changed_request_is_not_served_from_another_requests_answer(tmp_path):
    store = tmp_path / "hash.sqlite"
    with FaultServer() as srv:
        with LLMClient(config(srv.base_url, store)) as client:
            client.run_batch(work_requests(5))
        with LLMClient(config(srv.base_url, store, temperature=0.7)) as client:
            results = client.run_batch(work_requests(5))
        assert srv.stats()["requests"] == 10 and not any(r.from_store for r in results)


def test_transport_failures_are_stored_but_resent_in_record_mode(tmp_path):
    store = tmp_path / "fail.sqlite"
    with FaultServer(fault_rate=1.0, faults=("server_error",)) as srv:
        with LLMClient(config(srv.base_url, store, max_retries=0)) as client:
            with pytest.raises(ServerStopped, match=r"\(server_error 4\)"):  # a whole batch failed: a stop
                client.run_batch(work_requests(4))
        assert count_rows(store) == 4
        srv.fault_rate = 0.0
        with LLMClient(config(srv.base_url, store, store_mode="replay")) as client:
            assert all(r.failure.kind.value == "server_error" for r in client.run_batch(work_requests(4)))
        with LLMClient(config(srv.base_url, store)) as client:
            assert all(r.ok for r in client.run_batch(work_requests(4)))
        assert srv.stats()["requests"] == 8


def test_several_processes_share_one_store(tmp_path):
    store = tmp_path / "shared.sqlite"
    with FaultServer(latency=0.005) as srv:
        procs = [worker(srv.base_url, store, tmp_path / f"o{i}.json", 300, run=f"p{i}") for i in range(3)]
        assert [p.wait(120) for p in procs] == [0, 0, 0]
    assert count_rows(store) == 900
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_response_is_committed_before_it_is_returned(tmp_path):
    store_path = tmp_path / "commit.sqlite"
    seen = []
    with FaultServer() as srv, LLMClient(config(srv.base_url, store_path, concurrency=4)) as client:
        def progress(done, total):  # another connection sees each returned answer already committed
            seen.append(count_rows(store_path) >= done)
        client.run_batch(work_requests(40), progress=progress)
    assert seen and all(seen)


def test_export_transcripts_jsonl(tmp_path):
    store = tmp_path / "t.sqlite"
    with FaultServer() as srv, LLMClient(config(srv.base_url, store)) as client:
        results = client.run_batch(work_requests(5))
        n = client.export_transcripts(tmp_path / "t.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert n == len(lines) == 5
    by_key = {tuple(line["identity"]): line for line in lines}
    for r in results:
        line = by_key[r.key]
        assert line["raw"] == r.raw and Work(**line["parsed"]) == r.value
        assert line["messages"][-1]["content"].startswith("Agent")
        assert line["prompt_tokens"] > 0 and line["failure_kind"] is None


def test_the_api_key_never_reaches_a_file_the_layer_writes(tmp_path, monkeypatch):
    marker = "sk-SECRET-MARKER-7f3a9c1e"
    monkeypatch.setenv("OPENAI_API_KEY", marker)
    monkeypatch.delenv("LLM_API_KEY", raising=False)
    handler = logging.FileHandler(tmp_path / "debug.log")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with FaultServer(api_key=marker, fault_rate=0.3, seed=1, retry_after_ms=1, timeout_hold=5) as srv:
            cfg = config(srv.base_url, tmp_path / "store.sqlite", timeout_s=0.5)
            with LLMClient(cfg) as client:
                results = client.run_batch(work_requests(100))
                client.export_transcripts(tmp_path / "transcripts.jsonl")
                client.accounting.write_json(tmp_path / "accounting.json")
                (tmp_path / "config.json").write_text(json.dumps(client.config.public_dict()))
            assert srv.stats()["auth_failures"] == 0, "the key from the environment was used"
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert sum(r.ok for r in results) > 90
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"debug.log", "store.sqlite", "transcripts.jsonl", "accounting.json"} <= {p.name for p in files}
    assert (tmp_path / "debug.log").stat().st_size > 0
    for path in files:
        assert marker.encode() not in path.read_bytes(), f"secret found in {path.name}"


def test_store_reopens_and_counts(tmp_path):
    s = ResponseStore(tmp_path / "x.sqlite")
    s.put('"a"', 0, "h", model="m", messages=[], raw="{}", finish_reason="stop", parsed={}, failure_kind=None,
          failure_message=None, prompt_tokens=1, completion_tokens=2, latency_s=0.1, sends=1)
    s.close()
    again = ResponseStore(tmp_path / "x.sqlite")
    assert again.count() == 1 and again.get('"a"', 0, "h").raw == "{}" and again.get('"a"', 1, "h") is None


def _put(store: ResponseStore, identity: str) -> None:
    store.put(identity, 0, "h", model="m", messages="[]", raw="{}", finish_reason="stop", parsed=None,
              failure_kind=None, failure_message=None, prompt_tokens=0, completion_tokens=0, latency_s=0.0, sends=1)


def test_a_write_lock_held_past_the_busy_timeout_is_an_error(tmp_path):
    path = tmp_path / "busy.sqlite"
    store = ResponseStore(path, busy_timeout_ms=50)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="locked"):
        _put(store, "late")
    other.execute("ROLLBACK")
    _put(store, "late")
    assert store.count() == 1
