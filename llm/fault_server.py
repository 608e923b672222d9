"""A fault-injecting OpenAI-compatible chat-completions server on 127.0.0.1.

Real HTTP/1.1 over non-blocking sockets on an asyncio loop, so faults such as dropped connections and
stalled responses are exactly what a client would meet on the wire. Use it in-process::

    with FaultServer(latency=0.01, fault_rate=0.3) as srv:
        client = LLMClient(LLMConfig(base_urls=[srv.base_url]))
        ...
        srv.stats()["by_kind"]

or as a process: ``python -m llm.fault_server --port 0 --latency 0.05 --slots 64`` prints
``LISTENING http://127.0.0.1:PORT/v1`` and serves ``GET /stats`` with the same counters.

Scripted mode: ``script(messages) -> str | dict`` gives the answer as a function of the prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import importlib
import json
import random
import select
import selectors
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, NamedTuple, Self

HTTP_FAULTS = ("rate_limit", "server_error", "unavailable", "disconnect", "timeout")
CONTENT_FAULTS = ("malformed_json", "truncated_json", "wrong_keys", "out_of_range", "refusal")
FAULT_KINDS = HTTP_FAULTS + CONTENT_FAULTS
FORMATS = ("json_schema", "json_object", "text")

Script = Callable[[list[dict]], "str | dict"]
MAX_HEAD = 65536  # bytes of request head without its end: the connection is closed
RECV_BYTES = 262144
FD_SETSIZE = 1024  # select() takes descriptors below this
# the kernel's receive time of the bytes read (Linux; elsewhere the time they are read)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
STAMP_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


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


class FaultServer:
    """OpenAI-compatible server with latency, slots, a fault mix and counters; a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, slots: int = 64,
                 fault_rate: float = 0.0, faults: dict[str, float] | tuple[str, ...] | None = None,
                 seed: int = 0, retry_after_ms: int = 20, timeout_hold: float = 600.0,
                 formats: tuple[str, ...] = FORMATS, script: Script | None = None,
                 api_key: str | None = None, models: tuple[str, ...] = ("fault-model",)):
        weights = faults if faults is not None else FAULT_KINDS
        if not isinstance(weights, dict):
            weights = {k: 1.0 for k in weights}
        unknown = set(weights) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"faults: unknown kinds {sorted(unknown)}; allowed: {', '.join(FAULT_KINDS)}")
        self.host, self.port, self.latency, self.slots = host, port, latency, slots
        self.fault_rate, self.seed, self.retry_after_ms = fault_rate, seed, retry_after_ms
        self.timeout_hold, self.formats, self.script, self.api_key = timeout_hold, tuple(formats), script, api_key
        self.models = models
        self._kinds, self._weights = list(weights), list(weights.values())
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self.reset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._free_at: list[float] = []
        self._connections: set[_Connection] = set()

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
        """Counters: chat requests, faults injected by kind, requests per client request id."""
        with self._lock:
            return {"requests": self._requests, "by_kind": dict(self._by_kind),
                    "by_request_id": dict(self._by_request_id),
                    "format_rejections": dict(self._format_rejections),
                    "formats_seen": dict(self._formats_seen), "auth_failures": self._auth_failures}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FaultServer:
        """Serve from a background thread; returns once the port is bound."""
        ready = threading.Event()

        def _run() -> None:
            loop = new_event_loop()
            loop.run_until_complete(self._bind())  # sets self._loop
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._unbind())
            loop.close()

        self._thread = threading.Thread(target=_run, name="fault-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _bind(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._free_at = [0.0] * self.slots  # when each slot is next free (a heap), on the loop's clock
        listener = socket.create_server((self.host, self.port), backlog=4096)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._loop.add_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:  # none waiting, or e.g. out of file descriptors (the client is refused)
                return
            _Connection(self, sock)

    async def _unbind(self) -> None:
        if self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for conn in list(self._connections):
            conn.close()

    async def serve_forever(self) -> None:
        """Serve in the running loop (used by the command line)."""
        await self._bind()
        print(f"LISTENING {self.base_url}", flush=True)
        try:
            await self._loop.create_future()  # until cancelled
        finally:
            await self._unbind()

    # ---- HTTP -----------------------------------------------------------------------------------
    def _respond(self, conn: _Connection, request: _Request) -> None:
        """Answer ``request`` now, or schedule its answer (chat completions hold a slot first)."""
        if request.method == "GET" and request.path.endswith("/models"):
            if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
                conn.send(401, {"error": {"message": "invalid api key"}})
            else:
                conn.send(200, {"object": "list",
                                "data": [{"id": m, "object": "model", "owned_by": "fault"} for m in self.models]})
        elif request.method == "GET" and request.path in ("/stats", "/v1/stats"):
            conn.send(200, self.stats())
        elif request.method == "POST" and request.path in ("/reset", "/v1/reset"):
            self.reset()
            conn.send(200, {"ok": True})
        elif request.method == "POST" and request.path.endswith("/chat/completions"):
            self._chat(conn, request)
        else:
            conn.send(404, {"error": {"message": f"no route {request.method} {request.path}"}})

    def _pick_fault(self, body: bytes) -> str | None:
        """Deterministic in (seed, request body, how often this body was seen)."""
        if self.fault_rate <= 0:
            return None
        digest = hashlib.sha256(body).hexdigest()
        with self._lock:
            n = self._seen[digest]
            self._seen[digest] += 1
        rng = random.Random(f"{self.seed}:{digest}:{n}")
        if rng.random() >= self.fault_rate:
            return None
        return rng.choices(self._kinds, self._weights)[0]

    def _chat(self, conn: _Connection, request: _Request) -> None:
        headers = request.headers
        with self._lock:
            self._requests += 1
            self._by_request_id[headers.get("x-client-request-id", "")] += 1
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            with self._lock:
                self._auth_failures += 1
            conn.send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
            return
        payload = None
        if self.formats != FORMATS:  # an unsupported format is refused at once, as a real server would
            if (payload := self._payload(conn, request.body)) is None:
                return
        fault = self._pick_fault(request.body)
        if fault is not None:
            with self._lock:
                self._by_kind[fault] += 1
        if fault == "timeout":
            conn.hold(self.timeout_hold)  # until the client gives up (EOF) or the hold ends
        elif fault == "disconnect":
            conn.close()
        else:  # the body is read when the answer is due: on arrival, the server only takes a slot
            self._loop.call_at(self._take_slot(request.arrived), self._finish_chat, conn, request.body, payload,
                               fault)

    def _payload(self, conn: _Connection, body: bytes) -> dict | None:
        """The request's JSON, counted by format; None once ``conn`` has been answered with an error."""
        try:
            payload = json.loads(body)
        except ValueError:
            conn.send(400, {"error": {"message": "body: not JSON", "type": "invalid_request_error"}})
            return None
        fmt = (payload.get("response_format") or {"type": "text"}).get("type", "text")
        with self._lock:
            self._formats_seen[fmt] += 1
        if fmt not in self.formats:
            with self._lock:
                self._format_rejections[fmt] += 1
            conn.send(400, {"error": {"message": f"response_format type '{fmt}' is not supported",
                                      "type": "invalid_request_error"}})
            return None
        return payload

    def _finish_chat(self, conn: _Connection, body: bytes, payload: dict | None, fault: str | None) -> None:
        if payload is None and (payload := self._payload(conn, body)) is None:
            return
        if fault in ("rate_limit", "server_error", "unavailable"):
            status = {"rate_limit": 429, "server_error": 500, "unavailable": 503}[fault]
            extra = {"Retry-After": "1", "retry-after-ms": str(self.retry_after_ms)} if status == 429 else {}
            conn.send(status, {"error": {"message": f"injected {fault}", "type": fault}}, extra)
        else:
            conn.send(200, self._completion(payload, *self._answer(payload, fault)))

    def _take_slot(self, arrived: float) -> float:
        """When this request's answer is due: it holds the slot that frees first for exactly ``latency``.

        Slot time is exact: a request starts the instant its first byte reached this loop and a slot is
        free, not when the loop has parsed it behind other requests, so the server's own delays never count
        against a client it is measuring.
        """
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
        if self.script is not None:
            good = self.script(messages)
            value = json.loads(good) if isinstance(good, str) and good.lstrip().startswith("{") else good
            value = value if isinstance(value, dict) else example_value(schema, seed)
        else:
            value = example_value(schema, seed)
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
        return {"id": "chatcmpl-fault", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model", self.models[0]),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4 + 1,
                          "total_tokens": prompt_tokens + len(content) // 4 + 1}}


class _Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float  # on the loop's clock: when its first bytes reached this host (or were read, elsewhere)


class _Connection:
    """One HTTP/1.1 client connection on a non-blocking socket: requests are parsed as their bytes arrive and
    answered in order.

    Each request is stamped with the time the kernel received its first bytes (``SO_TIMESTAMPNS`` on
    Linux), not the time this process got round to reading them: on a machine it shares with the client,
    the server is often waiting for a core while requests arrive, and that wait is not the client's.
    """

    def __init__(self, server: FaultServer, sock: socket.socket):
        self.server, self.sock, self.loop = server, sock, server._loop
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stamped = False
        if SO_TIMESTAMPNS is not None and STAMP_SPACE:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.stamped = True
            except OSError:
                pass
        self.buffer = bytearray()
        self.started = 0.0  # when the first bytes of the request in ``buffer`` were received
        self.waiting: deque[_Request] = deque()  # parsed, behind the one being answered
        self.busy = self.closed = False
        self.unsent = bytearray()
        self.held: asyncio.TimerHandle | None = None
        server._connections.add(self)
        self.loop.add_reader(sock.fileno(), self._read)

    def _read(self) -> None:
        try:
            if self.stamped:
                data, ancillary, _, _ = self.sock.recvmsg(RECV_BYTES, STAMP_SPACE)
            else:  # no receive times here (nor, on Windows, recvmsg)
                data, ancillary = self.sock.recv(RECV_BYTES), []
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data or self.held is not None:  # the client hung up, or gave up on a held request
            self.close()
            return
        now = self.loop.time()
        received = now
        for level, kind, stamp in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(stamp) == 16:
                seconds, nanoseconds = struct.unpack("qq", stamp)  # wall clock: moved onto the loop's clock
                received = min(now, seconds + nanoseconds * 1e-9 - (time.time() - now))
        self.data_received(data, received)

    def data_received(self, data: bytes, received: float) -> None:
        if not self.buffer:
            self.started = received
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            try:
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", 0))
            except ValueError:
                self.close()
                return
            if len(self.buffer) < end + 4 + length:
                break
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            self.waiting.append(_Request(method, target.split("?")[0], headers, body, self.started))
            self.started = received
        if len(self.buffer) > MAX_HEAD and self.buffer.find(b"\r\n\r\n") < 0:
            self.close()
            return
        self._next()

    def _next(self) -> None:
        if not self.busy and self.waiting and not self.closed:
            self.busy = True
            self.server._respond(self, self.waiting.popleft())

    def send(self, status: int, payload: Any, extra: dict | None = None) -> None:
        """Write the answer to the request being answered, then take up the next."""
        if self.closed:
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: application/json",
                f"Content-Length: {len(data)}"] + [f"{k}: {v}" for k, v in (extra or {}).items()]
        self._write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        self.busy = False
        self._next()

    def _write(self, data: bytes) -> None:
        if not self.unsent:
            try:
                data = data[self.sock.send(data):]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.close()
                return
            if not data:
                return
            self.loop.add_writer(self.sock.fileno(), self._flush)
        self.unsent += data

    def _flush(self) -> None:
        try:
            del self.unsent[:self.sock.send(self.unsent)]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not self.unsent:
            self.loop.remove_writer(self.sock.fileno())

    def hold(self, seconds: float) -> None:
        """Answer nothing; close when the client sends more, hangs up, or ``seconds`` pass."""
        self.held = self.loop.call_later(seconds, self.close)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server._connections.discard(self)
        if self.held is not None:
            self.held.cancel()
        self.loop.remove_reader(self.sock.fileno())
        if self.unsent:
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()


class _TimelySelector(selectors.DefaultSelector):
    """epoll rounds every wait up to a whole millisecond, which would make answers up to a millisecond late;
    waiting with ``select`` on the epoll descriptor keeps a timeout to the microsecond."""

    def select(self, timeout: float | None = None):
        if timeout and sys.platform.startswith("linux") and self.fileno() < FD_SETSIZE:
            select.select([self.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The server's loop: its timers fire on time."""
    return asyncio.SelectorEventLoop(_TimelySelector())


def _load_script(spec: str) -> Script:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m llm.fault_server", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds per answered request")
    ap.add_argument("--slots", type=int, default=64, help="requests answered at once")
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated kinds: " + ",".join(FAULT_KINDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--script", default=None, help="module:function answering from the messages")
    ns = ap.parse_args(argv)
    srv = FaultServer(host=ns.host, port=ns.port, latency=ns.latency, slots=ns.slots, fault_rate=ns.fault_rate,
                      faults=tuple(k for k in ns.faults.split(",") if k), seed=ns.seed,
                      formats=tuple(ns.formats.split(",")),
                      script=_load_script(ns.script) if ns.script else None)
    try:
        asyncio.run(srv.serve_forever(), loop_factory=new_event_loop)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
