"""Batches in one client process: streamed requests, a failing or interrupted stream, the HTTP transport."""

from __future__ import annotations

import gc
import time

import pytest

from llm_runtime import LLMClient, LLMConfig, RequestStream
from tests.llm_helpers.common import outcome, work_requests
from tests.llm_server import FaultServer


def config(url, store, **kw) -> LLMConfig:
    return LLMConfig(**({"base_urls": (url,), "model": "fault-model", "store_path": str(store)} | kw))


def test_the_default_settings_keep_a_256_slot_server_busy():
    assert LLMConfig().concurrency >= 256


def test_requests_go_through_aiohttp_when_the_openai_extra_is_installed(tmp_path):
    from llm_runtime.transport import AiohttpTransport

    assert AiohttpTransport is not None, "requirements.txt installs openai[aiohttp]"
    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "a.sqlite")) as client:
        assert isinstance(client._endpoints[0].client._client._transport.inner, AiohttpTransport)
        assert all(r.ok for r in client.run_batch(work_requests(3)))


def test_a_stream_is_answered_while_it_is_still_being_built(tmp_path):
    """The first requests of a RequestStream reach the server before the rest exist."""
    requests = work_requests(200)
    with FaultServer() as srv:
        def build():
            yield from requests[:20]
            deadline = time.monotonic() + 60
            while srv.stats()["requests"] == 0:  # a client that waits for the whole batch never gets here
                assert time.monotonic() < deadline, "nothing was sent before the stream was exhausted"
                time.sleep(0.01)
            yield from requests[20:]

        with LLMClient(config(srv.base_url, tmp_path / "st.sqlite")) as client:
            streamed = client.run_batch(RequestStream(len(requests), build()))
    assert [r.key for r in streamed] == [r.key for r in requests]
    assert all(outcome(r)["value"] is not None for r in streamed)


def test_a_failing_stream_raises_in_the_caller_and_the_client_stays_usable(tmp_path):
    def build():
        yield from work_requests(30)
        raise ValueError("prompt building failed")

    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "f.sqlite")) as client:
        with pytest.raises(ValueError, match="prompt building failed"):
            client.run_batch(RequestStream(40, build()))
        with pytest.raises(ValueError, match="29 given, but the batch said 30"):
            client.run_batch(RequestStream(30, iter(work_requests(29, run="short"))))
        assert all(r.ok for r in client.run_batch(work_requests(30, run="after")))


def test_an_interrupted_batch_ends_and_the_next_batch_is_right(tmp_path):
    def build():
        yield from work_requests(30)
        raise KeyboardInterrupt

    with FaultServer(latency=0.05) as srv, LLMClient(config(srv.base_url, tmp_path / "i.sqlite")) as client:
        with pytest.raises(KeyboardInterrupt):
            client.run_batch(RequestStream(40, build()))
        results = client.run_batch(work_requests(30, run="next"))
    assert [r.key for r in results] == [r.key for r in work_requests(30, run="next")] and all(r.ok for r in results)


def test_any_iterable_is_a_batch(tmp_path):
    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "g.sqlite")) as client:
        results = client.run_batch(r for r in work_requests(5))
    assert [r.key for r in results] == [r.key for r in work_requests(5)]


def test_the_garbage_collector_is_held_off_only_while_the_first_requests_go_out(tmp_path):
    """Off while the batch is built and sent, on again once answers arrive; never left off after a batch."""
    seen = []

    def build():
        for request in work_requests(40):
            seen.append(gc.isenabled())
            yield request

    with FaultServer(latency=0.01) as srv, LLMClient(config(srv.base_url, tmp_path / "gc.sqlite")) as client:
        assert gc.isenabled()
        answered = []
        results = client.run_batch(RequestStream(40, build()),
                                   progress=lambda done, total: answered.append(gc.isenabled()) if done else None)
        assert all(r.ok for r in results)
        assert not any(seen) and answered[-1] and gc.isenabled()

        def failing():
            yield from work_requests(5, run="failing")
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            client.run_batch(RequestStream(10, failing()))
        assert gc.isenabled()


def test_a_collector_the_user_turned_off_stays_off(tmp_path):
    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "off.sqlite")) as client:
        gc.disable()
        try:
            assert all(r.ok for r in client.run_batch(work_requests(10)))
            assert not gc.isenabled()
        finally:
            gc.enable()
