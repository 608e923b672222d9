"""Synchronous façade for Mesa code: one persistent event loop in a background thread."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Self

import openai

from .accounting import Accounting
from .config import Backend, LLMConfig, resolve_backend
from .engine import Engine
from .errors import LLMConfigError
from .records import LLMRequest, LLMResult, RequestStream
from .shards import MIN_BATCH, ShardPool, ShardSpec, build_endpoints, build_engine, picklable
from .store import ResponseStore
from .transport import Endpoint

log = logging.getLogger("llm")
Progress = Callable[[int, int], None]


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-loop", daemon=True)
        self.thread.start()

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro):
        return self.submit(coro).result()

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()


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
        self.config = config or LLMConfig.from_env()
        self.backend: Backend = resolve_backend(self.config, env)
        self.accounting = Accounting()
        self.embedded = None
        self._loop: _LoopThread | None = None
        self._endpoints: list[Endpoint] = []
        self._closed = False
        cfg = self.config
        try:
            self.store = ResponseStore(cfg.store_path) if cfg.store_mode != "off" else None
        except (OSError, sqlite3.Error) as err:
            raise LLMConfigError("store_path", f"cannot open {cfg.store_path!r} ({type(err).__name__})",
                                 "a writable SQLite file path") from None
        urls, model = self.backend.base_urls, self.backend.model
        # the embedded server works through `slots` requests at a time: more in flight would only let time
        # spent queueing there count against the request timeout
        embedded = self.backend.kind == "embedded"
        self.concurrency = min(cfg.concurrency, cfg.embedded_slots) if embedded else cfg.concurrency
        self._processes = cfg.processes or (1 if embedded else max(1, min(os.cpu_count() or 1, 4)))
        self._shards: ShardPool | None = None
        try:
            if self.backend.kind == "embedded":
                from .embedded import EmbeddedServer

                model = os.path.splitext(os.path.basename(self.backend.model_path))[0]
                if cfg.store_mode != "replay":
                    self.embedded = EmbeddedServer(self.backend.model_path, slots=cfg.embedded_slots,
                                                   ctx_per_slot=cfg.embedded_ctx_per_slot,
                                                   threads=cfg.embedded_threads).start()
                    urls = (self.embedded.base_url,)
                else:
                    urls = ("http://127.0.0.1:9/v1",)
            self._loop = _LoopThread()
            endpoints = self._endpoints = self._loop.run(self._make_endpoints(urls))
            if cfg.check_server and cfg.store_mode != "replay":
                model = self._loop.run(self._check(endpoints, model))
            if model is None:
                raise LLMConfigError("model", "not set", "a model name served at base_urls (model / LLM_MODEL)")
            self.model = model
            self._engine = self._loop.run(self._make_engine(endpoints, model))
        except BaseException:
            self.close()
            raise
        atexit.register(self.close)

    def _spec(self, urls, model, processes: int = 1) -> ShardSpec:
        return ShardSpec(self.config, tuple(urls), self.backend.api_key or "not-needed", model,
                         -(-self.concurrency // processes))

    async def _make_endpoints(self, urls) -> list[Endpoint]:
        return build_endpoints(self._spec(urls, None))

    async def _make_engine(self, endpoints, model) -> Engine:
        return build_engine(self._spec([ep.base_url for ep in endpoints], model), endpoints, self.store,
                            self.accounting)

    async def _check(self, endpoints: list[Endpoint], model: str | None) -> str | None:
        """Ask each server for its models; unreachable servers and rejected keys are config errors."""
        for ep in endpoints:
            client = ep.client.with_options(max_retries=0, timeout=self.config.connect_timeout_s)
            try:
                listed = await client.models.list()
                ids = [m.id for m in listed.data]
                model = model or (ids[0] if ids else None)
            except openai.AuthenticationError:
                raise LLMConfigError("api_key", f"rejected by {ep.base_url}",
                                     "a valid key in OPENAI_API_KEY or LLM_API_KEY") from None
            except openai.APIConnectionError as err:
                raise LLMConfigError("base_url", f"cannot reach {ep.base_url} ({type(err).__name__})",
                                     "the URL of a running OpenAI-compatible server") from None
            except openai.APIStatusError:
                pass  # reachable; some servers have no /models
        return model

    # ---- public API -----------------------------------------------------------------------------
    def run_batch(self, requests: Sequence[LLMRequest] | RequestStream,
                  progress: Progress | None = None) -> list[LLMResult]:
        """Run all requests concurrently; results in input order. ``progress(done, total)`` runs in this thread.

        ``requests``: a sequence, or a ``RequestStream`` whose requests are built as they are taken (with
        worker processes, the first ones are answered while the rest are still being built).
        """
        if self._closed:
            raise RuntimeError("LLMClient is closed")
        total = len(requests)
        if self._processes > 1 and total >= MIN_BATCH:
            iterator = iter(requests)
            head = list(itertools.islice(iterator, 1))  # later chunks are checked as they are sent
            if picklable(head):
                return self._run_sharded(itertools.chain(head, iterator), total, progress)
            requests = head + list(iterator)
        elif not isinstance(requests, Sequence):
            requests = list(requests)
        if progress is None:
            return self._loop.run(self._engine.run_batch(requests))
        done_q: queue.SimpleQueue = queue.SimpleQueue()
        future = self._loop.submit(self._engine.run_batch(requests, done_q.put))
        done = 0
        progress(0, total)
        while done < total:
            try:
                done_q.get(timeout=0.2)
                done += 1
                progress(done, total)
            except queue.Empty:
                if future.done():
                    break
        return future.result()

    def _run_sharded(self, requests: Iterable[LLMRequest], total: int, progress: Progress | None) -> list[LLMResult]:
        if self._shards is None:
            self._shards = ShardPool(self._processes, self._spec([ep.base_url for ep in self._endpoints], self.model,
                                                                 self._processes))
        pool, endpoints = self._shards, self._endpoints
        pool.format_levels = [max(a, ep.format_level) for a, ep in zip(pool.format_levels, endpoints, strict=True)]
        try:
            return pool.run_batch(requests, total, self.accounting, progress)
        finally:
            for ep, level in zip(endpoints, pool.format_levels, strict=True):
                ep.format_level = level

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
        if self._shards is not None:
            self._shards.close()
        if self._loop is not None:
            engine = getattr(self, "_engine", None)
            try:
                self._loop.run(_cancel_pending())  # e.g. a batch interrupted by Ctrl-C: end it before closing
                if engine is not None:
                    self._loop.run(engine.aclose())
                else:
                    for ep in self._endpoints:
                        self._loop.run(ep.aclose())
            except Exception as err:  # noqa: BLE001 - closing must not raise
                log.debug("closing the LLM client: %s", type(err).__name__)
            self._loop.stop()
        if self.embedded is not None:
            self.embedded.stop()
        if self.store is not None:
            self.store.close()
        atexit.unregister(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
