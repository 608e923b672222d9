"""SQLite response store (WAL): every answer is committed before it is used, for replay and resume."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Hashable, Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    identity TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    request_hash TEXT NOT NULL,
    model TEXT,
    messages TEXT NOT NULL,
    raw TEXT,
    finish_reason TEXT,
    parsed TEXT,
    failure_kind TEXT,
    failure_message TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0,
    sends INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    PRIMARY KEY (identity, attempt, request_hash)
)"""


def identity_of(key: Hashable) -> str:
    """Canonical text of a caller's key (a string or a tuple of plain values)."""
    return json.dumps(list(key) if isinstance(key, (tuple, list)) else key, separators=(",", ":"), default=str)


def request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class StoredResponse:
    raw: str | None
    finish_reason: str | None
    failure_kind: str | None
    failure_message: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    sends: int


class ResponseStore:
    """One connection per thread; safe for several processes sharing the file."""

    def __init__(self, path: str | os.PathLike, busy_timeout_ms: int = 60_000):
        self.path = os.fspath(path)
        self._busy = busy_timeout_ms
        self._local = threading.local()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with self._conn() as conn:
            conn.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self._busy / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={self._busy}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def get(self, identity: str, attempt: int, req_hash: str) -> StoredResponse | None:
        row = self._conn().execute(
            "SELECT raw, finish_reason, failure_kind, failure_message, prompt_tokens, completion_tokens, "
            "latency_s, sends FROM responses WHERE identity=? AND attempt=? AND request_hash=?",
            (identity, attempt, req_hash)).fetchone()
        return StoredResponse(*row) if row else None

    def put(self, identity: str, attempt: int, req_hash: str, *, model: str | None, messages: list[dict] | str,
            raw: str | None, finish_reason: str | None, parsed: Any, failure_kind: str | None,
            failure_message: str | None, prompt_tokens: int, completion_tokens: int, latency_s: float,
            sends: int) -> None:
        """Insert or replace one response (``messages`` as a list or its JSON); committed when this returns."""
        self._conn().execute(
            "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (identity, attempt, req_hash, model, messages if isinstance(messages, str) else json.dumps(messages),
             raw, finish_reason,
             None if parsed is None else json.dumps(parsed), failure_kind, failure_message,
             prompt_tokens, completion_tokens, latency_s, sends, time.time()))

    def keys_for(self, identities: list[str]) -> set[tuple[str, int, str]]:
        """(identity, attempt, request_hash) of every stored row for these identities."""
        conn, found = self._conn(), set()
        for i in range(0, len(identities), 500):
            chunk = identities[i:i + 500]
            found.update(conn.execute(
                "SELECT identity, attempt, request_hash FROM responses WHERE identity IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall())
        return found

    def count(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def identities(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT DISTINCT identity FROM responses")}

    def rows(self) -> Iterator[dict]:
        cur = self._conn().execute("SELECT * FROM responses ORDER BY identity, attempt, created")
        names = [d[0] for d in cur.description]
        for row in cur:
            record = dict(zip(names, row))
            record["identity"] = json.loads(record["identity"])
            record["messages"] = json.loads(record["messages"])
            record["parsed"] = None if record["parsed"] is None else json.loads(record["parsed"])
            yield record

    def export_jsonl(self, path: str | os.PathLike) -> int:
        """Write every stored exchange as one JSON line; returns the number of lines."""
        n = 0
        with open(path, "w", encoding="utf-8") as fh:
            for record in self.rows():
                fh.write(json.dumps(record, sort_keys=True) + "\n")
                n += 1
        return n

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
