"""Large batches split over worker processes, each with its own event loop, connections and store connection.

One Python process spends about a millisecond of CPU per request in the HTTP client, so a single process
tops out near a thousand requests a second. ``ShardPool`` sends contiguous slices of a batch to ``n``
processes and puts the results back in input order. Each process persists every answer (SQLite WAL, safe
across processes) before returning it, so replay, resume and the response store behave exactly as in one
process.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .accounting import Accounting
from .config import LLMConfig
from .engine import Engine
from .records import LLMRequest, LLMResult
from .store import ResponseStore
from .transport import Endpoint

PROGRESS_EVERY_S = 0.1
PR_SET_PDEATHSIG = 1
MIN_BATCH = 256  # smaller batches run in the calling process: starting and feeding workers costs more


def shardable(requests: Sequence[LLMRequest]) -> bool:
    """Large enough, and every answer schema importable by name in another process."""
    if len(requests) < MIN_BATCH:
        return False
    try:
        for schema in {r.schema for r in requests}:
            pickle.dumps(schema)
    except Exception:  # noqa: BLE001 - e.g. a schema class defined inside a function
        return False
    return True


@dataclass(frozen=True)
class ShardSpec:
    """What a worker process needs to talk to the servers (the key travels over a pipe, never to disk)."""

    config: LLMConfig
    base_urls: tuple[str, ...]
    api_key: str
    model: str | None
    concurrency: int


def build_endpoints(spec: ShardSpec) -> list[Endpoint]:
    """One endpoint per base URL; must run on the event loop that will use them."""
    cfg = spec.config
    return [Endpoint(i, url, spec.api_key, concurrency=spec.concurrency, timeout_s=cfg.timeout_s,
                     connect_timeout_s=cfg.connect_timeout_s, max_retries=cfg.max_retries)
            for i, url in enumerate(spec.base_urls)]


def build_engine(spec: ShardSpec, endpoints: list[Endpoint], store: ResponseStore | None,
                 accounting: Accounting) -> Engine:
    """The engine for ``spec``; must run on the event loop that will use it."""
    cfg = spec.config
    return Engine(endpoints, model=spec.model, store=store, mode=cfg.store_mode, concurrency=spec.concurrency,
                  max_reasks=cfg.max_reasks, temperature=cfg.temperature, seed=cfg.seed, max_tokens=cfg.max_tokens,
                  accounting=accounting)


def _shard_main(conn, spec: ShardSpec, kill_with_parent: bool = False) -> None:
    """Worker process: answer batches sent over ``conn`` until it receives None or the pipe closes."""
    exit_with_parent(kill_with_parent)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    store = ResponseStore(spec.config.store_path) if spec.config.store_mode != "off" else None
    accounting = Accounting()

    async def make() -> Engine:
        return build_engine(spec, build_endpoints(spec), store, accounting)

    engine = loop.run_until_complete(make())
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                break
            if message is None:
                break
            requests, format_levels = message
            for ep, level in zip(engine.endpoints, format_levels, strict=True):
                ep.format_level = max(ep.format_level, level)
            engine.acc = accounting = Accounting()
            done = [0]

            async def batch():
                async def report():
                    sent = 0
                    while True:
                        await asyncio.sleep(PROGRESS_EVERY_S)
                        if done[0] != sent:
                            sent = done[0]
                            conn.send(("progress", sent))

                reporter = asyncio.ensure_future(report())
                try:
                    return await engine.run_batch(requests, lambda i: done.__setitem__(0, done[0] + 1))
                finally:
                    reporter.cancel()

            try:
                results = loop.run_until_complete(batch())
            except Exception as err:  # noqa: BLE001 - e.g. a replay miss: re-raised in the parent
                conn.send(("error", err))
                continue
            conn.send(("result", results, accounting.state(), [ep.format_level for ep in engine.endpoints]))
    finally:
        loop.run_until_complete(engine.aclose())
        if store is not None:
            store.close()
        loop.close()


def exit_with_parent(kill_with_parent: bool) -> None:
    """End this process at once if the parent dies (even by SIGKILL), so no orphan keeps sending requests.

    On Linux the kernel kills it with its parent (``PR_SET_PDEATHSIG``, when the parent's main thread started
    it: the signal follows the starting thread); everywhere, a thread also watches the parent's sentinel.
    """
    if kill_with_parent and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="llm-shard-watch", daemon=True).start()


class ShardPool:
    """``n`` worker processes started on first use; ``run_batch`` as ``LLMClient.run_batch``."""

    def __init__(self, n: int, spec: ShardSpec):
        self.n, self.spec = n, spec
        self._workers: list[tuple[multiprocessing.Process, multiprocessing.connection.Connection]] = []
        self.format_levels = [0] * len(spec.base_urls)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # the parent runs threads: never fork it
        main_thread = threading.current_thread() is threading.main_thread()
        for _ in range(self.n):
            parent, child = context.Pipe()
            process = context.Process(target=_shard_main, args=(child, self.spec, main_thread), name="llm-shard",
                                      daemon=True)
            process.start()
            child.close()
            self._workers.append((process, parent))

    def run_batch(self, requests: Sequence[LLMRequest], accounting: Accounting,
                  progress: Callable[[int, int], None] | None = None) -> list[LLMResult]:
        if any(not process.is_alive() for process, _ in self._workers):
            self.close()  # a worker died (e.g. killed): start afresh; stored answers are served from the store
        if not self._workers:
            self._start()
        total = len(requests)
        bounds = [round(i * total / self.n) for i in range(self.n + 1)]
        pending = {}
        for k, (_, conn) in enumerate(self._workers):
            conn.send((list(requests[bounds[k]:bounds[k + 1]]), self.format_levels))
            pending[conn] = k
        parts: list[list[LLMResult] | None] = [None] * self.n
        done = [0] * self.n
        error: BaseException | None = None
        last_report = time.monotonic()
        if progress is not None:
            progress(0, total)
        while pending:
            for conn in multiprocessing.connection.wait(list(pending), timeout=PROGRESS_EVERY_S):
                k = pending[conn]
                try:
                    message = conn.recv()
                except EOFError:
                    del pending[conn]
                    error = error or RuntimeError("an LLM worker process ended unexpectedly")
                    continue
                if message[0] == "progress":
                    done[k] = message[1]
                    continue
                del pending[conn]
                if message[0] == "error":
                    error = error or message[1]
                    continue
                _, parts[k], state, levels = message
                done[k] = len(parts[k])
                accounting.merge(state)
                self.format_levels = [max(a, b) for a, b in zip(self.format_levels, levels, strict=True)]
            if progress is not None and (not pending or time.monotonic() - last_report >= PROGRESS_EVERY_S):
                progress(sum(done), total)
                last_report = time.monotonic()
        if error is not None:
            raise error
        return [result for part in parts for result in part]

    def close(self) -> None:
        for process, conn in self._workers:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for process, conn in self._workers:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
            conn.close()
        self._workers = []
