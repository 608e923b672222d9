"""Results are never silently replaced: default names tell settings apart, and a finished folder needs --overwrite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import run
from experiments.config import resolve

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

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


def no_space(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "model.parquet")


def error_lines(stderr: str) -> list[str]:
    """What run.py says on stderr, without the progress bars."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("run.py")]


def test_a_full_disk_while_results_are_written_says_so_in_one_line_and_resume_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "full"
    with monkeypatch.context() as patch:
        patch.setattr(pd.DataFrame, "to_parquet", no_space)
        assert run.main(["run", *SMALL, "--out", str(out)]) == 1
    assert error_lines(capsys.readouterr().err) == [
        f"run.py: run: could not write the results in {out}.partial (model.parquet: No space left on device); "
        f"the stored LLM answers are kept there, and this continues the run: {run.resume_command(out)}"]
    assert (tmp_path / "full.partial" / "config.json").is_file() and not out.exists()
    assert run.main(["resume", "--run", str(out)]) == 0
    assert (out / "model.parquet").is_file() and (out / "summary.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_a_full_disk_at_the_last_rename_keeps_the_earlier_results(tmp_path, monkeypatch, capsys):
    from experiments import folders

    out = tmp_path / "kept"
    assert run.main(["run", *SMALL, "--out", str(out)]) == 0
    before = (out / "model.parquet").read_bytes()
    rename = Path.rename

    def failing(self, target):
        if self.name == "kept.partial":
            raise OSError(28, "No space left on device", str(self))
        return rename(self, target)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "rename", failing)
        capsys.readouterr()
        assert run.main(["run", *SMALL, "--steps", "4", "--overwrite", "--out", str(out)]) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith(f"run.py: run: could not write the results in {out}.partial (kept.partial: No space left")
    assert (out / "model.parquet").read_bytes() == before  # the earlier run's results are where they were
    assert not (out / folders.LOCK_NAME).exists()
    assert run.main(["resume", "--run", str(out)]) == 0
    assert len(pd.read_parquet(out / "model.parquet")) == 5  # steps 0-4: the resumed run replaced the earlier one


def test_a_full_disk_in_a_replay_or_a_comparison_leaves_nothing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "done"
    assert run.main(["run", *SMALL, "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    with monkeypatch.context() as patch:
        patch.setattr(pd.DataFrame, "to_parquet", no_space)
        capsys.readouterr()
        assert run.main(["replay", "--run", str(out)]) == 1
        assert error_lines(capsys.readouterr().err) == [
            f"run.py: replay: could not write the results in {out}/replay.partial (model.parquet: No space left on "
            "device); it wrote nothing: run it again once it can write there"]
        assert run.main(["compare", "--workers", "10", "--steps", "2", "--planners", "fixed",
                         "--out", str(tmp_path / "compared")]) == 1
        assert error_lines(capsys.readouterr().err) == [
            f"run.py: compare: could not write the results in {tmp_path}/compared.partial (model.parquet: No space "
            "left on device); it wrote nothing: run it again once it can write there"]
    assert sorted(p.name for p in out.iterdir()) == files and sorted(p.name for p in tmp_path.iterdir()) == ["done"]
