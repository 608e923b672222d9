"""Large batches split over worker processes give what one process gives, and no process outlives the client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm import FaultServer, LLMClient, LLMConfig, ReplayMissError
from llm.shards import MIN_BATCH
from tests.llm_helpers.common import outcome, work_requests

ROOT = Path(__file__).resolve().parents[1]


def config(url, store, **kw) -> LLMConfig:
    return LLMConfig(**({"base_urls": (url,), "model": "fault-model", "concurrency": 32, "store_path": str(store),
                         "timeout_s": 2.0} | kw))


def children(pid: int | None = None) -> set[int]:
    """Worker processes (spawned by multiprocessing, not its resource tracker) of ``pid``."""
    pid = pid or os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        found = {int(child) for child in fh.read().split()}
    return {child for child in found if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()}


def test_sharded_batch_equals_one_process_and_counts_the_same(tmp_path):
    requests = work_requests(600)
    outcomes, accounts, sent = [], [], []
    for processes in (1, 3):
        with FaultServer(latency=0.001, fault_rate=0.2, seed=3, retry_after_ms=5, timeout_hold=30) as srv:
            with LLMClient(config(srv.base_url, tmp_path / f"p{processes}.sqlite", processes=processes)) as client:
                before = children()
                progress = []
                results = client.run_batch(requests, lambda done, total: progress.append((done, total)))
                started = children() - before
                accounts.append(client.accounting.to_dict())
            sent.append(srv.stats()["requests"])
        assert len(started) == (processes if processes > 1 else 0)
        assert progress[0] == (0, 600) and progress[-1] == (600, 600)
        assert [r.key for r in results] == [r.key for r in requests]
        outcomes.append([outcome(r) for r in results])
    assert outcomes[0] == outcomes[1]
    assert sent[0] == sent[1]
    for name in ("requests", "calls", "sends", "retries", "reasks", "failures", "faults"):
        assert accounts[0][name] == accounts[1][name], name


def test_small_batches_stay_in_process(tmp_path):
    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "s.sqlite", processes=2)) as client:
        before = children()
        client.run_batch(work_requests(MIN_BATCH - 1))
        assert children() == before


def test_a_replay_miss_in_a_worker_process_is_raised_in_the_caller(tmp_path):
    store = tmp_path / "r.sqlite"
    with FaultServer() as srv:
        with LLMClient(config(srv.base_url, store, processes=2)) as client:
            client.run_batch(work_requests(MIN_BATCH))
    with LLMClient(config("http://127.0.0.1:9/v1", store, processes=2, store_mode="replay")) as client:
        assert len(client.run_batch(work_requests(MIN_BATCH))) == MIN_BATCH
        with pytest.raises(ReplayMissError):
            client.run_batch(work_requests(MIN_BATCH + 1))


def test_worker_processes_end_when_the_caller_is_killed(tmp_path):
    with FaultServer(latency=0.5, slots=8) as srv:
        script = (f"from llm import LLMClient, LLMConfig\nfrom tests.llm_helpers.common import work_requests\n"
                  f"c = LLMClient(LLMConfig(base_urls=({srv.base_url!r},), model='fault-model', processes=2, "
                  f"concurrency=8, store_path={str(tmp_path / 'k.sqlite')!r}))\nc.run_batch(work_requests(2000))\n")
        caller = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
        deadline = time.monotonic() + 60
        while srv.stats()["requests"] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = children(caller.pid)
        assert len(workers) == 2
        caller.send_signal(signal.SIGKILL)
        caller.wait(10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in workers):
            assert time.monotonic() < deadline, "a worker process outlived its caller"
            time.sleep(0.05)
        count = srv.stats()["requests"]
        time.sleep(1.0)
        assert srv.stats()["requests"] <= count + 8  # at most what was in flight at the kill


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_requests_go_through_aiohttp_when_the_openai_extra_is_installed(tmp_path):
    from llm.transport import AiohttpTransport

    assert AiohttpTransport is not None, "requirements.txt installs openai[aiohttp]"
    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "a.sqlite")) as client:
        lane = client._endpoints[0].lanes[0]
        assert isinstance(lane._client._transport.inner, AiohttpTransport)
        assert all(r.ok for r in client.run_batch(work_requests(3)))


def test_a_stream_is_answered_while_it_is_still_being_built(tmp_path):
    """The first requests of a RequestStream reach the server before the rest exist."""
    from llm import RequestStream

    requests = work_requests(600)
    with FaultServer(latency=0.01) as srv:
        def build():
            yield from requests[:64]
            deadline = time.monotonic() + 20
            while srv.stats()["requests"] == 0:  # a client that waits for the whole batch never gets here
                assert time.monotonic() < deadline, "nothing was sent before the stream was exhausted"
                time.sleep(0.01)
            yield from requests[64:]

        with LLMClient(config(srv.base_url, tmp_path / "st.sqlite", processes=2)) as client:
            streamed = client.run_batch(RequestStream(len(requests), build()))
            listed = client.run_batch(work_requests(600, run="list"))
    assert [r.key for r in streamed] == [r.key for r in requests]
    assert [outcome(r)["value"] is not None for r in streamed] == [True] * 600
    assert len(listed) == 600


def test_a_failing_stream_raises_in_the_caller_and_the_workers_stay_usable(tmp_path):
    from llm import RequestStream

    def build():
        yield from work_requests(300)
        raise ValueError("prompt building failed")

    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "f.sqlite", processes=2)) as client:
        with pytest.raises(ValueError, match="prompt building failed"):
            client.run_batch(RequestStream(400, build()))
        with pytest.raises(ValueError, match="299 given, but the batch said 300"):
            client.run_batch(RequestStream(300, iter(work_requests(299, run="short"))))
        assert all(r.ok for r in client.run_batch(work_requests(300, run="after")))


def test_an_interrupted_batch_ends_its_workers_and_the_next_batch_is_right(tmp_path):
    from llm import RequestStream

    def build():
        yield from work_requests(300)
        raise KeyboardInterrupt

    with FaultServer(latency=0.05) as srv, LLMClient(config(srv.base_url, tmp_path / "i.sqlite", processes=2)) as client:
        before = children()
        with pytest.raises(KeyboardInterrupt):
            client.run_batch(RequestStream(400, build()))
        assert children() == before  # the interrupted batch's workers are gone
        results = client.run_batch(work_requests(300, run="next"))
    assert [r.key for r in results] == [r.key for r in work_requests(300, run="next")] and all(r.ok for r in results)
