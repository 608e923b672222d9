"""One writer per results folder: a second run, resume or replay of a running folder exits 2 at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent


def cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_a_second_command_on_a_running_folder_says_already_running(tmp_path):
    out = tmp_path / "long"
    first = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "run", "--worker-mind", "rational", "--planner",
                              "blackbox", "--workers", "100000", "--steps", "1000", "--tax-year-length", "5",
                              "--agent-interval", "0", "--baselines", "none", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "long.partial" / ".running"
        deadline = time.monotonic() + 120
        while not (lock.is_file() and lock.read_text().strip()) and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        for args in (("resume", "--run", out), ("run", "--worker-mind", "rational", "--out", out),
                     ("replay", "--run", out)):
            second = cli(*args)
            assert second.returncode == 2, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and f"already running (pid {first.pid})" in lines[0], second.stderr
    finally:
        first.kill()
        first.communicate(timeout=60)
    from experiments.folders import holder

    assert holder(tmp_path / "long.partial") is None  # the kernel dropped the lock with the process
    assert not out.exists()  # nothing was written over, or beside, the running folder


def test_a_held_lock_names_its_process(tmp_path):
    partial = tmp_path / "gone.partial"
    partial.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from experiments.folders import exclusive\n"
                               "with exclusive(Path(sys.argv[1]), '--run'):\n    print('held', flush=True)\n"
                               "    time.sleep(600)\n", str(partial)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    from experiments.folders import holder as running_pid

    try:
        assert running_pid(partial) == holder.pid
    finally:
        holder.kill()
        holder.wait()
    assert running_pid(partial) is None
