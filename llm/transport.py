"""HTTP plumbing: a transport that records every fault per request, and one endpoint per base URL."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import httpx2
import openai

from .records import FailureKind

try:  # the transport the openai client itself uses for DefaultAioHttpClient
    import aiohttp
    from openai._vendor.httpx_aiohttp.transport import AiohttpTransport
except ImportError:  # the openai[aiohttp] extra is not installed
    aiohttp = AiohttpTransport = None

FORMAT_LEVELS = ("json_schema", "json_object", "text")


@dataclass
class Probe:
    """What the transport saw while one chat call (with its retries) ran."""

    sends: int = 0
    faults: list[FailureKind] = field(default_factory=list)


PROBE: contextvars.ContextVar[Probe | None] = contextvars.ContextVar("llm_probe", default=None)


def kind_of_status(status: int) -> FailureKind:
    if status == 429:
        return FailureKind.RATE_LIMIT
    if status == 503:
        return FailureKind.UNAVAILABLE
    if status >= 500:
        return FailureKind.SERVER_ERROR
    return FailureKind.HTTP_ERROR


def kind_of_error(err: BaseException) -> FailureKind:
    """Failure kind of an exception raised by the openai client."""
    if isinstance(err, openai.APITimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(err, openai.APIConnectionError):
        return FailureKind.CONNECTION
    if isinstance(err, openai.APIStatusError):
        return kind_of_status(err.status_code)
    return FailureKind.INTERNAL


class CountingTransport(httpx2.AsyncBaseTransport):
    """Counts sends and classifies failed ones into the current task's Probe, around an inner transport."""

    def __init__(self, inner: httpx2.AsyncBaseTransport):
        self.inner = inner

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        probe = PROBE.get()
        if probe is not None:
            probe.sends += 1
        try:
            response = await self.inner.handle_async_request(request)
        except httpx2.TimeoutException as err:
            if _dropped(err):  # aiohttp's mapping calls a closed connection a timeout; it is not one
                if probe is not None:
                    probe.faults.append(FailureKind.CONNECTION)
                raise httpx2.ReadError(str(err) or "connection closed by the server") from err
            if probe is not None:
                probe.faults.append(FailureKind.TIMEOUT)
            raise
        except httpx2.TransportError:
            if probe is not None:
                probe.faults.append(FailureKind.CONNECTION)
            raise
        if response.status_code >= 400 and probe is not None:
            probe.faults.append(kind_of_status(response.status_code))
        return response


def _dropped(err: BaseException) -> bool:
    """An aiohttp connection error (closed or reset by the server) rather than a real timeout."""
    cause = err.__cause__
    if aiohttp is None or cause is None:
        return False
    return isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
        cause, (aiohttp.ServerTimeoutError, aiohttp.ClientConnectorError, TimeoutError))


def inner_transport(ssl_context, limits: httpx2.Limits) -> httpx2.AsyncBaseTransport:
    """aiohttp's C-accelerated HTTP/1.1 when installed (the client's ``openai[aiohttp]`` extra), else httpx's."""
    if AiohttpTransport is not None:
        return AiohttpTransport(verify=ssl_context, limits=limits)
    return httpx2.AsyncHTTPTransport(verify=ssl_context, limits=limits)


CONNECTIONS_PER_LANE = 8
# the client's platform telemetry headers are dropped: each header costs CPU on every request
_NO_TELEMETRY = {h: openai.Omit() for h in (
    "X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch",
    "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Async")}


class Endpoint:
    """One OpenAI-compatible server: its clients, outstanding requests, and the output formats it accepts.

    Connections are split over several small pools ("lanes"): the pool's bookkeeping scans every connection
    on each request, so small pools keep the client's CPU cost per request flat as concurrency grows.
    """

    def __init__(self, index: int, base_url: str, api_key: str, *, concurrency: int, timeout_s: float,
                 connect_timeout_s: float, max_retries: int):
        self.index, self.base_url = index, base_url
        self.chat_url = base_url.rstrip("/") + "/chat/completions"  # absolute: the client skips URL merging
        self.outstanding = 0
        self.sent = 0
        self.format_level = 0
        n_lanes = -(-concurrency // CONNECTIONS_PER_LANE)
        per_lane = -(-concurrency // n_lanes)
        timeout = httpx2.Timeout(timeout_s, connect=connect_timeout_s)
        self.lanes: list[openai.AsyncOpenAI] = []
        ssl_context = httpx2.create_ssl_context()  # loading CA certificates is slow: once per endpoint
        for _ in range(n_lanes):
            limits = httpx2.Limits(max_connections=per_lane, max_keepalive_connections=per_lane)
            http = httpx2.AsyncClient(transport=CountingTransport(inner_transport(ssl_context, limits)), limits=limits,
                                      timeout=timeout, verify=ssl_context)
            self.lanes.append(openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries,
                                                 timeout=timeout, http_client=http,
                                                 default_headers=_NO_TELEMETRY))
        self.lane_load = [0] * n_lanes
        self.client = self.lanes[0]

    def acquire_lane(self) -> int:
        """Index of the least loaded lane, now counted as busy."""
        lane = min(range(len(self.lanes)), key=self.lane_load.__getitem__)
        self.lane_load[lane] += 1
        self.outstanding += 1
        self.sent += 1
        return lane

    def release_lane(self, lane: int) -> None:
        self.lane_load[lane] -= 1
        self.outstanding -= 1

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
        for lane in self.lanes:
            await lane.close()


def is_format_rejection(err: BaseException) -> bool:
    """A 4xx/5xx whose message blames the response_format."""
    if not isinstance(err, openai.APIStatusError) or err.status_code in (401, 403, 404, 429):
        return False
    text = f"{err.message} {err.body}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "grammar"))
