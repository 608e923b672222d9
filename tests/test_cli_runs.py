"""run.py end to end in subprocesses: run, compare, sweep (local and Dask), replay, resume after kill -9 and
Ctrl-C, dashboard; LLM minds against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image

import run
from tests.llm_server import FaultServer

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

ROOT = Path(__file__).parent.parent
MARKER = "sk-test-marker-7f3a9c"


def scripted(messages):
    """Hours fall with the marginal rate at 40 h; the planner raises every rate by 5 points each tax year."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if "tax planner" in system:
        rates = [int(x) for x in re.findall(r"rates % ([\d ]+) \|", user)[-1].split()]
        return {"rates": [min(100, r + 5) for r in rates], "reason": "scripted"}
    rate = int(re.search(r"40 h: marginal rate (\d+)%", user).group(1))
    return {"hours": 60 - rate / 2, "reason": "scripted"}


def cli(*args, timeout=180, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def start(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "run.py", *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def llm_args(url: str, out: Path, workers: int = 20, steps: int = 6) -> list[str]:
    return ["run", "--workers", workers, "--steps", steps, "--tax-year-length", 3, "--base-url", url, "--model",
            "fault-model", "--baselines", "none", "--out", out]


def assert_png_not_blank(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05 and len(np.unique(rgb, axis=0)) > 10


def stored(store: Path) -> dict[str, int]:
    """Request id (as the client sends it) -> stored rows, read from a store file."""
    if not store.exists():
        return {}
    with sqlite3.connect(store, timeout=10) as conn:
        rows = conn.execute("SELECT identity FROM responses").fetchall()
    return Counter(hashlib.sha256(r[0].encode()).hexdigest()[:24] for r in rows)


def rows_in(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.fixture()
def server():
    with FaultServer(script=scripted) as running:
        yield running


# --- rational runs ----------------------------------------------------------------------------------------------
def test_run_rational_writes_a_complete_results_folder(tmp_path):
    out = tmp_path / "rational"
    done = cli("run", "--worker-mind", "rational", "--planner", "blackbox", "--workers", 12, "--steps", 6,
               "--tax-year-length", 2, "--out", out)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "rational.partial").exists()
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.parquet", "model.csv", "agents.parquet", "baselines.parquet", "summary.md",
            "summary.csv", "rates.png", "objective.png", "hours.png", "income.png"} <= names
    frame = pd.read_parquet(out / "model.parquet")
    assert len(frame) == 7 and {"objective", "rate_1", "rate_7", "mean_hours"} <= set(frame.columns)
    assert np.allclose(pd.read_csv(out / "model.csv", index_col="step")[frame.columns].to_numpy(dtype=float),
                       frame.to_numpy(dtype=float), equal_nan=True)
    assert len(pd.read_parquet(out / "agents.parquet")) == 12 * 7
    summary = (out / "summary.md").read_text()
    for baseline in ("us_federal", "saez", "oracle", "blackbox", "this run: blackbox, rational workers"):
        assert baseline in summary
    table = pd.read_csv(out / "summary.csv", index_col="run")
    assert table.loc["blackbox", "objective"] == pytest.approx(frame["objective"].iloc[-1])  # same population
    assert table.loc["oracle", "objective"] >= table.loc["us_federal", "objective"]
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["workers"] == 12 and config["settings"]["seed"] == 42
    for plot in ("rates.png", "objective.png", "hours.png", "income.png"):
        assert_png_not_blank(out / plot)


def test_democratic_run_plots_the_elections(tmp_path, capsys):
    out = tmp_path / "vote"
    assert run.main(["run", "--worker-mind", "rational", "--scenario", "democratic", "--workers", "15", "--steps",
                     "6", "--tax-year-length", "2", "--baselines", "none", "--agent-interval", "0", "--out",
                     str(out)]) == 0
    assert len(json.loads((out / "elections.json").read_text())) == 3
    assert_png_not_blank(out / "elections.png")
    assert not (out / "agents.parquet").exists()


def test_compare_end_to_end(tmp_path):
    done = cli("compare", "--workers", 10, "--steps", 4, "--tax-year-length", 2, "--planners", "fixed,saez,blackbox",
               "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr
    assert all(p in done.stdout for p in ("fixed", "saez", "blackbox"))
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv", index_col="planner")
    assert set(table.index) == {"fixed", "saez", "blackbox"}
    assert set(pd.read_parquet(tmp_path / "cmp" / "compare.parquet")["planner"]) == set(table.index)
    assert_png_not_blank(tmp_path / "cmp" / "objective.png")


SWEEP = ["sweep", "--grid", "planner=fixed,saez", "--grid", "workers=10,20", "--seeds", "1,2", "--steps", 4,
         "--tax-year-length", 2, "--jobs", 2]


def test_sweep_on_dask_local_cluster_equals_local_processes(tmp_path):
    local = cli(*SWEEP, "--out", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    assert run.main([*map(str, SWEEP), "--executor", "dask", "--out", str(tmp_path / "dask")]) == 0
    table = pd.read_parquet(tmp_path / "local" / "runs.parquet")
    assert table["run"].nunique() == 8 and len(table) == 8 * 5
    assert list(table.columns[:5]) == ["run", "seed", "planner", "workers", "step"]
    assert set(zip(table["planner"], table["workers"], table["seed"])) == \
        {(p, w, s) for p in ("fixed", "saez") for w in (10, 20) for s in (1, 2)}
    pd.testing.assert_frame_equal(table, pd.read_parquet(tmp_path / "dask" / "runs.parquet"))
    assert table.groupby("seed")["objective"].nunique().min() > 1  # runs differ: not one result copied


def test_sweep_on_a_running_dask_scheduler(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert run.main(["sweep", "--grid", "planner=fixed,saez", "--seeds", "3", "--steps", "2",
                         "--tax-year-length", "1", "--workers", "8", "--executor", "dask", "--scheduler",
                         cluster.scheduler_address, "--out", str(tmp_path / "s")]) == 0
    table = pd.read_parquet(tmp_path / "s" / "runs.parquet")
    assert list(table["planner"].unique()) == ["fixed", "saez"] and set(table["seed"]) == {3}


# --- LLM runs against the scripted server ------------------------------------------------------------------------
def test_llm_run_and_replay_end_to_end_without_leaking_the_key(server, tmp_path):
    env = dict(os.environ, OPENAI_API_KEY=MARKER)
    out = tmp_path / "llm"
    done = cli(*llm_args(server.base_url, out, workers=12), "--baselines", "saez", env=env)
    assert done.returncode == 0, done.stderr
    sent = server.stats()["requests"]
    assert sent == 6 * 12 + 1  # one request per worker and step, one planner decision at step 3
    bar = done.stderr.replace("\r", "\n").splitlines()
    assert any(re.search(r"6/6 \[[\d:]+<[\d:]+, .*req/s=[\d.]+ tokens=[\d,]+ failures=0", line) for line in bar)
    accounting = json.loads((out / "llm_accounting.json").read_text())
    assert accounting["requests"] == sent and accounting["store_hits"] == 0
    lines = (out / "transcripts.jsonl").read_text().splitlines()
    assert len(lines) == sent and "messages" in json.loads(lines[0])
    frame = pd.read_parquet(out / "model.parquet")
    assert frame["rate_1"].iloc[-1] == pytest.approx(frame["rate_1"].iloc[0] + 0.05)  # the scripted planner
    for plot in ("rates.png", "objective.png", "hours.png", "income.png"):
        assert_png_not_blank(out / plot)

    originals = {name: (out / name).read_bytes() for name in ("llm_accounting.json", "config.json", "summary.md")}
    again = cli("replay", "--run", out, env=env)
    assert again.returncode == 0, again.stderr
    assert server.stats()["requests"] == sent  # no request sent
    assert {name: (out / name).read_bytes() for name in originals} == originals  # the run's own files stay
    pd.testing.assert_frame_equal(pd.read_parquet(out / "replay" / "model.parquet"), frame)
    assert json.loads((out / "replay" / "llm_accounting.json").read_text())["store_hits"] == sent
    assert json.loads((out / "replay" / "config.json").read_text())["command"] == "replay"
    assert "the model data are identical to the run's" in (out / "replay" / "summary.md").read_text()
    assert "saez" not in again.stderr  # the baselines are the run's own, not run again
    for text in (done.stdout, done.stderr, again.stdout, again.stderr):
        assert MARKER not in text
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert MARKER.encode() not in file.read_bytes(), file


def test_llm_sweep_runs_share_one_store(server, tmp_path):
    done = cli("sweep", "--worker-mind", "llm", "--grid", "planner=llm,fixed", "--seeds", "1,2", "--workers", 6,
               "--steps", 4, "--tax-year-length", 2, "--base-url", server.base_url, "--model", "fault-model",
               "--jobs", 2, "--out", tmp_path / "sweep")
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(tmp_path / "sweep" / "runs.parquet")
    assert table["run"].nunique() == 4
    store = stored(tmp_path / "sweep" / "responses.sqlite")
    sent = server.stats()["by_request_id"]
    assert sum(sent.values()) == sum(store.values()) == 4 * 4 * 6 + 2 * 1  # workers x steps, 2 LLM planner years
    assert sent == store  # every request once, every answer stored
    with sqlite3.connect(tmp_path / "sweep" / "responses.sqlite") as conn:
        runs = {json.loads(r[0])[0] for r in conn.execute("SELECT identity FROM responses")}
    assert runs == {"run-0000", "run-0001", "run-0002", "run-0003"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """An LLM run from start to end: its model data and the requests the server saw, by request id."""
    folder = tmp_path_factory.mktemp("full")
    with FaultServer(script=scripted, latency=0.01, slots=4) as srv:
        done = cli(*llm_args(srv.base_url, folder / "run"))
        assert done.returncode == 0, done.stderr
        return pd.read_parquet(folder / "run" / "model.parquet"), Counter(srv.stats()["by_request_id"])


def test_kill_9_at_5_random_points_then_resume(uninterrupted, tmp_path):
    expected, requests = uninterrupted
    total = sum(requests.values())
    targets = sorted(random.Random(6).sample(range(1, total - 1), 5))

    def scenario(target: int) -> tuple[int, dict, Counter, dict, pd.DataFrame]:
        folder = tmp_path / f"kill-{target}"
        out = folder / "run"  # the same run id as the uninterrupted run, so the same request ids
        with FaultServer(script=scripted, latency=0.01, slots=4) as srv:
            process = start(*llm_args(srv.base_url, out))
            store = folder / "run.partial" / "responses.sqlite"
            while process.poll() is None and rows_in(store) < target:
                time.sleep(0.005)
            process.kill()
            process.wait()
            at_kill = stored(store)
            done = cli("resume", "--run", out)
            assert done.returncode == 0, done.stderr
            seen = Counter(srv.stats()["by_request_id"])
        accounting = json.loads((out / "llm_accounting.json").read_text())
        return target, at_kill, seen, accounting, pd.read_parquet(out / "model.parquet")

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(scenario, targets))
    for target, at_kill, seen, accounting, frame in outcomes:
        pd.testing.assert_frame_equal(frame, expected)
        assert 0 < sum(at_kill.values()) < total, target  # killed half-way
        extra = seen - requests  # requests sent twice: only those in flight at the kill, never stored
        assert all(n == 1 for n in extra.values()) and not set(extra) & set(at_kill)
        assert len(extra) <= 20  # at most one batch (one step of the 20 workers) was in flight
        assert all(seen[rid] == requests[rid] for rid in at_kill)  # no stored response asked again
        assert set(seen) == set(requests)
        assert accounting["store_hits"] == sum(at_kill.values())  # the resumed run replayed all that was stored
        assert stored(tmp_path / f"kill-{target}" / "run" / "responses.sqlite") == requests  # nothing lost


def test_ctrl_c_prints_the_resume_command_and_resume_finishes(uninterrupted, tmp_path):
    expected, requests = uninterrupted
    out = tmp_path / "run"
    with FaultServer(script=scripted, latency=0.01, slots=4) as srv:
        process = start(*llm_args(srv.base_url, out))
        while process.poll() is None and rows_in(tmp_path / "run.partial" / "responses.sqlite") < 40:
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "Traceback" not in err
        command = err.strip().splitlines()[-1].strip()
        assert command == f".venv/bin/python run.py resume --run {shlex.quote(str(out))}"  # runs in a new shell
        assert not out.exists() and (tmp_path / "run.partial" / "config.json").is_file()
        done = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert set(srv.stats()["by_request_id"]) == set(requests)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "model.parquet"), expected)
    assert not (tmp_path / "run.partial").exists()


def test_dashboard_command_serves_the_app():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = start("dashboard", "--port", port, start_new_session=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def spawned_children(pid: int) -> list[int]:
    """Processes that ``pid`` started with multiprocessing's spawn (not its resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        children = [int(child) for child in fh.read().split()]
    return [c for c in children if alive(c) and b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sweep_killed_then_resumed_runs_only_the_rest(tmp_path):
    from experiments import sweep
    from experiments.config import resolve

    args = ["sweep", "--grid", "planner=fixed,saez", "--seeds", "1,2", "--workers", "300", "--steps", "40",
            "--tax-year-length", "4", "--jobs", "1", "--out", str(tmp_path / "s")]
    process = start(*args)
    runs = tmp_path / "s.partial" / "runs"
    while process.poll() is None and len(list(runs.glob("*.parquet"))) < 1:
        time.sleep(0.01)
    workers = spawned_children(process.pid)
    assert workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):  # the pool's workers end with the killed sweep
        assert time.monotonic() < deadline, "a sweep worker outlived the killed sweep"
        time.sleep(0.05)
    finished = len(list(runs.glob("*.parquet")))
    assert 1 <= finished < 4
    done = cli("resume", "--run", tmp_path / "s")
    assert done.returncode == 0, done.stderr
    assert re.search(r"(\d+)/4", done.stderr).group(1) == str(finished)  # the bar starts at the finished runs
    table = pd.read_parquet(tmp_path / "s" / "runs.parquet")
    _, settings = resolve(args[:-2] + ["--out", str(tmp_path / "other")], run.DEFAULTS)
    expected = pd.concat([sweep.run_task(t) for t in sweep.tasks(settings, tmp_path / "unused.sqlite")],
                         ignore_index=True)
    pd.testing.assert_frame_equal(table, expected)


def test_a_crashed_run_keeps_its_folder_and_resumes(tmp_path, capsys, monkeypatch):
    from model.model import EconomyModel

    args = ["run", "--worker-mind", "rational", "--planner", "saez", "--workers", "10", "--steps", "6",
            "--tax-year-length", "2", "--baselines", "none"]
    assert run.main([*args, "--out", str(tmp_path / "whole" / "run")]) == 0
    step = EconomyModel.step

    def crash_at_step_4(model):
        if model.time >= 4:
            raise RuntimeError("disk on fire")
        step(model)

    monkeypatch.setattr(EconomyModel, "step", crash_at_step_4)
    out = tmp_path / "crash" / "run"
    with pytest.raises(RuntimeError):
        run.main([*args, "--out", str(out)])
    assert f"resume with: .venv/bin/python run.py resume --run {out}" in capsys.readouterr().err
    assert (tmp_path / "crash" / "run.partial" / "config.json").is_file() and not out.exists()
    monkeypatch.setattr(EconomyModel, "step", step)
    assert run.main(["resume", "--run", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "model.parquet"),
                                  pd.read_parquet(tmp_path / "whole" / "run" / "model.parquet"))
