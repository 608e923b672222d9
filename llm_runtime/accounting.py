"""Counters of one client: calls, store hits, retries, re-asks, faults and failures by kind, clipped answers,
tokens, latency."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np


class Accounting:
    """Updated on the client's event loop thread; ``to_dict()`` may be read from any thread."""

    def __init__(self) -> None:
        self.requests = 0          # results returned
        self.calls = 0             # answers asked of a server (one per attempt, retries excluded)
        self.sends = 0             # HTTP requests sent, retries included
        self.store_hits = 0
        self.retries = 0
        self.reasks = 0
        self.format_fallbacks = 0
        self.clipped = 0           # valid answers paper mode clipped (or reversed, for a leader)
        self.rate_limit_waits = 0  # 429s waited out (each one also a rate_limit fault); not failures
        self.rate_limit_wait_s = 0.0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.faults: Counter[str] = Counter()     # every fault seen, including those later retried or re-asked
        self.failures: Counter[str] = Counter()   # final typed failures
        self._latencies: list[float] = []

    def add(self, **increments: int) -> None:
        for name, value in increments.items():
            setattr(self, name, getattr(self, name) + value)

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def failure(self, kind: str) -> None:
        self.failures[kind] += 1

    def latency(self, seconds: float) -> None:
        self._latencies.append(seconds)

    def to_dict(self) -> dict:
        lat = np.array(self._latencies)
        pct = ({f"p{p}": float(np.percentile(lat, p)) for p in (50, 90, 99)}
               | {"max": float(lat.max()), "mean": float(lat.mean())}) if lat.size else {}
        return {"requests": self.requests, "calls": self.calls, "sends": self.sends, "store_hits": self.store_hits,
                "retries": self.retries, "reasks": self.reasks, "format_fallbacks": self.format_fallbacks,
                "clipped": self.clipped, "rate_limit_waits": self.rate_limit_waits,
                "rate_limit_wait_s": self.rate_limit_wait_s, "failures": dict(self.failures), "faults": dict(self.faults),
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "latency_s": pct}

    def write_json(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2, sort_keys=True, allow_nan=False)
