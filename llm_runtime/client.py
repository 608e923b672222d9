"""Synchronous façade for Mesa code: one persistent event loop in a background thread."""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sized
from typing import Self

import openai

from validation import ParameterError

from .accounting import Accounting
from .config import Backend, LLMConfig, api_key_from_env, redact, redact_url, resolve_backend, secrets_of
from .engine import BuildInterrupted, Engine
from .errors import ServerStopped
from .records import FailureKind, LLMRequest, LLMResult
from .store import ResponseStore
from .transport import Endpoint

log = logging.getLogger("llm_runtime")
Progress = Callable[[int, int], None]


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-loop", daemon=True)
        self.thread.start()

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro, timeout: float | None = None):
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(CLOSE_TIMEOUT_S)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()


_ENDED = object()
CLOSE_TIMEOUT_S = 10.0  # closing never waits longer than this for the loop: a loop that is stuck is left behind


async def _then_put(batch, finished: queue.SimpleQueue, ended) -> list[LLMResult]:
    """``batch``'s results; ``ended`` goes into ``finished`` when it ends, whatever the outcome."""
    try:
        return await batch
    finally:
        finished.put(ended)


async def _cancel_pending() -> None:
    """Cancel every other task on this loop and wait until they have ended."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class LLMClient:
    """``LLMClient(config).run_batch(requests) -> results`` in input order; a context manager.

    Start-up validates the configuration, starts the embedded model when it is the backend, and checks that
    every server answers, so misconfiguration fails before any simulation work.
    """

    def __init__(self, config: LLMConfig | None = None, *, env: dict | None = None):
        self.config = cfg = config or LLMConfig()
        self.backend: Backend = resolve_backend(cfg, env)
        self.accounting = Accounting()
        self.embedded = None
        self._loop: _LoopThread | None = None
        self._engine: Engine | None = None
        self._endpoints: list[Endpoint] = []
        self._closed = False
        try:  # a damaged or unwritable store raises StoreCorruptError or StoreError itself, naming the file
            self.store = (ResponseStore(cfg.store_path, writable=cfg.store_mode == "record")
                          if cfg.store_mode != "off" else None)
        except (OSError, sqlite3.Error) as err:
            raise ParameterError("store_path", f"cannot open {cfg.store_path!r} ({type(err).__name__})",
                                 "a writable SQLite file path") from None
        urls, model = self.backend.base_urls, self.backend.model
        embedded = self.backend.kind == "embedded"
        # the embedded server answers `slots` requests at a time: more in flight would only wait there,
        # against the request timeout
        self.concurrency = min(cfg.concurrency, cfg.embedded_slots) if embedded else cfg.concurrency
        try:
            if embedded:
                from .embedded import SHARED

                if cfg.store_mode != "replay":
                    self.embedded = SHARED.acquire(self.backend.model_path, slots=cfg.embedded_slots,
                                                   ctx_per_slot=cfg.embedded_ctx_per_slot,
                                                   threads=cfg.embedded_threads)
                    urls = (self.embedded.base_url,)
                else:
                    urls = ("http://127.0.0.1:9/v1",)  # replay sends nothing
            self._loop = _LoopThread()
            self._endpoints = self._loop.run(self._make_endpoints(urls))
            if cfg.check_server and cfg.store_mode != "replay":
                model = self._loop.run(self._check(model, known=not embedded))
            if model is None:
                raise ParameterError("model", "not set", "a model name served at base_urls (model, $LLM_MODEL)")
            self.model = model
            self._engine = Engine(self._endpoints, model=model, store=self.store, config=cfg,
                                  accounting=self.accounting,
                                  secrets=secrets_of(api_key_from_env(env)))
        except BaseException:
            self.close()
            raise
        atexit.register(self.close)

    async def _make_endpoints(self, urls: tuple[str, ...]) -> list[Endpoint]:
        """One endpoint per server, made on the loop that will use them; each may take every request."""
        cfg = self.config
        return [Endpoint(url, self.backend.api_key or "not-needed", concurrency=self.concurrency,
                         timeout_s=cfg.timeout_s, connect_timeout_s=cfg.connect_timeout_s,
                         max_retries=cfg.max_retries, deadline_s=cfg.deadline_s,
                         max_answer_bytes=cfg.max_answer_bytes) for url in urls]

    async def _check(self, model: str | None, known: bool) -> str | None:
        """Ask each server for its models; unreachable servers, rejected keys and (``known``) a model the server
        does not list are config errors."""
        for ep in self._endpoints:
            client = ep.client.with_options(max_retries=0, timeout=self.config.connect_timeout_s)
            shown = redact_url(ep.base_url)
            try:
                listed = await client.models.list()
                ids = [m.id for m in listed.data]
                model = model or (ids[0] if ids else None)
                if known and ids and model not in ids:
                    served = redact(", ".join(str(i)[:100] for i in ids[:20]), secrets_of(self.backend.api_key)) \
                        + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")  # the server's words: no key
                    raise ParameterError("model", f"{shown} has no model {model!r}", f"a model it serves: {served}")
            except openai.AuthenticationError:
                raise ParameterError("api_key", f"rejected by {shown}",
                                     "a valid key in OPENAI_API_KEY or LLM_API_KEY") from None
            except openai.APIConnectionError as err:
                raise ParameterError("base_urls", f"cannot reach {shown} ({type(err).__name__})",
                                     "the URL of a running OpenAI-compatible server") from None
            except openai.APIStatusError:
                pass  # reachable; some servers have no /models
        return model

    # ---- public API -----------------------------------------------------------------------------
    def run_batch(self, requests: Iterable[LLMRequest], progress: Progress | None = None) -> list[LLMResult]:
        """Run all requests concurrently; results in input order. ``progress(done, total)`` runs in this thread.

        ``requests``: a sequence, or any iterable such as a ``RequestStream``, which is iterated on the client's
        own thread as the servers take requests, while this thread waits.
        """
        if self._closed:
            raise RuntimeError("LLMClient is closed")
        if threading.current_thread() is self._loop.thread:
            raise RuntimeError("run_batch cannot be called while a batch's requests are being built")
        if progress is not None and not isinstance(requests, Sized):
            requests = list(requests)
        self._engine.rejected = None
        finished: queue.SimpleQueue = queue.SimpleQueue()  # each answered request's index, then _ENDED
        batch = self._loop.submit(_then_put(self._engine.run_batch(requests, finished.put if progress else None),
                                            finished, _ENDED))
        try:
            # Until the batch has ended this thread waits on the queue alone, never on the batch's Future: a Ctrl-C
            # that lands just after a `with lock:` has taken the Future's lock leaves it taken (`with` is not atomic
            # with respect to signals), and the loop thread, which must take it to finish the batch, would wait for
            # ever.
            done, n = 0, len(requests) if progress is not None else 0
            if progress is not None:
                progress(0, n)
            while True:
                try:
                    item = finished.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _ENDED:
                    break
                done += 1
                progress(done, n)
            try:
                results = batch.result()
            except BuildInterrupted as err:
                raise err.error from None
        except BaseException:  # e.g. Ctrl-C, a replay miss, or the caller's generator failed: end the batch
            batch.cancel()
            try:  # and let the loop finish the step it is in (building a request, perhaps), so that nothing of
                self._loop.submit(asyncio.sleep(0)).result(timeout=10)  # the batch runs once this raises
            except Exception:  # noqa: BLE001 - a loop that is gone has nothing left running
                pass
            raise
        rejected = self._engine.rejected
        if rejected is not None and results and all(r.failure is not None and r.failure.kind is FailureKind.HTTP_ERROR
                                                   for r in results):
            # every request failed as a wrong setting makes them fail: no later batch would do better
            raise ParameterError(*rejected)
        if results and not all(r.from_store for r in results) and all(
                r.failure is not None and r.failure.kind.is_transient and r.failure.kind is not FailureKind.INTERNAL
                for r in results):  # (a replay only reads what happened)
            kinds = collections.Counter(r.failure.kind.value for r in results)
            where = ", ".join(redact_url(ep.base_url) for ep in self._endpoints)
            raise ServerStopped(f"{where} stopped answering: every request of a batch of {len(results):,} failed ("
                                + ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items())) + ")")
        return results

    @property
    def limit(self) -> int:
        """Requests that may be in flight now, over every server (lower while a server answers 429)."""
        return self._engine.pool.limit

    def complete(self, request: LLMRequest) -> LLMResult:
        return self.run_batch([request])[0]

    def export_transcripts(self, path: str | os.PathLike) -> int:
        """Write the stored exchanges as JSONL; returns the number of lines."""
        if self.store is None:
            raise RuntimeError("export_transcripts needs a response store (store_mode record or replay)")
        return self.store.export_jsonl(path)

    def close(self) -> None:
        """Close connections, stop the loop and the embedded server (also done at exit)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            try:
                self._loop.run(_cancel_pending(), CLOSE_TIMEOUT_S)  # e.g. a batch interrupted by Ctrl-C: end it
                for ep in self._endpoints:
                    self._loop.run(ep.aclose(), CLOSE_TIMEOUT_S)
            except Exception as err:  # noqa: BLE001 - closing must not raise
                log.debug("closing the LLM client: %s", type(err).__name__)
            self._loop.stop()
        if self.embedded is not None:
            from .embedded import SHARED

            SHARED.release(self.embedded)  # stopped when no other client in this process uses it
        if self.store is not None:
            self.store.close()
        atexit.unregister(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
