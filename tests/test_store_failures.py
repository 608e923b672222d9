"""The response store fails loudly and early: a write failure stops the run at once (exit 1) and `resume` then
finishes it as if nothing happened; a read-only or corrupt store is refused when it is opened, before any request."""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from llm_runtime import LLMClient, LLMConfig, ResponseStore, StoreCorruptError, StoreError
from tests.llm_helpers.common import work_requests
from tests.llm_server import FaultServer
from tests.test_cli_runs import llm_args, scripted

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

ROOT = Path(__file__).parent.parent
STORE = "responses.sqlite"
FULL = "database or disk is full"
READONLY = "attempt to write a readonly database"
WORKERS, STEPS = 12, 4
TOTAL = WORKERS * STEPS + 1  # one request per worker and step, one planner decision at step 3

# `python -c INJECT N run.py-arguments...`: run.py in a process whose store writes fail, as on a full disk, once N
# rows are stored. The failure is injected below the store (in the SQLite connection), so the store's own
# handling of it is what runs.
INJECT = """
import functools, sqlite3, sys, threading
left, lock = [int(sys.argv[1])], threading.Lock()

class FullDisk(sqlite3.Connection):
    def execute(self, sql, *args):
        with lock:
            if sql.startswith("INSERT") and left[0] < 1:
                raise sqlite3.OperationalError("database or disk is full")
            left[0] -= 1 if sql.startswith("INSERT") else 0
        return super().execute(sql, *args)

sqlite3.connect = functools.partial(sqlite3.connect, factory=FullDisk)
import run
sys.exit(run.main(sys.argv[2:]))
"""


# `python -c LIMIT N run.py-arguments...`: run.py in a process that may write no file beyond N bytes, so the store
# meets a real I/O error when its write-ahead log outgrows that.
LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
import run
sys.exit(run.main(sys.argv[2:]))
"""


def cli(*args, fail_after: int | None = None, max_file: int | None = None, prefix: tuple[str, ...] = (),
        ) -> subprocess.CompletedProcess:
    """run.py in a subprocess; with ``fail_after``, its store writes fail once that many rows are stored; with
    ``max_file``, it can write no file beyond that many bytes."""
    head = [sys.executable, "run.py"]
    if fail_after is not None:
        head = [sys.executable, "-c", INJECT, str(fail_after)]
    elif max_file is not None:
        head = [sys.executable, "-c", LIMIT, str(max_file)]
    return subprocess.run([*prefix, *head, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=180)


def run_args(url: str, out: Path) -> list:
    return llm_args(url, out, workers=WORKERS, steps=STEPS)


def rows_in(store: Path) -> int:
    with sqlite3.connect(store) as conn:
        return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def last_line(done: subprocess.CompletedProcess) -> str:
    """The error line run.py printed last; no traceback anywhere."""
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


def garble(path: Path, seed: int = 0) -> None:
    """4 KB of random bytes in the middle of a file."""
    size = path.stat().st_size
    assert size > 3 * 4096
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(random.Random(seed).randbytes(4096))


def as_unprivileged(tmp_path: Path) -> tuple[str, ...]:
    """A command prefix under which file permissions hold: none for a user, or root without its overrides."""
    prefix = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root, where chmod does not stop writes, and there is no setpriv to drop that")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")
    probe = tmp_path / "read-only-probe"
    probe.write_text("")
    probe.chmod(0o444)
    tried = subprocess.run([*prefix, sys.executable, "-c", "import sys; open(sys.argv[1], 'a')", str(probe)],
                           capture_output=True, text=True, timeout=60)
    probe.unlink()
    if tried.returncode == 0 or "PermissionError" not in tried.stderr:
        pytest.skip(f"a read-only file can be written here, even {' '.join(prefix[:2]) or 'as this user'}")
    return prefix


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A run from start to end against the scripted server: its folder."""
    out = tmp_path_factory.mktemp("whole") / "run"
    with FaultServer(script=scripted) as srv:
        done = cli(*run_args(srv.base_url, out))
        assert done.returncode == 0, done.stderr
        assert srv.stats()["requests"] == TOTAL
    return out


def stopped_run(srv: FaultServer, folder: Path, fail_after: int) -> tuple[Path, subprocess.CompletedProcess]:
    """A run (the same run id as the uninterrupted one) whose store fills up after ``fail_after`` rows."""
    out = folder / "run"
    return out, cli(*run_args(srv.base_url, out), fail_after=fail_after)


