"""Results folders: where a run writes, the checks that it may write there (before any work), and the
lock that keeps a second run, resume or replay of the same folder from starting while one is running."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from validation import ParameterError as ConfigError

PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".running"  # holds the running process's pid; the kernel drops the lock when that process ends


def partial_dir(out: Path) -> Path:
    """Where a run writes until it finishes (then renamed to ``out``)."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def settings_hash(s: dict) -> str:
    """Six hex digits that tell runs with different settings apart (the default folder name ends with them)."""
    chosen = {name: value for name, value in s.items() if name not in ("out", "overwrite")}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:6]


def holder(partial: Path) -> int | None:
    """The pid of the process running in ``partial`` (0 if it is unknown), or None when none is."""
    try:
        fd = os.open(partial / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)


def _already_running(field: str, partial: Path, pid: int) -> ConfigError:
    return ConfigError(field, f"{partial} is already running (pid {pid or 'unknown'})",
                       "one run, resume or replay of a results folder at a time")


@contextmanager
def exclusive(partial: Path, field: str) -> Iterator[None]:
    """Hold ``partial`` for this process while the block runs (an OS file lock, released if it dies)."""
    fd = os.open(partial / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _already_running(field, partial, holder(partial) or 0) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        os.close(fd)


def check_out(field: str, out: Path, overwrite: bool = False) -> None:
    """``out`` can be written: a new folder in a writable place, or (with ``overwrite``) an earlier run's."""
    if out.name in ("", ".", "..") or out.name.endswith(PARTIAL_SUFFIX):
        raise ConfigError(field, f"{str(out)!r} is not a folder name", f"a folder name not ending in {PARTIAL_SUFFIX}")
    if out.exists() and not out.is_dir():
        raise ConfigError(field, f"{out} is a file", "a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise ConfigError(field, f"{out} holds files that are not results of run.py",
                          "a new folder, or the folder of an earlier run to replace")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(field, f"{out} holds the results of an earlier run",
                          "another --out, or --overwrite to replace them")
    partial = partial_dir(out)
    if (pid := holder(partial)) is not None:
        raise _already_running(field, partial, pid)
    if partial.exists():
        raise ConfigError(field, f"an interrupted run is in {partial}",
                          f"`python run.py resume --run {out}`, or remove {partial} first")
    try:
        out.resolve(strict=False)
    except (OSError, RuntimeError):
        raise ConfigError(field, f"{out} cannot be resolved (a loop of symbolic links?)", "a folder path") from None
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(field, f"{parent} is not a folder", "a path whose parents are folders")
    try:
        handle, probe = tempfile.mkstemp(prefix=".run-py-write-test-", dir=parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(field, f"cannot write in {parent} ({err.strerror})", "a folder you can write to") from None


def run_folder(value: str, command: str) -> Path:
    """The final folder of the run named by ``--run`` (DIR or DIR.partial), checked for ``command``."""
    given = Path(value)
    if given.name in ("", ".", ".."):
        raise ConfigError("--run", f"{value!r} is not a results folder", "the results folder of a run")
    out = given.with_name(given.name[: -len(PARTIAL_SUFFIX)]) if given.name.endswith(PARTIAL_SUFFIX) else given
    partial = partial_dir(out)
    if (pid := holder(partial)) is not None:
        raise _already_running("--run", partial, pid)
    if command == "resume":
        if (partial / "config.json").is_file():
            return out
        if (out / "config.json").is_file():
            raise ConfigError("--run", f"{out} has finished; nothing to resume",
                              "the folder of an interrupted run (use replay to rerun a finished one)")
        raise ConfigError("--run", f"no interrupted run at {value}", "the folder an interrupted run printed")
    if not (out / "config.json").is_file():
        raise ConfigError("--run", f"no finished run at {value} (no config.json)", "a results folder of run.py")
    if partial.exists():
        raise ConfigError("--run", f"{partial} exists (an interrupted run)", f"resume it first, or remove {partial}")
    return out
