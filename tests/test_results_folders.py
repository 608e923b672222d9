"""Results are never silently replaced: default names tell settings apart, and a finished folder needs --overwrite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import run
from experiments.config import resolve

ROOT = Path(__file__).parent.parent
SMALL = ["--worker-mind", "rational", "--planner", "blackbox", "--workers", "5", "--steps", "2",
         "--tax-year-length", "1", "--baselines", "none"]


def cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "run", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_default_names_differ_when_settings_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = {resolve(["run", *SMALL[:-2], *extra], run.DEFAULTS)[1]["out"]
             for extra in ([], ["--workers", "6"], ["--seed", "7"], ["--steps", "3"])}
    assert len(names) == 4 and all(name.startswith("results/calibrated-blackbox-seed") for name in names)
    assert resolve(["run", *SMALL[:-2]], run.DEFAULTS)[1]["out"] in names  # the same settings, the same name


def test_a_second_run_never_replaces_the_first(tmp_path):
    first = cli(*SMALL, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = first.stdout.strip().splitlines()[-1]
    assert written.startswith("results: ")  # run says where it wrote
    out = tmp_path / written.removeprefix("results: ")
    before = (out / "model.parquet").read_bytes()
    second = cli(*SMALL, cwd=tmp_path)
    assert second.returncode == 2 and "--overwrite" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert (out / "model.parquet").read_bytes() == before
    third = cli(*SMALL, "--overwrite", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
