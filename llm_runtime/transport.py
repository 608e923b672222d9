"""One OpenAI-compatible server: an openai client whose transport records every send and fault per request."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import httpx2
import openai

from .records import FailureKind

try:  # the transport behind openai.DefaultAioHttpClient (the openai[aiohttp] extra): the least CPU per request
    import aiohttp
    from openai._vendor.httpx_aiohttp.transport import AiohttpTransport
except ImportError:
    aiohttp = AiohttpTransport = None

FORMAT_LEVELS = ("json_schema", "json_object", "text")


@dataclass
class Probe:
    """What the transport saw while one chat call (with the openai client's retries) ran."""

    sends: int = 0
    faults: list[FailureKind] = field(default_factory=list)


PROBE: contextvars.ContextVar[Probe | None] = contextvars.ContextVar("llm_probe", default=None)


def kind_of_status(status: int) -> FailureKind:
    named = {429: FailureKind.RATE_LIMIT, 503: FailureKind.UNAVAILABLE}
    return named.get(status, FailureKind.SERVER_ERROR if status >= 500 else FailureKind.HTTP_ERROR)


def kind_of_error(err: BaseException) -> FailureKind:
    """Failure kind of an exception raised by the openai client."""
    if isinstance(err, openai.APITimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(err, openai.APIConnectionError):
        return FailureKind.CONNECTION
    if isinstance(err, openai.APIStatusError):
        return kind_of_status(err.status_code)
    return FailureKind.INTERNAL


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


class CountingTransport(httpx2.AsyncBaseTransport):
    """Counts sends and classifies failed ones into the current task's Probe, around an inner transport.

    The openai client retries inside one call; only the transport sees each attempt and how it failed.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport):
        self.inner = inner

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        probe = PROBE.get() or Probe()
        probe.sends += 1
        try:
            response = await self.inner.handle_async_request(request)
        except httpx2.TimeoutException as err:
            if _dropped(err):  # aiohttp's mapping calls a closed connection a timeout; it is not one
                probe.faults.append(FailureKind.CONNECTION)
                raise httpx2.ReadError(str(err) or "connection closed by the server") from err
            probe.faults.append(FailureKind.TIMEOUT)
            raise
        except httpx2.TransportError:
            probe.faults.append(FailureKind.CONNECTION)
            raise
        if response.status_code >= 400:
            probe.faults.append(kind_of_status(response.status_code))
        return response


def _dropped(err: BaseException) -> bool:
    """An aiohttp connection error (closed or reset by the server) rather than a real timeout."""
    cause = err.__cause__
    if aiohttp is None or cause is None:
        return False
    return isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
        cause, (aiohttp.ServerTimeoutError, aiohttp.ClientConnectorError, TimeoutError))


class Endpoint:
    """One server: its openai client, requests outstanding and sent, and the output format it accepts."""

    def __init__(self, base_url: str, api_key: str, *, concurrency: int, timeout_s: float, connect_timeout_s: float,
                 max_retries: int):
        self.base_url = base_url
        self.chat_url = base_url.rstrip("/") + "/chat/completions"  # absolute: no merging with base_url per call
        self.outstanding = self.sent = self.format_level = 0
        timeout = httpx2.Timeout(timeout_s, connect=connect_timeout_s)
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        inner = (AiohttpTransport(limits=limits) if AiohttpTransport is not None
                 else httpx2.AsyncHTTPTransport(limits=limits))
        http = httpx2.AsyncClient(transport=CountingTransport(inner), limits=limits, timeout=timeout)
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
