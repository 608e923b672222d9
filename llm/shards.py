"""Large batches split over worker processes, each with its own event loop, connections and store connection.

One Python process spends about a millisecond of CPU per request in the HTTP client, so a single process
tops out near a thousand requests a second. ``ShardPool`` deals a batch out to ``n`` processes in chunks, as
the caller builds it, so the first requests are on the wire while the rest are still being built; results
come back as they finish and are put back in input order. Each process persists every answer (SQLite WAL,
safe across processes) before returning it, so replay, resume and the response store behave exactly as in
one process.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .accounting import Accounting
from .config import LLMConfig
from .engine import Engine
from .records import LLMRequest, LLMResult
from .store import ResponseStore
from .transport import Endpoint

FOLD_AFTER_S = 0.1
RESULTS_EVERY_S = 0.02  # finished results go back this often: the last message of a batch stays small
PR_SET_PDEATHSIG = 1
MIN_BATCH = 256  # smaller batches run in the calling process: starting and feeding workers costs more
CHUNK = 32  # requests per message to a worker process


def picklable(requests: Iterable[LLMRequest]) -> bool:
    """Every answer schema is importable by name in another process."""
    try:
        for schema in {r.schema for r in requests}:
            pickle.dumps(schema)
    except Exception:  # noqa: BLE001 - e.g. a schema class defined inside a function
        return False
    return True


def chunks(requests: Iterable[LLMRequest], small: int = 0) -> Iterator[list[LLMRequest]]:
    """Chunks of ``CHUNK`` requests; the first ``small`` of half that, so every worker starts sooner."""
    iterator = iter(requests)
    sizes = itertools.chain(itertools.repeat(CHUNK // 2, small), itertools.repeat(CHUNK))
    while chunk := list(itertools.islice(iterator, next(sizes))):
        yield chunk


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
    """Worker process: serve batches begun over ``conn`` until it receives None or the pipe closes."""
    exit_with_parent(kill_with_parent)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    store = ResponseStore(spec.config.store_path) if spec.config.store_mode != "off" else None

    async def make() -> Engine:
        return build_engine(spec, build_endpoints(spec), store, Accounting())

    engine = loop.run_until_complete(make())
    # what is alive now (the imported libraries) lives as long as this process: keep it out of the
    # collector's full passes, which would otherwise stall this process's requests for tens of milliseconds
    gc.freeze()
    outbox = _Outbox(conn)
    try:
        while True:
            message = conn.recv()  # ("begin", format levels) or None
            if message is None:
                break
            loop.run_until_complete(_serve_batch(engine, conn, outbox, message[1], spec.concurrency))
    except EOFError:  # the caller is gone
        pass
    finally:
        outbox.close()
        loop.run_until_complete(engine.aclose())
        if store is not None:
            store.close()
        loop.close()


class _Outbox:
    """Sends a worker's messages from a thread of its own, so a full pipe never stalls the event loop."""

    def __init__(self, conn):
        self.conn, self.queue = conn, queue.SimpleQueue()
        self.lock, self.unsent = threading.Lock(), 0  # messages queued or not yet fully sent
        self.thread = threading.Thread(target=self._run, name="llm-shard-outbox", daemon=True)
        self.thread.start()

    def send(self, message) -> None:
        with self.lock:
            self.unsent += 1
        self.queue.put(message)

    def send_last(self, message) -> None:
        """Send ``message`` after everything queued before it; from this thread when nothing is (the usual
        case at the end of a batch: the last answers get back without waking the sending thread)."""
        with self.lock:
            if not self.unsent:
                self.conn.send(message)
                return
        self.send(message)

    def _run(self) -> None:
        while (message := self.queue.get()) is not None:
            try:
                self.conn.send(message)  # not under the lock: a full pipe must not hold up ``send``
            except OSError:  # the caller is gone
                return
            finally:
                with self.lock:
                    self.unsent -= 1

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(10)


