"""An OpenAI-compatible chat-completions server for tests and benchmarks, on aiohttp.web.

It answers each request after ``latency`` seconds on one of ``slots`` slots (requests beyond the slots wait
in line, as on a real inference server), injects faults of every kind the LLM layer classifies, can answer
from a script, and can require an API key. In a test::

    with FaultServer(latency=0.01, fault_rate=0.3) as srv:
        client = LLMClient(LLMConfig(base_urls=[srv.base_url]))
        ...
        srv.stats()["by_kind"]

As a process, for benchmarks: ``python -m tests.llm_server --port 0 --latency 1 --slots 256`` prints
``LISTENING http://127.0.0.1:PORT/v1`` and serves ``GET /stats`` with the same counters.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import importlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Self

from aiohttp import web

HTTP_FAULTS = ("rate_limit", "server_error", "unavailable", "disconnect", "timeout")
CONTENT_FAULTS = ("malformed_json", "truncated_json", "wrong_keys", "out_of_range", "refusal")
FAULT_KINDS = HTTP_FAULTS + CONTENT_FAULTS
FORMATS = ("json_schema", "json_object", "text")
_STATUS = {"rate_limit": 429, "server_error": 500, "unavailable": 503}

Script = Callable[[list[dict]], "str | dict"]
Respond = Callable[[web.Request, dict], Awaitable[web.StreamResponse]]


def example_value(schema: dict, seed: int, defs: dict | None = None) -> Any:
    """A value that satisfies a (strict, simple) JSON schema; numbers vary with ``seed``."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return example_value(defs[schema["$ref"].rsplit("/", 1)[-1]], seed, defs)
    if "enum" in schema:
        return schema["enum"][seed % len(schema["enum"])]
    if "anyOf" in schema:
        return example_value(schema["anyOf"][0], seed, defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example_value(v, seed + 7 * i, defs) for i, (k, v) in enumerate(props.items())}
    if kind in ("integer", "number"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        hi = schema.get("maximum", schema.get("exclusiveMaximum", lo + 100))
        lo, hi = int(lo) + ("exclusiveMinimum" in schema), int(hi) - ("exclusiveMaximum" in schema)
        value = lo + seed % max(1, hi - lo + 1)
        return value if kind == "integer" else float(value)
    if kind == "string":
        return ("ok" + "x" * schema.get("minLength", 0))[: schema.get("maxLength", 80)]
    if kind == "boolean":
        return bool(seed % 2)
    if kind == "array":
        return [example_value(schema.get("items", {}), seed + i, defs) for i in range(schema.get("minItems", 1))]
    return None


def _out_of_range(value: Any, schema: dict) -> Any:
    """Push every bounded number in ``value`` above its maximum (or below its minimum)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _out_of_range(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "maximum" in schema:
            return type(value)(schema["maximum"] + 1000)
        if "minimum" in schema:
            return type(value)(schema["minimum"] - 1000)
        return "not-a-number"
    if isinstance(value, str):
        return value * 500
    return value


def _error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
    return web.json_response({"error": {"message": message, "type": kind}}, status=status, headers=headers)


class FaultServer:
    """The server with its counters; a context manager that serves from a background thread.

    Args:
        latency: seconds of slot time per answered request.
        slots: requests answered at once; the rest wait in line for the first free slot.
        fault_rate: share of chat requests that get a fault, drawn from ``faults`` (kinds, or kind -> weight).
        seed: faults are deterministic in (seed, request body, how often that body was seen).
        retry_after_ms: the ``retry-after-ms`` of a 429 (None: no such header).
        retry_after_s: the ``Retry-After`` of a 429, in seconds.
        timeout_hold: seconds a ``timeout`` fault holds a request unanswered (or until the client hangs up).
        formats: response formats accepted; others get a 400 naming ``response_format``.
        script: ``script(messages) -> str | dict`` gives the answer as a function of the prompt.
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get a 401.
        models: ids listed at ``/v1/models``; a chat request for another model gets a 404, as from vLLM or OpenAI.
        list_models: when False, ``/v1/models`` answers 404 (some servers offer no model list).
        respond: ``await respond(request, payload)`` writes the whole HTTP answer to a chat request (a hostile or
            broken server: any status, headers, body, encoding or pace), after the key and model checks.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, slots: int = 64,
                 fault_rate: float = 0.0, faults: dict[str, float] | tuple[str, ...] | None = None,
                 seed: int = 0, retry_after_ms: int | None = 20, retry_after_s: float = 1, timeout_hold: float = 600.0,
                 formats: tuple[str, ...] = FORMATS, script: Script | None = None,
                 api_key: str | None = None, models: tuple[str, ...] = ("fault-model",), list_models: bool = True,
                 respond: Respond | None = None):
        weights = faults if faults is not None else FAULT_KINDS
        if not isinstance(weights, dict):
            weights = {k: 1.0 for k in weights}
        unknown = set(weights) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"faults: unknown kinds {sorted(unknown)}; allowed: {', '.join(FAULT_KINDS)}")
        self.host, self.port, self.latency, self.slots = host, port, latency, slots
        self.fault_rate, self.seed, self.retry_after_ms = fault_rate, seed, retry_after_ms
        self.retry_after_s = retry_after_s
        self.timeout_hold, self.formats, self.script, self.api_key = timeout_hold, tuple(formats), script, api_key
        self.models, self.list_models, self.respond = models, list_models, respond
        self._kinds, self._weights = list(weights), list(weights.values())
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._free_at: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._passes: int | None = None  # chat requests still answered before the rest are held; None: all
        self._released: asyncio.Event | None = None
        self.reset()

    # ---- counters -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero all counters."""
        with self._lock:
            self._requests = 0
            self._by_kind: Counter[str] = Counter()
            self._by_request_id: Counter[str] = Counter()
            self._format_rejections: Counter[str] = Counter()
            self._formats_seen: Counter[str] = Counter()
            self._auth_failures = 0

    def stats(self) -> dict:
        """Chat requests, faults injected by kind, requests per client request id, formats, auth failures."""
        with self._lock:
            return {"requests": self._requests, "by_kind": dict(self._by_kind),
                    "by_request_id": dict(self._by_request_id),
                    "format_rejections": dict(self._format_rejections),
                    "formats_seen": dict(self._formats_seen), "auth_failures": self._auth_failures}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def hold_after(self, count: int | None) -> None:
        """Answer ``count`` more chat requests, then hold the next ones unanswered until ``hold_after(None)``:
        a test sees a batch part-way through for as long as it needs, whatever the machine's speed."""
        def apply() -> None:
            self._passes = count
            if count is None:
                self._released.set()
            else:
                self._released.clear()
        self._loop.call_soon_threadsafe(apply)

    # ---- lifecycle ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.get("/v1/models", self._list_models), web.post("/v1/chat/completions", self._chat),
                        web.get("/stats", self._stats), web.get("/v1/stats", self._stats),
                        web.post("/reset", self._reset), web.post("/v1/reset", self._reset)])
        return app

    async def serve(self, ready: Callable[[], None] = lambda: None) -> None:
        """Serve in the running loop until :meth:`stop`; ``ready()`` runs once the port is bound."""
        self._loop, self._stopped, self._released = asyncio.get_running_loop(), asyncio.Event(), asyncio.Event()
        self._released.set()
        self._free_at = [0.0] * self.slots  # when each slot is next free (a heap), on the loop's clock
        # handler_cancellation: a request held by a ``timeout`` fault ends when its client hangs up
        runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=4096)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        ready()
        try:
            await self._stopped.wait()
        finally:
            await runner.cleanup()

    def start(self) -> FaultServer:
        """Serve from a background thread; returns once the port is bound."""
        bound = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self.serve(bound.set)), name="llm-test-server",
                                        daemon=True)
        self._thread.start()
        if not bound.wait(10):
            raise RuntimeError("the test server did not start")
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- handlers -------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _list_models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "invalid api key")
        if not self.list_models:
            return _error(404, "not found")
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "test"}
                                                             for m in self.models]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = self._loop.time()
        body = await request.read()
        with self._lock:
            self._requests += 1
            self._by_request_id[request.headers.get("X-Client-Request-Id", "")] += 1
        if not self._authorized(request):
            with self._lock:
                self._auth_failures += 1
            return _error(401, "invalid api key")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "body: not JSON")
        fmt = (payload.get("response_format") or {"type": "text"}).get("type", "text")
        with self._lock:
            self._formats_seen[fmt] += 1
            if fmt not in self.formats:  # refused at once, as a real server would
                self._format_rejections[fmt] += 1
        if fmt not in self.formats:
            return _error(400, f"response_format type '{fmt}' is not supported")
        if payload.get("model") not in self.models:
            return _error(404, f"The model `{payload.get('model')}` does not exist.", "NotFoundError")
        if self._passes is not None:
            if self._passes > 0:
                self._passes -= 1
            else:
                await self._released.wait()
        if self.respond is not None:
            return await self.respond(request, payload)
        fault = self._pick_fault(body)
        if fault == "timeout":
            await asyncio.sleep(self.timeout_hold)  # cancelled when the client gives up and hangs up
        if fault in ("timeout", "disconnect"):
            request.transport.close()
            return web.Response()  # never reaches the client
        await asyncio.sleep(self._take_slot(arrived) - self._loop.time())
        if fault in _STATUS:
            headers = {}
            if fault == "rate_limit":
                headers["Retry-After"] = f"{self.retry_after_s:g}"
                if self.retry_after_ms is not None:
                    headers["retry-after-ms"] = str(self.retry_after_ms)
            return _error(_STATUS[fault], f"injected {fault}", fault, headers)
        return web.json_response(self._completion(payload, *self._answer(payload, fault)))

    def _pick_fault(self, body: bytes) -> str | None:
        if self.fault_rate <= 0:
            return None
        digest = hashlib.sha256(body).hexdigest()
        with self._lock:
            n = self._seen[digest]
            self._seen[digest] += 1
        rng = random.Random(f"{self.seed}:{digest}:{n}")
        if rng.random() >= self.fault_rate:
            return None
        fault = rng.choices(self._kinds, self._weights)[0]
        with self._lock:
            self._by_kind[fault] += 1
        return fault

    def _take_slot(self, arrived: float) -> float:
        """When this request's answer is due: it holds the slot that frees first for exactly ``latency``."""
        start = max(arrived, heapq.heappop(self._free_at))
        heapq.heappush(self._free_at, start + self.latency)
        return start + self.latency

    def _answer(self, request: dict, fault: str | None) -> tuple[str, str]:
        messages = request.get("messages", [])
        if self.script is not None and fault is None:
            out = self.script(messages)
            return (out if isinstance(out, str) else json.dumps(out)), "stop"
        rf = request.get("response_format") or {}
        schema = (rf.get("json_schema") or {}).get("schema", {"type": "object", "properties": {}})
        seed = int(hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:8], 16)
        value = example_value(schema, seed)
        if self.script is not None:  # a fault on a scripted answer: spoil the script's own answer
            good = self.script(messages)
            good = json.loads(good) if isinstance(good, str) and good.lstrip().startswith("{") else good
            value = good if isinstance(good, dict) else value
        text = json.dumps(value)
        if fault == "malformed_json":
            return text[:-1] + ",,}" if text.endswith("}") else "{,}", "stop"
        if fault == "truncated_json":
            return text[: max(1, len(text) // 2)], "length"
        if fault == "wrong_keys":
            return json.dumps({f"unexpected_{k}": v for k, v in value.items()} or {"unexpected": 1}), "stop"
        if fault == "out_of_range":
            return json.dumps(_out_of_range(value, schema)), "stop"
        if fault == "refusal":
            return "I'm sorry, but I can't help with that request.", "stop"
        return text, "stop"

    def _completion(self, request: dict, content: str, finish: str) -> dict:
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 1 for m in request.get("messages", []))
        completion_tokens = len(content) // 4 + 1
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model", self.models[0]),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.llm_server", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds of slot time per answered request")
    ap.add_argument("--slots", type=int, default=64, help="requests answered at once")
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated kinds: " + ",".join(FAULT_KINDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--script", default=None, help="module:function answering from the messages")
    ns = ap.parse_args(argv)
    script = None
    if ns.script:
        module, _, name = ns.script.partition(":")
        script = getattr(importlib.import_module(module), name)
    srv = FaultServer(host=ns.host, port=ns.port, latency=ns.latency, slots=ns.slots, fault_rate=ns.fault_rate,
                      faults=tuple(k for k in ns.faults.split(",") if k), seed=ns.seed,
                      formats=tuple(ns.formats.split(",")), script=script)
    try:
        asyncio.run(srv.serve(lambda: print(f"LISTENING {srv.base_url}", flush=True)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
