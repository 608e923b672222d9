"""One writer per results folder: a second run, resume or replay of a running folder exits 2 at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.folders import LOCK_NAME, partial_dir

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

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


SMALL = ["--worker-mind", "rational", "--planner", "us_federal", "--baselines", "none", "--workers", "20",
         "--steps", "3", "--tax-year-length", "1"]

# a process that imports run.py once, then for each line {"out": DIR, "at": T} waits until time T and runs
# `run.py run SMALL --out DIR`, answering {"rc": ..., "stderr": ...}: two of them race for one folder per trial
# without paying the imports each time
RACER = r"""
import contextlib, io, json, sys, time, traceback
import run
sys.argv[0] = "run.py"
for line in sys.stdin:
    order = json.loads(line)
    while time.time() < order["at"]:
        time.sleep(0.0005)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            rc = run.main(["run", *order["args"], "--out", order["out"]])
        except BaseException:
            rc = -1
            err.write(traceback.format_exc())
    sys.__stdout__.write(json.dumps({"rc": rc, "stderr": err.getvalue()}) + "\n")
    sys.__stdout__.flush()
"""


def test_two_runs_started_at_once_on_one_folder_one_runs_and_one_exits_2(tmp_path):
    racers = [subprocess.Popen([sys.executable, "-c", RACER], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    try:
        for trial in range(20):
            out = tmp_path / f"race{trial}"
            at = time.time() + 0.05
            for index, racer in enumerate(racers):  # the second starts 0-20 ms after the first, varying by trial
                delay = index * (0, 0.002, 0.005, 0.01, 0.02)[trial % 5]
                racer.stdin.write(json.dumps({"out": str(out), "at": at + delay, "args": SMALL}) + "\n")
                racer.stdin.flush()
            answers = [json.loads(racer.stdout.readline()) for racer in racers]
            assert sorted(a["rc"] for a in answers) == [0, 2], (trial, answers)
            assert not any("Traceback" in a["stderr"] for a in answers), (trial, answers)
            lines = next(a for a in answers if a["rc"] == 2)["stderr"].strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("run.py: error: --out: "), (trial, lines)
            assert ("is already running (pid " in lines[0]  # the winner holds the folder
                    or f"{out} holds the results of an earlier run" in lines[0]), (trial, lines)  # it has finished
            assert (out / "model.parquet").is_file() and not (out / LOCK_NAME).exists()
            assert not partial_dir(out).exists()
    finally:
        for racer in racers:
            racer.stdin.close()
            racer.wait(timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"race{trial}" for trial in range(20))  # no leftovers


def hold(folder: Path, doing: str) -> subprocess.Popen:
    """A process that holds ``folder``'s lock, as a run (``running``) or a replay (``replayed``) does."""
    process = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                                "from experiments.folders import exclusive\n"
                                "with exclusive(Path(sys.argv[1]), '--run', doing=sys.argv[2]):\n"
                                "    print('held', flush=True)\n    time.sleep(600)\n", str(folder), doing],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout.readline().strip() == "held"
    return process


def test_taking_a_folder_that_another_holds_or_an_interrupted_one_leaves_nothing(tmp_path):
    import pytest

    from experiments import results
    from validation import ParameterError

    out = tmp_path / "x"
    partial_dir(out).mkdir()
    (partial_dir(out) / "config.json").write_text("{}")
    with pytest.raises(ParameterError, match=r"an interrupted run is in .*x\.partial; allowed: `.venv/bin/python run.py resume"):
        with results.start(out, {"command": "run"}):
            pass
    other = hold(partial_dir(out), "running")
    try:
        with pytest.raises(ParameterError, match=rf"x\.partial is already running \(pid {other.pid}\)"):
            with results.start(out, {"command": "run"}):
                pass
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.partial"]  # its staging folder went with the refusal
    assert (partial_dir(out) / "config.json").read_text() == "{}"


def test_run_overwrite_exits_2_while_the_folder_is_replayed(tmp_path, monkeypatch, capsys):
    import os

    import run
    from experiments import experiment
    from experiments.folders import holder

    out = tmp_path / "done"
    assert run.main(["run", *SMALL, "--out", str(out)]) == 0
    before = (out / "model.parquet").read_bytes()
    seen = {}
    execute = experiment._execute

    def replaying(config, target, mode, progress, original=None, **more):  # a second command while it replays
        seen["holder"] = holder(out)
        capsys.readouterr()
        seen["rc"] = run.main(["run", *SMALL, "--overwrite", "--out", str(out)])
        seen["stderr"] = capsys.readouterr().err
        return execute(config, target, mode, progress, original, **more)

    monkeypatch.setattr(experiment, "_execute", replaying)
    assert run.main(["replay", "--run", str(out)]) == 0
    assert seen["holder"] == os.getpid()  # the replay held the run's own folder
    assert seen["rc"] == 2, seen["stderr"]
    lines = seen["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0] == (f"run.py: error: --out: {out} is being replayed (pid {os.getpid()}); "
                                            "allowed: one run, resume or replay of a results folder at a time")
    assert (out / "model.parquet").read_bytes() == before and (out / "replay" / "model.parquet").is_file()
    assert holder(out) is None and not (out / LOCK_NAME).exists() and not partial_dir(out).exists()


def test_a_run_that_would_replace_a_folder_being_replayed_leaves_it(tmp_path):
    import pytest

    from experiments import results
    from validation import ParameterError

    out = tmp_path / "done"
    out.mkdir()
    (out / "config.json").write_text("{}")
    replay = hold(out, "replayed")
    try:  # it passed the checks before the replay began: taking the folder refuses it
        with pytest.raises(ParameterError, match=rf"done is being replayed \(pid {replay.pid}\)"):
            with results.start(out, {"command": "run"}, overwrite=True):
                pass
        second = cli("run", *SMALL, "--overwrite", "--out", out)
        assert second.returncode == 2 and second.stderr.strip().splitlines() == [
            f"run.py: error: --out: {out} is being replayed (pid {replay.pid}); allowed: one run, resume or replay "
            "of a results folder at a time"], second.stderr
        again = cli("replay", "--run", out)
        assert again.returncode == 2 and f"{out} is being replayed (pid {replay.pid})" in again.stderr
    finally:
        replay.kill()
        replay.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "config.json"]  # the lock of the replay killed