async def _serve_batch(engine: Engine, conn, outbox: _Outbox, format_levels: list[int], concurrency: int) -> None:
    """Answer ("requests", first index, chunk) messages until ("end",), asking for a chunk at a time.

    The worker asks for ("more",) once it holds no more unfinished requests than it may keep in flight:
    the caller builds requests just in time, and a worker that runs ahead gets more of the batch. Finished
    results go back every ``RESULTS_EVERY_S``; ("done", ...) ends the batch.
    """
    for ep, level in zip(engine.endpoints, format_levels, strict=True):
        ep.format_level = max(ep.format_level, level)
    engine.acc = accounting = Accounting()
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task] = []
    finished: list[tuple[int, LLMResult]] = []
    errors: list[Exception] = []
    ended = loop.create_future()
    state = {"unfinished": 0, "asked": True}  # the caller sends the first chunk unasked

    def ask() -> None:
        if not state["asked"] and not ended.done() and state["unfinished"] <= concurrency:
            state["asked"] = True
            outbox.send(("more",))

    async def one(index: int, request: LLMRequest, known: set | None) -> None:
        try:
            finished.append((index, await engine.run_one(request, known)))
        except Exception as err:  # noqa: BLE001 - a replay miss: raised again in the caller
            errors.append(err)
        finally:
            state["unfinished"] -= 1
            ask()

    def receive() -> None:
        try:
            while not ended.done() and conn.poll():
                message = conn.recv()
                if message[0] == "end":
                    ended.set_result(None)
                    break
                _, first, requests = message
                known = engine.known_keys(requests)
                state["unfinished"] += len(requests)
                state["asked"] = False
                tasks.extend(loop.create_task(one(first + i, r, known)) for i, r in enumerate(requests))
                loop.call_soon(ask)  # after these requests have gone out: building more would compete with them
        except EOFError as err:
            ended.set_exception(err)

    loop.add_reader(conn.fileno(), receive)
    # the store's log is folded into its database while this batch is under way: at its start the first
    # requests must go out, and at its end the last results must get back, as fast as possible
    fold = loop.call_later(FOLD_AFTER_S, engine.fold_store_log)
    try:
        while True:
            if not ended.done():
                await asyncio.wait([ended], timeout=RESULTS_EVERY_S)
            tasks[:] = [task for task in tasks if not task.done()]
            if ended.done():
                ended.result()  # raises EOFError when the caller is gone
                if tasks:
                    await asyncio.wait(tasks, timeout=RESULTS_EVERY_S)
                    tasks[:] = [task for task in tasks if not task.done()]
                if not tasks:
                    break
            if finished:
                outbox.send(("results", finished[:]))
                finished.clear()
    finally:
        loop.remove_reader(conn.fileno())
    outbox.send_last(("done", finished, accounting.state(), [ep.format_level for ep in engine.endpoints],
                      errors[0] if errors else None))
    if loop.time() < fold.when():  # a batch too short to fold the log in its course
        fold.cancel()
        engine.fold_store_log()


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

    def run_batch(self, requests: Iterable[LLMRequest], total: int, accounting: Accounting,
                  progress: Callable[[int, int], None] | None = None) -> list[LLMResult]:
        """``total`` requests, taken from ``requests`` a chunk at a time as workers ask; results in input order."""
        if any(not process.is_alive() for process, _ in self._workers):
            self.close()  # a worker died (e.g. killed): start afresh; stored answers are served from the store
        if not self._workers:
            self._start()
        conns = [conn for _, conn in self._workers]
        for conn in conns:
            conn.send(("begin", self.format_levels))
        if progress is not None:
            progress(0, total)
        source = chunks(requests, small=2 * self.n)
        fed = {"sent": 0, "exhausted": False, "ended": False, "failure": None}

        def take() -> list[LLMRequest] | None:
            """The next chunk; None once the requests are used up or their generator failed."""
            if not fed["exhausted"]:
                try:
                    if (chunk := next(source, None)) is not None:
                        return chunk
                except Exception as err:  # noqa: BLE001 - e.g. the caller's generator failed: end the batch
                    fed["failure"] = err
                fed["exhausted"] = True
            return None

        def give(conn, chunk: list[LLMRequest] | None) -> None:
            """``chunk`` to ``conn``; once there is none, ("end",) to every worker."""
            if chunk is not None:
                try:
                    conn.send(("requests", fed["sent"], chunk))
                except (pickle.PicklingError, AttributeError, TypeError) as err:
                    raise TypeError(f"requests: an answer schema cannot be sent to a worker process ({err}); "
                                    "define schemas at module level, or set LLM_PROCESSES=1") from None
                fed["sent"] += len(chunk)
            elif not fed["ended"]:
                fed["ended"] = True
                for other in conns:
                    other.send(("end",))

        def feed(conn) -> None:
            give(conn, take())

        results: dict[int, LLMResult] = {}
        pending, error = set(conns), None
        try:
            for _ in range(2):  # two half chunks each, so every worker starts at once and stays busy
                # a round is built before any of it is sent: a worker that has started sending takes a core
                # from this process, and the others would start later
                for conn, chunk in [(conn, take()) for conn in conns]:
                    give(conn, chunk)
            error = self._collect(pending, feed, results, accounting, total, progress)
        except BaseException:  # e.g. Ctrl-C mid-batch: the workers are out of step with us, so end them
            self._kill()
            raise
        if fed["failure"] is not None:
            raise fed["failure"]
        if error is not None:
            raise error
        if fed["sent"] != total:
            raise ValueError(f"requests: {fed['sent']} given, but the batch said {total}")
        return [results[i] for i in range(total)]

    def _collect(self, pending: set, feed: Callable, results: dict[int, LLMResult], accounting: Accounting,
                 total: int, progress: Callable[[int, int], None] | None) -> BaseException | None:
        """Serve the workers' requests for more and gather their results until each has said it is done."""
        error = None
        while pending:
            for conn in multiprocessing.connection.wait(list(pending)):
                try:
                    message = conn.recv()
                except EOFError:
                    pending.discard(conn)
                    error = error or RuntimeError("an LLM worker process ended unexpectedly")
                    continue
                if message[0] == "more":
                    feed(conn)
                    continue
                results.update(message[1])
                if message[0] == "done":
                    pending.discard(conn)
                    _, _, state, levels, err = message
                    accounting.merge(state)
                    self.format_levels = [max(a, b) for a, b in zip(self.format_levels, levels, strict=True)]
                    error = error or err
                if progress is not None:
                    progress(len(results), total)
        return error

    def _kill(self) -> None:
        for process, _ in self._workers:
            process.kill()
        for process, conn in self._workers:
            process.join(5)
            conn.close()
        self._workers = []

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
