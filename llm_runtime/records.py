"""Requests, results and the typed failures a request can end in."""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


class FailureKind(str, enum.Enum):
    """Why a request produced no validated value (also the fault kinds counted by the accounting)."""

    RATE_LIMIT = "rate_limit"          # HTTP 429
    SERVER_ERROR = "server_error"      # HTTP 500 and other 5xx
    UNAVAILABLE = "unavailable"        # HTTP 503
    HTTP_ERROR = "http_error"          # other 4xx
    CONNECTION = "connection"          # connection refused or dropped
    TIMEOUT = "timeout"
    MALFORMED_JSON = "malformed_json"
    TRUNCATED_JSON = "truncated_json"
    WRONG_KEYS = "wrong_keys"          # missing or unexpected keys
    OUT_OF_RANGE = "out_of_range"      # bounds, lengths, enums
    INVALID_TYPE = "invalid_type"
    REFUSAL = "refusal"                # prose without any JSON
    EMPTY = "empty"
    INTERNAL = "internal"              # unexpected error inside the layer

    @property
    def is_transport(self) -> bool:
        return self in _TRANSPORT


_TRANSPORT = {FailureKind.RATE_LIMIT, FailureKind.SERVER_ERROR, FailureKind.UNAVAILABLE, FailureKind.HTTP_ERROR,
              FailureKind.CONNECTION, FailureKind.TIMEOUT, FailureKind.INTERNAL}


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

    def value_or(self, fallback: BaseModel) -> BaseModel:
        """The validated value, or the caller's documented fallback action when the request failed."""
        return self.value if self.value is not None else fallback


class RequestStream:
    """``size`` requests built one by one as they are taken; ``LLMClient.run_batch`` accepts it as a batch.

    The first requests are on the wire while the rest are still being built.
    """

    def __init__(self, size: int, requests: Iterable[LLMRequest]):
        self.size, self._requests = size, requests

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[LLMRequest]:
        return iter(self._requests)
