"""One OpenAI-compatible server: an openai client whose HTTP client records every send and fault per request."""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import errno
import socket
import time
import zlib
from dataclasses import dataclass, field

import httpx2
import openai

from .records import FailureKind

import aiohttp

FORMAT_LEVELS = ("json_schema", "json_object", "text")
STORED_HEAD_BYTES = 65_536  # how much of a refused answer is kept in the store, for the record
_DECODERS = {"gzip": 31, "x-gzip": 31, "deflate": 15}  # zlib wbits; "deflate" as RFC 9110 defines it (zlib)


@dataclass
class Probe:
    """What the transport saw while one chat call (with the openai client's retries) ran."""

    sends: int = 0
    faults: list[FailureKind] = field(default_factory=list)


PROBE: contextvars.ContextVar[Probe | None] = contextvars.ContextVar("llm_probe", default=None)


class AnswerRefused(openai.OpenAIError):
    """An answer the client stops reading (too large, past its deadline, in an encoding it did not ask for).

    An ``OpenAIError``, so that the openai client passes it on at once instead of retrying: asking again would
    pay for the same answer. ``head`` holds its first bytes, for the store.
    """

    def __init__(self, kind: FailureKind, message: str, head: bytes = b""):
        super().__init__(message)
        self.kind, self.head = kind, head


def kind_of_status(status: int) -> FailureKind:
    named = {429: FailureKind.RATE_LIMIT, 503: FailureKind.UNAVAILABLE}
    if 300 <= status < 400:
        return FailureKind.REDIRECT
    return named.get(status, FailureKind.SERVER_ERROR if status >= 500 else FailureKind.HTTP_ERROR)


