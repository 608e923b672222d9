"""SQLite response store (WAL): every answer is committed before it is used, for replay and resume.

A store that cannot be written raises ``StoreError`` and a damaged one ``StoreCorruptError``, each with a one-line
message naming the file: the run stops rather than fetch answers it cannot keep or build on wrong ones.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import StoreCorruptError, StoreError

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
    body TEXT,
    PRIMARY KEY (identity, attempt, request_hash)
)"""
# ``body`` is the HTTP body as the server sent it (bounded, secrets replaced), stored before it is judged; ``raw``
# (the answer's text), ``parsed`` and ``failure_kind`` are the judgement. Stores made before ``body`` existed get it
# added as they are opened for writing.


WRITE_RETRY_S = 0.0002
_COLUMNS = ("identity", "attempt", "request_hash", "model", "messages", "raw", "finish_reason", "parsed", "failure_kind",
            "failure_message", "prompt_tokens", "completion_tokens", "latency_s", "sends", "created", "body")
_INSERT = f"INSERT OR REPLACE INTO responses ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_JUDGEMENT = ("UPDATE responses SET raw=?, finish_reason=?, parsed=?, failure_kind=?, failure_message=?, "
              "prompt_tokens=?, completion_tokens=? WHERE identity=? AND attempt=? AND request_hash=?")


