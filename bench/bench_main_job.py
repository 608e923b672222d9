"""The main job as a newcomer meets it: a fresh clone, ``bash install.sh``, then ``python run.py``, timed on the
machine as it is and with a CPU-heavy job beside it (one busy process per core).

    python bench/bench_main_job.py                 # clone HEAD, install, time the main job quiet and loaded
    python bench/bench_main_job.py --threads 1,2   # the same with each number of llama.cpp threads

Prints one line per figure, with the load average, so a table can say whether the machine was quiet or loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def burner(on: bool):
    """One busy Python process per core while the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)] \
        if on else []
    try:
        if procs:
            time.sleep(5)  # let the load be real before timing starts
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, done


def main_job(clone: Path, loaded: bool, threads: int | None = None) -> None:
    for old in (clone / "results").glob("*"):
        subprocess.run(["rm", "-rf", str(old)], check=True)
    with burner(loaded):
        env = dict(os.environ, LLM_EMBEDDED_THREADS=str(threads)) if threads else None
        seconds, done = timed([str(clone / ".venv/bin/python"), "run.py"], clone, env)
        load = os.getloadavg()[0]
    if done.returncode != 0:
        sys.exit(f"python run.py failed ({done.returncode}): {done.stderr[-2000:]}")
    accounting = json.loads(next((clone / "results").glob("*/llm_accounting.json")).read_text())
    print(f"python run.py ({'with a CPU burner' if loaded else 'as the machine is'}"
          f"{f', {threads} llama.cpp threads' if threads else ''}): {seconds:.0f} s, "
          f"{accounting['requests']} LLM requests, mean answer {accounting['latency_s']['mean']:.2f} s, "
          f"load average at the end {load:.1f} on {os.cpu_count()} cores", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", help="comma-separated llama.cpp thread counts to time (default: the default)")
    ap.add_argument("--clone", type=Path, help="an installed clone to reuse (default: clone and install anew)")
    ns = ap.parse_args()
    if ns.clone is None:
        clone = Path(tempfile.mkdtemp(prefix="main-job-")) / "repo"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        seconds, done = timed(["bash", "install.sh"], clone)
        if done.returncode != 0:
            sys.exit(f"install.sh failed: {done.stderr[-2000:]}")
        print(f"bash install.sh: {seconds:.0f} s", flush=True)
    else:
        clone = ns.clone
    for threads in [int(t) for t in ns.threads.split(",")] if ns.threads else [None]:
        main_job(clone, loaded=False, threads=threads)
        main_job(clone, loaded=True, threads=threads)

if __name__ == "__main__":
    main()