def _chain(err: BaseException | None):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def kind_of_exception(err: BaseException, reading_body: bool = False) -> FailureKind:
    """What a failed send met, from the root cause: the aiohttp transport reports a refused connection as a
    connect timeout and a dropped one as a read error, so the exception's own type does not tell."""
    causes = list(_chain(err))
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return FailureKind.CONNECTION_REFUSED
        if isinstance(cause, socket.gaierror) or isinstance(cause, aiohttp.ClientConnectorDNSError):
            return FailureKind.DNS
    for cause in causes:
        if isinstance(cause, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                                  aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
            return FailureKind.CONNECTION_RESET
        if isinstance(cause, (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError)) and not any(
                isinstance(c, TimeoutError) for c in causes):
            return FailureKind.CONNECTION_RESET
    for cause in causes:
        is_timeout = (isinstance(cause, (TimeoutError, httpx2.TimeoutException))
                      and not isinstance(cause, aiohttp.ClientConnectorError))
        if is_timeout:
            return FailureKind.READ_STALL if reading_body else FailureKind.TIMEOUT
    return FailureKind.CONNECTION if isinstance(err, (httpx2.TransportError, OSError)) else FailureKind.INTERNAL


def kind_of_error(err: BaseException, probe: Probe | None = None) -> FailureKind:
    """Failure kind of an exception raised by the openai client: the transport's own finding when it saw one."""
    if isinstance(err, AnswerRefused):
        return err.kind
    if isinstance(err, openai.APIStatusError):
        return kind_of_status(err.status_code)
    if isinstance(err, openai.APIConnectionError) and probe is not None and probe.faults:
        return probe.faults[-1]
    if isinstance(err, openai.APIConnectionError):
        return kind_of_exception(err)
    return FailureKind.INTERNAL


def retry_after(headers: httpx2.Headers) -> float:
    """Seconds a 429 asks to wait: ``retry-after-ms``, else ``Retry-After`` in seconds or as a date, else 1 s."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name, "")) / scale
        except ValueError:
            continue
        return max(0.0, seconds) if seconds == seconds else 1.0
    try:
        when = email.utils.parsedate_to_datetime(headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - time.time())


def rejection(err: BaseException, model: str, url: str) -> tuple[str, str, str] | None:
    """``(field, problem, allowed)`` when ``err`` says a setting is wrong (401, 403, 404), so that every request
    would fail the same way; None for errors that say nothing about the settings."""
    if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return ("api_key", f"{url} refused it (HTTP {err.status_code})",
                "a key the server accepts, in OPENAI_API_KEY or LLM_API_KEY")
    if isinstance(err, openai.NotFoundError):
        if "model" in str(err).lower():
            return "model", f"{url} has no model {model!r} (HTTP 404)", "a model the server serves"
        return ("base_url", f"{url}/chat/completions is not found (HTTP 404)",
                "the URL of an OpenAI-compatible API, usually ending in /v1")
    return None


class CountingClient(openai.DefaultAioHttpClient):
    """openai-python's aiohttp-based HTTP client (the least CPU per request), which also counts each send and
    classifies a failed one into the current task's Probe, and bounds each answer's size (on the wire and
    decompressed) and its whole exchange's time.

    The openai client retries inside one call; only the HTTP client sees each attempt and how it failed.
    """

    def __init__(self, *, max_bytes: int, deadline_s: float, **kwargs):
        super().__init__(follow_redirects=False, **kwargs)  # a redirect is the server's fault, counted as such
        self.max_bytes, self.deadline_s = max_bytes, deadline_s

    async def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs) -> httpx2.Response:
        probe = PROBE.get() or Probe()
        probe.sends += 1
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        try:
            async with asyncio.timeout_at(deadline):
                response = await super().send(request, stream=True, **kwargs)
        except TimeoutError:
            probe.faults.append(FailureKind.DEADLINE)
            raise AnswerRefused(FailureKind.DEADLINE, f"no answer within the deadline of {self.deadline_s:g} s")
        except httpx2.TransportError as err:
            probe.faults.append(kind_of_exception(err))
            raise
        if response.status_code >= 300:
            probe.faults.append(kind_of_status(response.status_code))
        headers = response.headers
        encoding = headers.get("content-encoding", "identity").strip().lower() or "identity"
        declared = headers.get("content-length", "")
        problem = None
        if encoding != "identity" and encoding not in _DECODERS:
            problem = FailureKind.BAD_RESPONSE, f"content-encoding {encoding[:40]!r}, which the client did not ask for"
        elif declared.isdigit() and int(declared) > self.max_bytes:
            problem = FailureKind.TOO_LARGE, f"{int(declared):,} bytes declared, above {self.max_bytes:,}"
        if problem is not None:
            await response.aclose()
            probe.faults.append(problem[0])
            raise AnswerRefused(*problem)
        for name in ("content-encoding", "content-length"):  # decoded and counted by the stream below instead
            headers.pop(name, None)
        if response.status_code == 429:  # back-pressure, which the engine handles (it waits and shrinks the limit)
            headers["x-should-retry"] = "false"
        response.stream = BoundedStream(response.stream, encoding, self.max_bytes, deadline, self.deadline_s, probe)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


class BoundedStream(httpx2.AsyncByteStream):
    """An answer's body, decompressed here, within ``max_bytes`` (on the wire and decompressed) and a deadline."""

    def __init__(self, inner: httpx2.AsyncByteStream, encoding: str, max_bytes: int, deadline: float,
                 deadline_s: float, probe: Probe):
        self.inner, self.max_bytes, self.deadline, self.deadline_s, self.probe = (inner, max_bytes, deadline,
                                                                                  deadline_s, probe)
        self.decoder = zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None
        self.head = bytearray()

    def _refuse(self, kind: FailureKind, message: str) -> AnswerRefused:
        self.probe.faults.append(kind)
        return AnswerRefused(kind, message, bytes(self.head))

    def _keep(self, data: bytes) -> bytes:
        if len(self.head) < STORED_HEAD_BYTES:
            self.head += data[: STORED_HEAD_BYTES - len(self.head)]
        return data

    async def __aiter__(self):
        wire = decoded = 0
        chunks = self.inner.__aiter__()
        while True:
            try:
                async with asyncio.timeout_at(self.deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise self._refuse(FailureKind.DEADLINE, f"the answer took longer than the deadline of "
                                                         f"{self.deadline_s:g} s") from None
            except httpx2.TransportError as err:
                self.probe.faults.append(kind_of_exception(err, reading_body=True))
                raise
            wire += len(chunk)
            if self.decoder is not None:
                try:
                    chunk = self.decoder.decompress(chunk, self.max_bytes - decoded + 1)
                except zlib.error as err:
                    raise self._refuse(FailureKind.BAD_RESPONSE, f"the compressed answer is damaged ({err})") from None
                if self.decoder.unconsumed_tail:
                    decoded = self.max_bytes + 1
            decoded += len(chunk)
            if wire > self.max_bytes or decoded > self.max_bytes:
                self._keep(chunk)
                raise self._refuse(FailureKind.TOO_LARGE, f"the answer exceeds {self.max_bytes:,} bytes")
            yield self._keep(chunk)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Endpoint:
    """One server: its openai client, requests outstanding and sent, and the output format it accepts."""

    def __init__(self, base_url: str, api_key: str, *, concurrency: int, timeout_s: float, connect_timeout_s: float,
                 max_retries: int, deadline_s: float, max_answer_bytes: int):
        self.base_url = base_url
        self.chat_url = base_url.rstrip("/") + "/chat/completions"  # absolute: no merging with base_url per call
        self.outstanding = self.sent = self.format_level = 0
        self.ceiling, self.limit, self.paused_until = concurrency, float(concurrency), 0.0  # see pool.EndpointPool
        timeout = httpx2.Timeout(timeout_s, connect=connect_timeout_s)
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        # these encodings and no other: only these are decoded (and bounded) by the client
        http = CountingClient(max_bytes=max_answer_bytes, deadline_s=deadline_s, limits=limits, timeout=timeout,
                              headers={"Accept-Encoding": ", ".join(_DECODERS)})
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries,
                                         timeout=timeout, http_client=http)

    @property
    def format(self) -> str:
        return FORMAT_LEVELS[self.format_level]

    def downgrade(self, from_level: int) -> bool:
        """Remember that this server rejected ``from_level``; False when nothing is left to try."""
        if from_level >= len(FORMAT_LEVELS) - 1:
            return False
        self.format_level = max(self.format_level, from_level + 1)
        return True

    async def aclose(self) -> None:
        await self.client.close()


def is_format_rejection(err: BaseException) -> bool:
    """A 4xx/5xx whose message blames the response_format."""
    if not isinstance(err, openai.APIStatusError) or err.status_code in (401, 403, 404, 429):
        return False
    text = f"{err.message} {err.body}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "grammar"))
