"""Batches in one client process: streamed requests, a failing or interrupted stream, the HTTP transport."""

from __future__ import annotations


import threading
import time

import pytest

from llm_runtime import LLMClient, LLMConfig, RequestStream
from tests.llm_helpers.common import outcome, work_requests
from tests.llm_server import FaultServer

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset


def config(url, store, **kw) -> LLMConfig:
    return LLMConfig(**({"base_urls": (url,), "model": "fault-model", "store_path": str(store)} | kw))


def test_the_default_settings_keep_a_256_slot_server_busy():
    assert LLMConfig().concurrency >= 256


def test_requests_go_through_openai_pythons_aiohttp_client(tmp_path):
    import openai

    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "a.sqlite")) as client:
        assert isinstance(client._endpoints[0].client._client, openai.DefaultAioHttpClient)
        assert all(r.ok for r in client.run_batch(work_requests(3)))


def test_a_stream_is_built_as_the_servers_take_requests(tmp_path):
    """Each request of a RequestStream is built once the ones before it are on their way (or waiting for a
    server, at most LOOKAHEAD of them): building the last never holds up sending the first."""
    from llm_runtime.engine import LOOKAHEAD

    requests = work_requests(120)
    ahead = []
    with FaultServer(latency=0.02) as srv, LLMClient(config(srv.base_url, tmp_path / "st.sqlite",
                                                            concurrency=4)) as client:
        def build():
            for k, request in enumerate(requests):
                ahead.append(k - sum(ep.sent for ep in client._endpoints))  # built but not yet sent
                yield request

        streamed = client.run_batch(RequestStream(len(requests), build()))
    assert [r.key for r in streamed] == [r.key for r in requests]
    assert all(outcome(r)["value"] is not None for r in streamed)
    assert max(ahead) <= LOOKAHEAD and ahead[-1] > 0  # a server of 4 slots: the stream waits for it


def test_a_request_cannot_start_a_batch_while_it_is_being_built(tmp_path):
    with FaultServer() as srv, LLMClient(config(srv.base_url, tmp_path / "nested.sqlite")) as client:
        def build():
            yield from work_requests(2)
            client.run_batch(work_requests(1, run="inner"))

        with pytest.raises(RuntimeError, match="while a batch's requests are being built"):
            client.run_batch(build())
        assert all(r.ok for r in client.run_batch(work_requests(3, run="after")))


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




def test_close_returns_even_when_the_clients_loop_is_stuck(tmp_path, monkeypatch):
    """A loop thread that never comes back (say, waiting on a lock that a Ctrl-C left taken) cannot hang closing:
    each wait is bounded, and the stuck daemon thread is left behind."""
    from llm_runtime import client as client_module

    monkeypatch.setattr(client_module, "CLOSE_TIMEOUT_S", 1.0)
    release = threading.Event()
    with FaultServer() as srv:
        client = LLMClient(config(srv.base_url, tmp_path / "stuck.sqlite"))
        client._loop.loop.call_soon_threadsafe(release.wait)  # the loop's thread blocks here
        start = time.monotonic()
        client.close()
        took = time.monotonic() - start
        release.set()
    assert took < 10, took  # two bounded waits of 1 s (and the store's close), not for ever