_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _code(err: BaseException) -> int | None:
    """The primary SQLite result code of an error (its extended code's low byte), or None if it has none."""
    code = getattr(err, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_corrupt(err: BaseException) -> bool:
    code = _code(err)
    if code is not None:
        return code in _CORRUPT
    text = str(err)
    return "malformed" in text or "not a database" in text


def _cause(err: object) -> str:
    """An error's text on one line."""
    text = " ".join(str(err).split())
    return text[:200] or type(err).__name__


def identity_of(key: Hashable) -> str:
    """Canonical text of a caller's key (a string or a tuple of plain values)."""
    return json.dumps(list(key) if isinstance(key, (tuple, list)) else key, separators=(",", ":"), default=str)


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
    body: str | None = None


class ResponseStore:
    """One connection per thread; safe for several processes sharing the file."""

    def __init__(self, path: str | os.PathLike, busy_timeout_ms: int = 60_000, *, writable: bool = True):
        """Open (or create) the store and check it: ``StoreCorruptError`` if it is damaged, and with ``writable``
        ``StoreError`` if it cannot be written, before any work. A path that cannot be a file raises OSError."""
        self.path = os.fspath(path)
        self._busy = busy_timeout_ms
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._judgements: list[tuple] = []  # written with the next row, or by flush()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            conn = self._conn()
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(1)")]
            if problems != ["ok"]:
                raise self._corrupt(f"quick_check: {_cause(' '.join(map(str, problems)))}")
            if writable:
                self._write(conn, lambda: self._probe(conn))
            else:
                conn.execute(_SCHEMA)
        except BaseException as err:
            self.close()
            if isinstance(err, (sqlite3.Error, OSError)):
                raise self._error(err, "written" if writable else "read") from err
            raise

    @staticmethod
    def _probe(conn: sqlite3.Connection) -> None:
        """Create the table, and start a write that changes nothing: a read-only file fails here, before any paid
        answer (in WAL mode ``BEGIN IMMEDIATE`` alone succeeds on a read-only file)."""
        conn.execute(_SCHEMA)
        if "body" not in {row[1] for row in conn.execute("PRAGMA table_info(responses)")}:
            conn.execute("ALTER TABLE responses ADD COLUMN body TEXT")
        conn.execute("DELETE FROM responses WHERE 0")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self._busy / 1000, isolation_level=None,
                                   check_same_thread=False)
            with self._opened_lock:  # registered first, so that close() also ends one whose set-up failed
                self._opened.append(conn)
            conn.execute(f"PRAGMA busy_timeout={self._busy}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _error(self, err: BaseException, action: str) -> StoreError | StoreCorruptError:
        """The one-line error for a failed SQLite or file operation on this store."""
        if _is_corrupt(err):
            return self._corrupt(_cause(err))
        if _code(err) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            advice = "another process holds its lock; stop that process"
        elif action == "read":
            advice = "check the disk and permissions"
        else:
            advice = "free space or fix permissions"
        return StoreError(f"response store {self.path} cannot be {action}: {_cause(err)}; {advice}, then resume")

    def _corrupt(self, detail: str) -> StoreCorruptError:
        return StoreCorruptError(f"response store {self.path} is corrupt ({detail}); move it aside and start a new "
                                 "run, or restore it from a backup")

    def get(self, identity: str, attempt: int, req_hash: str) -> StoredResponse | None:
        """The stored response, or None; ``StoreCorruptError`` or ``StoreError`` if the file cannot be read."""
        try:
            conn = self._conn()
            body = "body" if self._has_body(conn) else "NULL"
            row = conn.execute(
                "SELECT raw, finish_reason, failure_kind, failure_message, prompt_tokens, completion_tokens, "
                f"latency_s, sends, {body} FROM responses WHERE identity=? AND attempt=? AND request_hash=?",
                (identity, attempt, req_hash)).fetchone()
        except (sqlite3.Error, OSError) as err:
            raise self._error(err, "read") from err
        return StoredResponse(*row) if row else None

    def _has_body(self, conn: sqlite3.Connection) -> bool:
        """Whether the table has the ``body`` column (a store opened read-only may predate it)."""
        if not hasattr(self._local, "has_body"):
            self._local.has_body = "body" in {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
        return self._local.has_body

    @staticmethod
    def row(identity: str, attempt: int, req_hash: str, *, model: str | None, messages: list[dict] | str,
            raw: str | None, finish_reason: str | None, parsed: Any, failure_kind: str | None,
            failure_message: str | None, prompt_tokens: int, completion_tokens: int, latency_s: float,
            sends: int, body: str | None = None) -> tuple:
        """A row to store; ``messages`` and ``parsed`` as values or as JSON text."""
        return (identity, attempt, req_hash, model, messages if isinstance(messages, str) else json.dumps(messages),
                raw, finish_reason,
                None if parsed is None else parsed if isinstance(parsed, str) else json.dumps(parsed),
                failure_kind, failure_message, prompt_tokens, completion_tokens, latency_s, sends, time.time(), body)

    def put(self, *args, **kwargs) -> None:
        """Insert or replace one response (arguments as for ``row``), with the judgements waiting to be written;
        committed when this returns, else ``StoreError``."""
        row = self.row(*args, **kwargs)
        self._commit(lambda conn: conn.execute(_INSERT, row))

    def judge(self, identity: str, attempt: int, req_hash: str, *, raw: str | None, finish_reason: str | None,
              parsed: str | None, failure_kind: str | None, failure_message: str | None, prompt_tokens: int,
              completion_tokens: int) -> None:
        """Record the judgement of a stored body. It is written in the transaction of the next ``put``, or by
        ``flush``: a judgement can always be made again from the body, which is already committed, so it costs no
        commit of its own."""
        self._judgements.append((raw, finish_reason, parsed, failure_kind, failure_message, prompt_tokens,
                                 completion_tokens, identity, attempt, req_hash))

    def flush(self) -> None:
        """Commit the judgements not yet written; ``StoreError`` if that fails."""
        if self._judgements:
            self._commit(lambda conn: None)

    def _commit(self, work: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``work`` and write the waiting judgements in one transaction."""
        judgements = self._judgements[:]
        try:
            conn = self._conn()
            self._write(conn, lambda: (conn.executemany(_JUDGEMENT, judgements), work(conn)))
        except (sqlite3.Error, OSError) as err:
            raise self._error(err, "written") from err
        del self._judgements[:len(judgements)]  # a judgement made meanwhile, in another thread, stays

    def _write(self, conn: sqlite3.Connection, work: Callable[[], object]) -> None:
        """Run ``work`` in a write transaction and commit it; on any error roll back and re-raise."""
        self._begin_write(conn)
        try:
            work()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back after a failed write or commit
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    def _begin_write(self, conn: sqlite3.Connection) -> None:
        """Take the write lock, retrying every ``WRITE_RETRY_S`` while another process holds it.

        SQLite's own busy handler sleeps 1, 2, 5, 10 ms... between tries, far longer than a commit here holds
        the lock, so two processes writing at once would wait for nothing.
        """
        conn.execute("PRAGMA busy_timeout=0")
        try:
            deadline = time.monotonic() + self._busy / 1000
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as err:
                    if _code(err) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                        raise
                time.sleep(WRITE_RETRY_S)
        finally:
            conn.execute(f"PRAGMA busy_timeout={self._busy}")

    def count(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def rows(self) -> Iterator[dict]:
        self.flush()  # every judgement made so far, in the rows as they are read
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
        """Write the judgements still waiting, then close every connection this store opened, in any thread."""
        try:
            self.flush()
        except (StoreError, StoreCorruptError):
            pass  # each is judged again from its stored body when it is read
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
