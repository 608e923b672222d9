"""Start the dashboard's Solara server as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")
ROOT = APP.parent.parent


def command(host: str = "127.0.0.1", port: int = 8765) -> list[str]:
    """The ``solara run`` command line for the dashboard."""
    return [sys.executable, "-m", "solara", "run", str(APP), "--host", host, "--port", str(port), "--no-open",
            "--production"]


def serve(host: str = "127.0.0.1", port: int = 8765, wait: bool = True,
          **popen_kwargs) -> subprocess.Popen | int:
    """Run the dashboard server on ``host:port`` as a subprocess.

    With ``wait``, block until it exits and return its exit code; otherwise return the process.
    ``popen_kwargs`` go to :class:`subprocess.Popen` (``cwd`` defaults to the repository root, where
    relative paths such as the LLM response store ``results/llm-responses.sqlite`` resolve).
    """
    process = subprocess.Popen(command(host, port), **{"cwd": ROOT, **popen_kwargs})
    if not wait:
        return process
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
