"""The main job as a newcomer meets it: a fresh clone, ``bash install.sh``, then ``python run.py``, timed on the
machine as it is and with a CPU-heavy job beside it (one busy process per core).

    python bench/bench_main_job.py                 # clone HEAD, install, time the main job quiet and loaded
    python bench/bench_main_job.py --threads       # also: seconds per embedded-model answer, 1 thread vs every core

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


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, done


def main_job(clone: Path, loaded: bool) -> None:
    for old in (clone / "results").glob("*"):
        subprocess.run(["rm", "-rf", str(old)], check=True)
    with burner(loaded):
        seconds, done = timed([str(clone / ".venv/bin/python"), "run.py"], clone)
        load = os.getloadavg()[0]
    if done.returncode != 0:
        sys.exit(f"python run.py failed ({done.returncode}): {done.stderr[-2000:]}")
    accounting = json.loads(next((clone / "results").glob("*/llm_accounting.json")).read_text())
    print(f"python run.py ({'with a CPU burner' if loaded else 'as the machine is'}): {seconds:.0f} s, "
          f"{accounting['requests']} LLM requests, mean answer {accounting['latency_s']['mean']:.2f} s, "
          f"load average at the end {load:.1f} on {os.cpu_count()} cores", flush=True)


def answer_seconds(python: Path, threads: int, answers: int = 6) -> float:
    """Mean seconds per answer of the embedded model to a worker prompt of the main job's size."""
    code = f"""
import json, time, urllib.request
from llm_runtime.embedded import EmbeddedServer, find_model_file
server = EmbeddedServer(find_model_file(), threads={threads}).start()
prompt = "Tax brackets this year: 10%, 12%, 22%, 24%, 32%, 35%, 37%. " * 12
seconds = []
for i in range({answers} + 1):
    body = {{"model": "m", "max_tokens": 64, "temperature": 0, "messages": [
        {{"role": "system", "content": "Answer with one JSON object: keys hours (a number) and reason."}},
        {{"role": "user", "content": prompt + f"Worker {{i}}: how many hours do you work?"}}]}}
    request = urllib.request.Request(server.base_url + "/chat/completions", json.dumps(body).encode(),
                                     {{"Content-Type": "application/json"}})
    start = time.perf_counter()
    urllib.request.urlopen(request, timeout=600).read()
    seconds.append(time.perf_counter() - start)
server.stop()
print(sum(seconds[1:]) / {answers})
"""
    done = subprocess.run([str(python), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", action="store_true", help="also time answers with 1 thread and with every core")
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
    main_job(clone, loaded=False)
    main_job(clone, loaded=True)
    if ns.threads:
        for loaded in (False, True):
            with burner(loaded):
                for threads in sorted({1, os.cpu_count() or 1}):
                    print(f"embedded answer, {threads} thread(s), {'with a CPU burner' if loaded else 'as is'}: "
                          f"{answer_seconds(clone / '.venv/bin/python', threads):.2f} s", flush=True)


if __name__ == "__main__":
    main()
