"""Results folders: where a run writes, the checks that it may write there (before any work), and the
locks that keep a second command off a folder that a run, resume or replay is writing.

A new run takes ``<name>.partial`` atomically: the staging folder is built under a temporary name beside it,
with its ``config.json`` and its locked ``.running`` file, and then renamed; a rename onto a folder that
exists fails, so of two commands started at once exactly one gets it. A replay holds a lock on the run's
folder itself (``<name>/.running``), and a command that would replace that folder holds it too."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from validation import ParameterError as ConfigError

PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".running"  # holds the running process's pid; the kernel drops the lock when that process ends
TEMP_PREFIX = ".run-py-"  # short, so that a temporary name beside a folder fits wherever the folder's name does
DEFAULT_NAME_MAX = 255


def python_command() -> str:
    """How to call this Python in a new shell: ``.venv/bin/python`` from the project's folder, else its full path."""
    python = sys.executable or "python"
    relative = os.path.relpath(python) if os.path.isabs(python) else python
    return shlex.quote(python if relative.startswith("..") else relative)


def resume_command(out) -> str:
    """The exact command that continues the run in ``out``."""
    return f"{python_command()} run.py resume --run {shlex.quote(str(out))}"


def partial_dir(out: Path) -> Path:
    """Where a run writes until it finishes (then renamed to ``out``)."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def settings_hash(s: dict) -> str:
    """Six hex digits that tell runs with different settings apart (the default folder name ends with them)."""
    chosen = {name: value for name, value in s.items() if name not in ("out", "overwrite")}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:6]


def _held_by(folder: Path) -> tuple[int, str] | None:
    """(pid, what it does) of the process holding ``folder``'s lock (pid 0 if unknown), or None when none does."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        words = os.read(fd, 64).decode(errors="replace").split()
        pid = int(words[0]) if words and words[0].isdigit() else 0
        return pid, words[1] if len(words) > 1 else "running"
    finally:
        os.close(fd)


def holder(folder: Path) -> int | None:
    """The pid of the process running in ``folder`` (0 if it is unknown), or None when none is."""
    held = _held_by(folder)
    return None if held is None else held[0]


def _in_use(field: str, folder: Path, held: tuple[int, str]) -> ConfigError:
    pid, doing = held
    state = "is being replayed" if doing == "replayed" else "is already running"
    return ConfigError(field, f"{folder} {state} (pid {pid or 'unknown'})",
                       "one run, resume or replay of a results folder at a time")


def _lock(folder: Path, field: str, doing: str) -> int:
    """Take ``folder``'s lock for this process; returns the open lock file (closing it releases the lock)."""
    path = folder / LOCK_NAME
    probes = 0
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if not folder.is_dir():
                raise ConfigError(field, f"{folder} is gone (another command finished or removed it)",
                                  "a results folder that exists") from None
            raise ConfigError(field, f"cannot write {path} ({err.strerror})", "a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            running = _held_by(folder)
            if running is None and probes < 100:  # another command's check held it for an instant
                probes += 1
                time.sleep(0.001)
                continue
            raise _in_use(field, folder, running or (0, doing)) from None
        try:
            mine = os.stat(path).st_ino == os.fstat(fd).st_ino
        except OSError:
            mine = False
        if mine:
            break
        os.close(fd)  # its last holder removed that file as it finished: take the one there now
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {doing}\n".encode())
    return fd


@contextmanager
def exclusive(folder: Path, field: str, doing: str = "running", remove: bool = False) -> Iterator[None]:
    """Hold ``folder`` for this process while the block runs (an OS file lock, released if it dies);
    ``remove``: the lock file goes with the lock (a finished run's folder keeps none)."""
    fd = _lock(folder, field, doing)
    try:
        yield
    finally:
        try:
            if remove and os.stat(folder / LOCK_NAME).st_ino == os.fstat(fd).st_ino:
                os.unlink(folder / LOCK_NAME)
        except OSError:
            pass
        os.close(fd)


@contextmanager
def held(out: Path, field: str) -> Iterator[Path]:
    """Hold the staging folder of ``out`` (it must exist), and ``out`` too where a finished run is there to be
    replaced, while the block runs; yields the staging folder."""
    partial = partial_dir(out)
    with ExitStack() as stack:
        stack.enter_context(exclusive(partial, field))
        if out.is_dir():
            stack.enter_context(exclusive(out, field, remove=True))
        yield partial


@contextmanager
def take(out: Path, field: str, overwrite: bool, prepare: Callable[[Path], None]) -> Iterator[Path]:
    """Create and hold the staging folder of ``out``, atomically; yields it.

    ``prepare`` fills the new folder (its config) before it appears under its name. A folder that another
    command holds, an interrupted run's, or (without ``overwrite``) results that appeared since the checks
    are refused with a ConfigError, and nothing is left behind."""
    partial = partial_dir(out)
    parent = partial.parent
    staging = parent / f"{TEMP_PREFIX}new-{uuid.uuid4().hex[:12]}"  # made as any folder is (the umask's mode)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as err:
        raise ConfigError(field, f"cannot create a folder in {parent} ({err.strerror})",
                          "a folder you can write to") from None
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive(staging, field))
            try:
                prepare(staging)
            except OSError as err:
                raise ConfigError(field, f"cannot write in {parent} ({err.strerror or err})",
                                  "a folder you can write to") from None
            while True:
                try:
                    os.rename(staging, partial)  # fails when the folder is there, with its files
                    break
                except OSError as err:
                    if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise ConfigError(field, f"cannot create {partial} ({err.strerror})",
                                          "a folder you can write to") from None
                    if (running := _held_by(partial)) is not None:
                        raise _in_use(field, partial, running) from None
                    if partial.exists():
                        raise ConfigError(field, f"an interrupted run is in {partial}",
                                          f"`{resume_command(out)}`, or remove {partial} first") from None
                    # it went away (its run finished): take it now
        except BaseException:
            stack.close()
            discard(staging)
            raise
        try:  # the folder is ours; what is in `out` may have changed since the checks
            _check_results(field, out, overwrite)
            if out.is_dir():
                stack.enter_context(exclusive(out, field, remove=True))  # not replaced while a replay reads it
        except BaseException:
            discard(partial)
            raise
        yield partial


