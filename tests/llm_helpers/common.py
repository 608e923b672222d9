"""Schemas and request builders shared by the LLM layer's tests."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from llm_runtime import LLMRequest


class Work(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: int = Field(ge=0, le=100)
    reason: str = Field(max_length=80)


def work_requests(n: int, run: str = "run") -> list[LLMRequest]:
    return [LLMRequest(key=(run, 0, "work", i),
                       messages=[{"role": "system", "content": "You are a worker. Answer in JSON."},
                                 {"role": "user", "content": f"Agent {i}: how many hours will you work?"}],
                       schema=Work) for i in range(n)]


def request_id(key) -> str:
    """The X-Client-Request-Id the client sends for a key."""
    identity = json.dumps(list(key), separators=(",", ":"))
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def outcome(result) -> dict:
    """A comparable summary of one LLMResult."""
    return {"value": None if result.value is None else result.value.model_dump(),
            "failure": None if result.failure is None else result.failure.kind.value, "raw": result.raw}