# --- end to end ---------------------------------------------------------------------------------------------------
def test_a_full_disk_stops_the_run_at_once_and_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    with FaultServer(script=scripted) as srv:
        out, done = stopped_run(srv, tmp_path, fail_after=20)
        partial = tmp_path / "run.partial"
        assert done.returncode == 1, done.stderr
        assert last_line(done) == (f"run.py: run: response store {partial / STORE} cannot be written: {FULL}; "
                                   "free space or fix permissions, then resume")
        assert f"resume --run {out}" in done.stderr  # the experiments layer's hint
        sent, kept = srv.stats()["requests"], rows_in(partial / STORE)
        assert kept == 20 and sent - kept <= WORKERS  # only the batch in flight was lost, no later step was asked
        resumed = cli("resume", "--run", out)
        assert resumed.returncode == 0, resumed.stderr
        assert srv.stats()["requests"] == TOTAL + (sent - kept)  # each stored answer replayed, not asked again
    pd.testing.assert_frame_equal(pd.read_parquet(out / "model.parquet"),
                                  pd.read_parquet(uninterrupted / "model.parquet"))
    objective = [pd.read_csv(folder / "summary.csv", index_col="run")["objective"].iloc[0]
                 for folder in (out, uninterrupted)]
    assert objective[0] == objective[1]


def test_a_file_size_limit_stops_the_run_and_resume_finishes_it(uninterrupted, tmp_path):
    out = tmp_path / "run"
    store = tmp_path / "run.partial" / STORE
    with FaultServer(script=scripted) as srv:
        done = cli(*run_args(srv.base_url, out), max_file=160 * 1024)  # the log outgrows it in the second step
        assert done.returncode == 1, done.stderr
        assert last_line(done).startswith(f"run.py: run: response store {store} cannot be written: ")
        assert 0 < rows_in(store) and srv.stats()["requests"] < TOTAL
        resumed = cli("resume", "--run", out)
        assert resumed.returncode == 0, resumed.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out / "model.parquet"),
                                  pd.read_parquet(uninterrupted / "model.parquet"))


def test_a_read_only_store_stops_resume_before_any_request(tmp_path):
    prefix = as_unprivileged(tmp_path)
    with FaultServer(script=scripted) as srv:
        out, done = stopped_run(srv, tmp_path, fail_after=5)
        assert done.returncode == 1, done.stderr
        store = tmp_path / "run.partial" / STORE
        for path in store.parent.glob(STORE + "*"):
            path.chmod(0o444)
        sent = srv.stats()["requests"]
        resumed = cli("resume", "--run", out, prefix=prefix)
        assert srv.stats()["requests"] == sent
    assert resumed.returncode == 1, resumed.stderr
    assert resumed.stderr.strip().splitlines() == [
        f"run.py: resume: response store {store} cannot be written: {READONLY}; free space or fix permissions, "
        "then resume"]


def test_a_corrupt_store_stops_resume_and_replay_before_any_request(uninterrupted, tmp_path):
    finished = tmp_path / "finished"
    shutil.copytree(uninterrupted, finished)
    garble(finished / STORE)
    with FaultServer(script=scripted) as srv:
        out, done = stopped_run(srv, tmp_path, fail_after=WORKERS * 3)
        assert done.returncode == 1, done.stderr
        garble(tmp_path / "run.partial" / STORE)
        sent = srv.stats()["requests"]
        resumed = cli("resume", "--run", out)
        replayed = cli("replay", "--run", finished)
        assert srv.stats()["requests"] == sent
    for command, done in (("resume", resumed), ("replay", replayed)):
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith(f"run.py: {command}: response store ") and " is corrupt (" in lines[0]
        assert lines[0].endswith("; move it aside and start a new run, or restore it from a backup")
    assert f"response store {tmp_path / 'run.partial' / STORE} is corrupt (" in resumed.stderr
    assert f"response store {finished / STORE} is corrupt (" in replayed.stderr  # the run's own file is named
    assert (tmp_path / "run.partial" / "config.json").is_file()  # the stopped run is kept for resume
    assert not list(finished.rglob("*.partial")) and not (tmp_path / "finished.partial").exists()  # replay left none


# --- the store and the client -------------------------------------------------------------------------------------
def _put(store: ResponseStore, *rows: int) -> None:
    for i in rows:
        store.put(f'["run",{i}]', 0, "h" * 64, model="m",
                  messages=[{"role": "user", "content": "x" * (100 + 37 * i % 2000)}], raw='{"hours": 40}',
                  finish_reason="stop", parsed=None, failure_kind=None, failure_message=None,
                  prompt_tokens=1, completion_tokens=1, latency_s=0.1, sends=1)


def filled(path: Path, n: int = 300) -> Path:
    store = ResponseStore(path)
    _put(store, *range(n))
    store.close()
    return path