def discard(folder: Path) -> None:
    """Remove ``folder`` at once for others (renamed away first), then its files."""
    away = folder.with_name(f"{TEMP_PREFIX}gone-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, away)
    except OSError:
        away = folder
    shutil.rmtree(away, ignore_errors=True)


def finish(out: Path) -> Path:
    """Replace ``out`` by its completed staging folder (the old results, if any, go only after the rename).
    Called while the staging folder (and ``out``, when it exists) are held."""
    partial = partial_dir(out)
    old = None
    if out.exists():
        old = out.with_name(f"{TEMP_PREFIX}old-{uuid.uuid4().hex[:8]}")
        out.rename(old)
    try:
        partial.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)  # the earlier results stay where they were
        raise
    (out / LOCK_NAME).unlink(missing_ok=True)  # a finished folder is nobody's to hold
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def name_max(path: Path) -> int:
    """The longest file name (in bytes) the file system of ``path``'s nearest existing folder allows."""
    folder = path.absolute()
    while True:
        try:
            if folder.is_dir():
                return os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            return DEFAULT_NAME_MAX
        if folder.parent == folder:
            return DEFAULT_NAME_MAX
        folder = folder.parent


def _too_long(field: str, path: Path, allowed: str) -> None:
    """A path with a folder name the file system cannot hold (the last one with ``.partial`` added)."""
    limit = name_max(path)
    parts = path.parts
    for index, part in enumerate(parts):
        extra = len(PARTIAL_SUFFIX) if index == len(parts) - 1 else 0
        if len(os.fsencode(part)) + extra > limit:
            raise ConfigError(field, f"a folder name of {len(os.fsencode(part)):,} bytes is too long for the file "
                              f"system", f"{allowed}, whose folder names have at most {limit} bytes (the last at "
                              f"most {limit - len(PARTIAL_SUFFIX)}, as {PARTIAL_SUFFIX} is added to it)")


def _check_results(field: str, out: Path, overwrite: bool) -> None:
    """What is in ``out`` itself may be replaced: nothing, or (with ``overwrite``) an earlier run's results."""
    if out.exists() and not out.is_dir():
        raise ConfigError(field, f"{out} is a file", "a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise ConfigError(field, f"{out} holds files that are not results of run.py",
                          "a new folder, or the folder of an earlier run to replace")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(field, f"{out} holds the results of an earlier run",
                          "another --out, or --overwrite to replace them")
    if (running := _held_by(out)) is not None:
        raise _in_use(field, out, running)


def check_out(field: str, out: Path, overwrite: bool = False) -> None:
    """``out`` can be written: a new folder in a writable place, or (with ``overwrite``) an earlier run's."""
    if out.name in ("", ".", "..") or out.name.endswith(PARTIAL_SUFFIX):
        raise ConfigError(field, f"{str(out)!r} is not a folder name", f"a folder name not ending in {PARTIAL_SUFFIX}")
    _too_long(field, out, "a folder path")
    _check_results(field, out, overwrite)
    partial = partial_dir(out)
    if (running := _held_by(partial)) is not None:
        raise _in_use(field, partial, running)
    if partial.exists():
        raise ConfigError(field, f"an interrupted run is in {partial}",
                          f"`{resume_command(out)}`, or remove {partial} first")
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
    _too_long("--run", out, "the results folder of a run")
    partial = partial_dir(out)
    if (running := _held_by(partial)) is not None:
        raise _in_use("--run", partial, running)
    if (running := _held_by(out)) is not None:
        raise _in_use("--run", out, running)
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
