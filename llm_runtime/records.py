"""Requests, results and the typed failures a request can end in."""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


class FailureKind(str, enum.Enum):
    """Why a request produced no validated value (also the fault kinds counted by the accounting)."""

    RATE_LIMIT = "rate_limit"                  # HTTP 429
    SERVER_ERROR = "server_error"              # HTTP 500 and other 5xx
    UNAVAILABLE = "unavailable"                # HTTP 503
    HTTP_ERROR = "http_error"                  # other 4xx
    REDIRECT = "redirect"                      # HTTP 3xx: an API answers, it does not send elsewhere
    CONNECTION_REFUSED = "connection_refused"  # nothing listens at the address (a server that died)
    CONNECTION_RESET = "connection_reset"      # the server closed or reset the connection mid-request
    DNS = "dns"                                # the host name does not resolve
    CONNECTION = "connection"                  # any other failure to connect
    TIMEOUT = "timeout"                        # no answer within the request timeout
    READ_STALL = "read_stall"                  # the answer's body stopped arriving
    DEADLINE = "deadline"                      # the whole exchange took longer than its total deadline
    TOO_LARGE = "too_large"                    # the answer exceeded its size bound
    BAD_RESPONSE = "bad_response"              # the body is not a chat completion (not JSON, no choices, ...)
    ERROR_IN_200 = "error_in_200"              # HTTP 200 whose body is an error
    MALFORMED_JSON = "malformed_json"
    TRUNCATED_JSON = "truncated_json"
    AMBIGUOUS = "ambiguous"                    # several JSON objects, or a key given twice
    WRONG_KEYS = "wrong_keys"                  # missing or unexpected keys
    OUT_OF_RANGE = "out_of_range"              # bounds, lengths, enums
    INVALID_TYPE = "invalid_type"
    REFUSAL = "refusal"                        # prose without any JSON
    EMPTY = "empty"
    INTERNAL = "internal"                      # unexpected error inside the layer

    @property
    def is_content(self) -> bool:
        """The model's own text was judged and found wanting: worth re-asking with the error."""
        return self in _CONTENT

    @property
    def is_exchange(self) -> bool:
        """Decided by the exchange itself (status, connection, time, size), before any body was judged."""
        return self in _EXCHANGE

    @property
    def is_transient(self) -> bool:
        """Nothing was learnt about the answer: a resumed run asks again (everything else stored is kept)."""
        return self in _TRANSIENT


_CONTENT = {FailureKind.MALFORMED_JSON, FailureKind.TRUNCATED_JSON, FailureKind.AMBIGUOUS, FailureKind.WRONG_KEYS,
            FailureKind.OUT_OF_RANGE, FailureKind.INVALID_TYPE, FailureKind.REFUSAL, FailureKind.EMPTY}
_TRANSIENT = {FailureKind.RATE_LIMIT, FailureKind.SERVER_ERROR, FailureKind.UNAVAILABLE, FailureKind.CONNECTION_REFUSED,
              FailureKind.CONNECTION_RESET, FailureKind.DNS, FailureKind.CONNECTION, FailureKind.TIMEOUT,
              FailureKind.READ_STALL, FailureKind.INTERNAL}
_EXCHANGE = _TRANSIENT | {FailureKind.HTTP_ERROR, FailureKind.REDIRECT, FailureKind.DEADLINE, FailureKind.TOO_LARGE}
UNREACHABLE = frozenset({FailureKind.CONNECTION_REFUSED, FailureKind.CONNECTION_RESET, FailureKind.DNS,
                         FailureKind.CONNECTION})
"""Failures that say the server cannot be reached (rather than that it answered badly)."""


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class LLMRequest:
    """One chat request. ``key`` is the caller's deterministic identity, e.g. (run, step, stage, agent)."""

    key: Hashable
    messages: list[dict[str, Any]]
    schema: type[BaseModel]
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None


@dataclass
class LLMResult:
    """A validated ``value`` or a typed ``failure`` (never both)."""

    key: Hashable
    value: BaseModel | None
    failure: Failure | None
    raw: str | None = None
    from_store: bool = False
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    attempts: int = 1          # answers obtained, i.e. 1 + re-asks
    sends: int = 0             # HTTP requests sent for this result (retries included)

    @property
    def ok(self) -> bool:
        return self.failure is None


class RequestStream:
    """``size`` requests built one by one as they are taken; ``LLMClient.run_batch`` accepts it as a batch.

    The client takes them on its own thread as the servers take requests, while the caller's thread waits: the
    first requests are on the wire while the rest are still being built. Building a request must not wait for
    anything else the client does (it cannot start another batch).
    """

    def __init__(self, size: int, requests: Iterable[LLMRequest]):
        self.size, self._requests = size, requests

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[LLMRequest]:
        return iter(self._requests)