def failing_writes(monkeypatch, error: sqlite3.Error, after: int = 0) -> dict:
    """SQLite connections whose writes raise ``error`` once ``after`` rows are stored; ``state["on"]`` switches."""
    state = {"on": True, "left": after}
    writes = ("INSERT", "DELETE", "UPDATE")  # as SQLite: CREATE TABLE IF NOT EXISTS of a table that is there reads

    class Failing(sqlite3.Connection):
        def _check(self, sql: str, n: int) -> None:
            if state["on"] and sql.lstrip().upper().startswith(writes):
                if state["left"] < max(n, 1):
                    raise error
                state["left"] -= n

        def execute(self, sql, *args):
            self._check(sql, int(sql.lstrip().upper().startswith("INSERT")))
            return super().execute(sql, *args)

        def executemany(self, sql, rows):
            rows = list(rows)
            self._check(sql, len(rows))
            return super().executemany(sql, rows)

    monkeypatch.setattr(sqlite3, "connect", functools.partial(sqlite3.connect, factory=Failing))
    return state


def test_a_failed_write_is_a_store_error_naming_the_file_and_the_cause(tmp_path, monkeypatch):
    path = tmp_path / "full.sqlite"
    state = failing_writes(monkeypatch, sqlite3.OperationalError(FULL), after=1)
    store = ResponseStore(path)
    _put(store, 0)
    with pytest.raises(StoreError) as raised:
        _put(store, 1, 2)
    assert str(raised.value) == (f"response store {path} cannot be written: {FULL}; free space or fix permissions, "
                                 "then resume")
    state["on"] = False  # the disk has room again: the store goes on, nothing half-written
    _put(store, 3)
    assert store.count() == 2 and store.get('["run",0]', 0, "h" * 64) is not None
    store.close()


def test_a_read_only_store_is_refused_when_opened_for_recording(tmp_path, monkeypatch):
    path = filled(tmp_path / "ro.sqlite", 3)
    failing_writes(monkeypatch, sqlite3.OperationalError(READONLY))
    with pytest.raises(StoreError, match=re.escape(f"response store {path} cannot be written: {READONLY}; ")):
        ResponseStore(path)
    replay = ResponseStore(path, writable=False)  # replay only reads
    assert replay.count() == 3
    replay.close()


def test_a_read_only_file_is_refused_when_opened_for_recording(tmp_path):
    path = filled(tmp_path / "ro.sqlite", 3)
    path.chmod(0o444)
    code = ("import sys\nfrom llm_runtime import ResponseStore, StoreError\n"
            "try:\n    ResponseStore(sys.argv[1])\nexcept StoreError as error:\n    print(error)\n")
    done = subprocess.run([*as_unprivileged(tmp_path), sys.executable, "-c", code, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == (
        f"response store {path} cannot be written: {READONLY}; free space or fix permissions, then resume"), done


@pytest.mark.parametrize("writable", [True, False])
def test_a_garbled_store_is_corrupt_when_opened(tmp_path, writable):
    path = filled(tmp_path / "bad.sqlite")
    garble(path)
    with pytest.raises(StoreCorruptError) as raised:
        ResponseStore(path, writable=writable)
    message = str(raised.value)
    assert message.startswith(f"response store {path} is corrupt (quick_check: ") and "\n" not in message
    assert message.endswith("; move it aside and start a new run, or restore it from a backup")


def test_a_file_that_is_not_a_database_is_corrupt(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_bytes(random.Random(1).randbytes(16384))
    with pytest.raises(StoreCorruptError, match="is corrupt \\(file is not a database\\)"):
        ResponseStore(path)


@pytest.mark.parametrize("mode", ["record", "replay"])
def test_the_client_refuses_a_corrupt_store_before_any_request(tmp_path, mode):
    path = filled(tmp_path / "bad.sqlite")
    garble(path)
    with FaultServer() as srv:
        with pytest.raises(StoreCorruptError, match="corrupt"):
            LLMClient(LLMConfig(base_urls=(srv.base_url,), model="fault-model", store_path=str(path),
                                store_mode=mode))
        assert srv.stats()["requests"] == 0


def test_a_failed_write_ends_the_batch_at_once(tmp_path, monkeypatch):
    path = tmp_path / "batch.sqlite"
    with FaultServer(latency=0.05, slots=4) as srv:
        with LLMClient(LLMConfig(base_urls=(srv.base_url,), model="fault-model", store_path=str(path),
                                 concurrency=4)) as client:
            failing_writes(monkeypatch, sqlite3.OperationalError(FULL), after=6)
            with pytest.raises(StoreError, match=FULL):
                client.run_batch(work_requests(200), progress=lambda done, total: None)
            sent = sum(ep.sent for ep in client._endpoints)  # requests the client put on the wire
            time.sleep(0.3)  # (a check that nothing more goes out: a slow machine only makes it weaker)
            assert sum(ep.sent for ep in client._endpoints) == sent  # the rest of the batch was cancelled
    # the stored answers, the one that failed, those in flight, and those sent as the last answers came in
    assert sent <= 6 + 1 + 2 * 4 and srv.stats()["requests"] <= sent
