"""Fault tolerance against the HTTP test server: retries, re-asks, typed failures, accounting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from llm_runtime import FailureKind, LLMClient, LLMConfig, LLMRequest, ServerStopped
from llm_runtime.parsing import response_format
from tests.llm_helpers.common import Work, request_id, work_requests
from tests.llm_server import FAULT_KINDS, FaultServer

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

# the client's name for each server fault kind
CLIENT_KIND = {k: k for k in FAULT_KINDS} | {"disconnect": "connection_reset"}


def config(*urls, **kw) -> LLMConfig:
    base = {"base_urls": urls, "model": "fault-model", "store_mode": "off", "concurrency": 64, "timeout_s": 1.0,
            "max_retries": 2, "max_reasks": 2}
    return LLMConfig(**(base | kw))


def test_thousand_requests_with_thirty_percent_faults_of_every_kind():
    with FaultServer(latency=0.002, fault_rate=0.3, seed=7, retry_after_ms=5, timeout_hold=30) as srv:
        with LLMClient(config(srv.base_url)) as client:
            requests = work_requests(1000)
            results = client.run_batch(requests)
            acc = client.accounting.to_dict()
        stats = srv.stats()

    assert len(results) == 1000
    assert [r.key for r in results] == [r.key for r in requests]
    for r in results:
        assert (r.value is None) != (r.failure is None)
        if r.value is not None:
            assert isinstance(r.value, Work) and 0 <= r.value.hours <= 100
        else:
            assert isinstance(r.failure.kind, FailureKind)
    assert sum(r.ok for r in results) > 950  # retries and re-asks recover almost everything

    injected = stats["by_kind"]
    assert set(injected) == set(FAULT_KINDS), "every fault kind was injected"
    assert sum(injected.values()) >= 0.25 * stats["requests"]
    counted = {CLIENT_KIND[k]: v for k, v in injected.items()}
    assert acc["faults"] == counted, "every fault is counted, by kind"
    assert acc["sends"] == stats["requests"]
    assert acc["retries"] == acc["sends"] - acc["calls"]
    assert acc["reasks"] == sum(r.attempts - 1 for r in results)
    assert acc["failures"] == dict(Counter(r.failure.kind.value for r in results if r.failure))
    # (1 + max_retries) sends per answer, (1 + max_reasks) answers, and one more send after each 429 waited out
    bound = (1 + 2) * (1 + 2) + acc["rate_limit_waits"]
    per_request = stats["by_request_id"]
    assert set(per_request) == {request_id(r.key) for r in requests}
    assert max(per_request.values()) <= bound
    for r in results:
        assert r.sends == per_request[request_id(r.key)]


def test_a_request_is_never_sent_more_than_retries_and_reasks_allow():
    # every answer is broken: each request is re-asked until the limit, then ends in a typed failure
    with FaultServer(fault_rate=1.0, faults=("refusal",)) as srv:
        with LLMClient(config(srv.base_url, max_reasks=1)) as client:
            results = client.run_batch(work_requests(20))
            acc = client.accounting.to_dict()
        stats = srv.stats()
    assert all(r.failure.kind is FailureKind.REFUSAL and r.attempts == 2 for r in results)
    assert set(stats["by_request_id"].values()) == {2}
    assert acc["failures"] == {"refusal": 20} and acc["reasks"] == 20


def test_http_faults_are_retried_by_the_client_up_to_max_retries():
    with FaultServer(fault_rate=1.0, faults=("server_error",)) as srv:
        with LLMClient(config(srv.base_url, max_retries=3)) as client:
            with pytest.raises(ServerStopped, match=r"every request of a batch of 5 failed \(server_error 5\)"):
                client.run_batch(work_requests(5))
            acc = client.accounting.to_dict()
        stats = srv.stats()
    assert set(stats["by_request_id"].values()) == {4}
    assert acc["retries"] == 15 and acc["faults"] == {"server_error": 20} and acc["failures"] == {"server_error": 5}


def test_429_is_waited_out_and_retry_after_is_honoured():
    # 30 % of requests answered 429 with Retry-After: 1 s: every request ends with an answer, the waits counted
    with FaultServer(fault_rate=0.3, faults=("rate_limit",), retry_after_ms=None, slots=8) as srv:
        with LLMClient(config(srv.base_url, concurrency=8)) as client:
            start = time.perf_counter()
            results = client.run_batch(work_requests(40))
            took = time.perf_counter() - start
            acc = client.accounting.to_dict()
        stats = srv.stats()
    rate_limited = stats["by_kind"]["rate_limit"]
    assert rate_limited >= 5 and all(r.ok for r in results)
    assert acc["failures"] == {} and acc["rate_limit_waits"] == acc["faults"]["rate_limit"] == rate_limited
    assert acc["rate_limit_wait_s"] >= rate_limited * 1.0 and took >= 1.0  # each asked for a second


def test_429_beyond_the_wait_budget_stops_the_batch():
    with FaultServer(fault_rate=1.0, faults=("rate_limit",), retry_after_ms=None, retry_after_s=3600) as srv:
        with LLMClient(config(srv.base_url, rate_limit_wait_s=60)) as client:
            with pytest.raises(ServerStopped, match=r"answers 429: waiting 3,600 s more would go beyond the "
                                                    r"rate-limit budget of 60 s"):
                client.run_batch(work_requests(3))
            acc = client.accounting.to_dict()
    assert acc["rate_limit_waits"] == 0 and acc["faults"]["rate_limit"] >= 1


def test_a_server_that_always_answers_429_is_given_up_once_the_budget_is_spent():
    with FaultServer(fault_rate=1.0, faults=("rate_limit",), retry_after_ms=1) as srv:
        with LLMClient(config(srv.base_url, rate_limit_wait_s=2)) as client:
            with pytest.raises(ServerStopped, match="beyond the rate-limit budget of 2 s"):
                client.run_batch(work_requests(1))  # (one: a second would be cut off wherever it stands)
            acc = client.accounting.to_dict()
        stats = srv.stats()
    # the backoff doubles from 0.25 s whatever the server asks: 0.25 + 0.5 + 1 s, then 2 s is beyond the budget
    assert acc["rate_limit_waits"] == 3 and stats["requests"] == 4


def _reask_script(messages):
    """Junk first; a valid answer once the layer has re-asked with the error."""
    if any("invalid" in str(m.get("content")) for m in messages if m["role"] == "user"):
        return {"hours": 38, "reason": "corrected"}
    return "Sure! Here is my answer: hours = forty"


def test_reask_with_the_error_recovers_a_bad_answer():
    with FaultServer(script=_reask_script) as srv, LLMClient(config(srv.base_url)) as client:
        result = client.complete(work_requests(1)[0])
    assert result.ok and result.value == Work(hours=38, reason="corrected")
    assert result.attempts == 2


@pytest.mark.parametrize("answer,expected", [
    ("```json\n{\"hours\": 40, \"reason\": \"ok\"}\n```", 40),
    ("I think {\"hours\": 22, \"reason\": \"fine\"} is right.", 22),
])
def test_fences_and_prose_around_the_json_are_tolerated_end_to_end(answer, expected):
    with FaultServer(script=lambda messages: answer) as srv, LLMClient(config(srv.base_url)) as client:
        result = client.complete(work_requests(1)[0])
    assert result.ok and result.value.hours == expected and result.attempts == 1


@pytest.mark.parametrize("hours", ["40 hours", "22%", "4e1"])
def test_a_number_in_words_is_re_asked_never_read(hours):
    with FaultServer(script=lambda messages: {"hours": hours, "reason": "x"}) as srv, \
            LLMClient(config(srv.base_url)) as client:
        result = client.complete(work_requests(1)[0])
        accounting = client.accounting.to_dict()
    assert not result.ok and result.failure.kind is FailureKind.INVALID_TYPE and result.attempts == 3
    assert accounting["reasks"] == 2 and accounting["faults"] == {"invalid_type": 3}


def test_fallback_to_json_object_then_text_is_remembered_per_server():
    answer = {"hours": 12, "reason": "ok"}
    with FaultServer(formats=("text",), script=lambda m: answer) as srv:
        with LLMClient(config(srv.base_url, concurrency=1)) as client:
            first = client.run_batch(work_requests(3))
            second = client.run_batch(work_requests(3, run="again"))
            acc = client.accounting.to_dict()
        stats = srv.stats()
    assert all(r.ok and r.value.hours == 12 for r in first + second)
    assert stats["format_rejections"] == {"json_schema": 1, "json_object": 1}
    assert stats["formats_seen"]["text"] == 6
    assert acc["format_fallbacks"] == 2 and acc["faults"] == {}


def test_schema_is_sent_strict():
    with FaultServer(script=lambda messages: {"hours": 1, "reason": "x"}) as srv:
        with LLMClient(config(srv.base_url)) as client:
            client.complete(work_requests(1)[0])
        assert srv.stats()["formats_seen"] == {"json_schema": 1}
    rf = response_format(Work, "json_schema")
    assert rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"]["additionalProperties"] is False
    assert rf["json_schema"]["schema"]["required"] == ["hours", "reason"]


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_alone_is_injected_and_counted_as_its_kind(kind):
    with FaultServer(fault_rate=0.5, faults=(kind,), seed=5, retry_after_ms=1, timeout_hold=30) as srv:
        with LLMClient(config(srv.base_url, timeout_s=0.5)) as client:
            client.run_batch(work_requests(20))
            acc = client.accounting.to_dict()
        injected = srv.stats()["by_kind"]
    assert injected.get(kind, 0) > 0
    assert acc["faults"] == {CLIENT_KIND[kind]: injected[kind]}


def test_every_server_takes_requests_under_its_own_limit():
    with FaultServer() as first, FaultServer() as second:
        with LLMClient(config(first.base_url, second.base_url, concurrency=1)) as client:
            assert client.limit == 2  # one in flight per server
            results = client.run_batch(work_requests(40))
        assert all(r.ok for r in results)
        assert first.stats()["requests"] + second.stats()["requests"] == 40
        assert first.stats()["requests"] > 0 and second.stats()["requests"] > 0


class Server:
    """What the pool reads of an endpoint."""

    def __init__(self, limit: int):
        self.outstanding = self.sent = 0
        self.ceiling, self.limit, self.paused_until = limit, float(limit), 0.0


def test_the_pool_sends_to_the_least_loaded_server_and_queues_beyond_every_limit():
    from llm_runtime.pool import EndpointPool

    async def scenario():
        a, b = Server(2), Server(4)
        pool = EndpointPool([a, b])
        taken = [await pool.acquire() for _ in range(6)]
        assert (a.outstanding, b.outstanding) == (2, 4) and pool.full()
        assert taken[:2] == [a, b]  # both idle: fewest sent first; then the lower share of its limit
        waiting = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        assert not waiting.done()
        pool.release(b, ok=True)  # a freed slot goes to the first in line
        assert await waiting is b and b.outstanding == 4
        return pool, a, b

    asyncio.run(scenario())


def test_a_429_halves_the_servers_limit_and_pauses_it_then_answers_grow_it_back():
    from llm_runtime.pool import EndpointPool

    async def scenario():
        a, b = Server(8), Server(8)
        pool = EndpointPool([a, b])
        first = await pool.acquire()
        other = b if first is a else a
        pool.back_off(first, 0.2)
        assert first.limit == 4 and first.outstanding == 0
        assert [await pool.acquire() for _ in range(8)] == [other] * 8  # the paused server takes nothing
        late = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        assert not late.done()
        assert await late is first  # once its pause is over
        for _ in range(20):
            pool.release(first, ok=True)
            first.outstanding += 1
        assert 4 < first.limit <= 8

    asyncio.run(scenario())


def test_progress_callback_runs_in_the_callers_thread_and_counts_to_total():
    calls = []
    with FaultServer(latency=0.001) as srv, LLMClient(config(srv.base_url)) as client:
        client.run_batch(work_requests(50),
                         progress=lambda done, total: calls.append((done, total, threading.get_ident())))
    assert calls[0][:2] == (0, 50) and calls[-1][:2] == (50, 50)
    assert [c[0] for c in calls] == list(range(51))
    assert {c[2] for c in calls} == {threading.get_ident()}


def test_batches_reuse_one_event_loop():
    with FaultServer() as srv:
        with LLMClient(config(srv.base_url)) as client:
            loop = client._loop.loop
            for i in range(3):
                client.run_batch(work_requests(5, run=f"b{i}"))
                assert client._loop.loop is loop and loop.is_running()
        assert not client._loop.thread.is_alive()


def test_an_unexpected_error_inside_one_request_is_a_typed_failure():
    class Exploding(Work):
        @classmethod
        def model_validate(cls, *a, **k):  # a caller's model that misbehaves
            raise RuntimeError("boom")

    with FaultServer() as srv, LLMClient(config(srv.base_url)) as client:
        bad = LLMRequest(key="bad", messages=[{"role": "user", "content": "x"}], schema=Exploding)
        results = client.run_batch([bad] + work_requests(3))
    assert results[0].failure is not None and all(r.ok for r in results[1:])


@pytest.mark.parametrize("requests,waves", [(8, 2), (12, 3)])
def test_the_test_server_answers_slots_at_a_time_each_after_its_latency(requests, waves):
    """n requests on s slots: none is answered before its wave's ``latency`` (a bound that load cannot break)."""
    with FaultServer(latency=0.25, slots=4) as srv, LLMClient(config(srv.base_url, concurrency=16)) as client:
        start = time.perf_counter()
        assert all(r.ok for r in client.run_batch(work_requests(requests)))
        assert time.perf_counter() - start >= waves * 0.25


def test_the_test_server_gives_each_request_the_slot_that_frees_first():
    srv = FaultServer(latency=1.0, slots=2)
    srv._free_at = [0.0, 0.0]
    assert [srv._take_slot(t) for t in (0.0, 0.0, 0.1, 0.2, 5.0)] == [1.0, 1.0, 2.0, 2.0, 6.0]
