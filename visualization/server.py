"""Start the dashboard's Solara server as a subprocess, and stop it with its parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from visualization import assets

APP = Path(__file__).with_name("app.py")
PLUGINS_VARIABLE = "LLM_ECONOMIST_PLUGINS"  # the server's plugin files, os.pathsep-separated: see app.py
STOP_GRACE_S = 10.0  # how long the server may take to close its connections before it is killed
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stop(Exception):
    """The supervising process got a stop signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def command(host: str = "127.0.0.1", port: int = 8765) -> list[str]:
    """The ``solara run`` command line for the dashboard."""
    return [sys.executable, "-m", "solara", "run", str(APP), "--host", host, "--port", str(port), "--no-open",
            "--production"]


def serve(host: str = "127.0.0.1", port: int = 8765, wait: bool = True, plugins: Sequence[str] = (),
          **popen_kwargs) -> subprocess.Popen | int:
    """Run the dashboard server on ``host:port`` as a subprocess, after putting its front-end files in place
    (:func:`visualization.assets.ensure`). The server loads the ``plugins`` (Python files that register minds,
    planners, ...) before it builds its controls, so that their names are in the menus.

    With ``wait``, block until it exits and return its exit code: SIGTERM or SIGINT stop the server
    too (killed after :data:`STOP_GRACE_S`) and give 128 + the signal number, and missing front-end
    files that cannot be fetched give 1 after a one-line message on stderr. Without ``wait``, return
    the process (or raise :class:`~visualization.assets.AssetsUnavailable`). ``popen_kwargs`` go to
    :class:`subprocess.Popen`; relative paths such as the LLM response store of LLM minds
    (``results/llm-responses.sqlite``) resolve in its ``cwd``, by default the caller's, as for the other
    ``run.py`` commands.
    """
    environment = dict(popen_kwargs.pop("env", None) or os.environ)
    environment.pop(PLUGINS_VARIABLE, None)
    if plugins:
        environment[PLUGINS_VARIABLE] = os.pathsep.join(str(Path(path).resolve()) for path in plugins)
    popen_kwargs["env"] = environment
    if not wait:
        assets.ensure(say=lambda line: None)
        return subprocess.Popen(command(host, port), **popen_kwargs)
    process = None
    try:
        with stop_signals_raise():
            try:
                assets.ensure(say=lambda line: print(line, flush=True))
                process = subprocess.Popen(command(host, port), preexec_fn=die_with_parent, **popen_kwargs)
                return process.wait()
            except Stop:
                if process is not None:
                    stop(process)
                raise
    except assets.AssetsUnavailable as error:
        print(f"dashboard: {error}", file=sys.stderr)
        return 1
    except Stop as stopped:
        return 128 + stopped.signum


@contextlib.contextmanager
def stop_signals_raise():
    """Within the block, SIGTERM and SIGINT raise :class:`Stop` (in the main thread; elsewhere a no-op),
    so that the caller can stop its children before exiting; SIGTERM's default would leave them running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_stop(signum, frame):
        raise Stop(signum)

    previous = {signum: signal.signal(signum, raise_stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_S) -> int:
    """SIGTERM ``process``, then SIGKILL it if it has not exited after ``grace`` seconds or on a second stop
    signal; returns its exit code."""
    try:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        return process.wait(grace)
    except (subprocess.TimeoutExpired, Stop):
        process.kill()
        return process.wait()


def die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, even by SIGKILL (Linux; elsewhere a no-op)."""
    if sys.platform != "linux":
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
