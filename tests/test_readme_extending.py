"""The README's Extending examples, run from the README's own code blocks as a user would run them."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README's Extending section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Extending\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = cwd / "example.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_section_has_the_three_examples():
    assert [language for language, _ in blocks()] == ["python", "python", "bash", "python", "python"]


def test_a_per_agent_worker_rule(tmp_path):
    done = run_python(blocks()[0][1], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cashiers, hours: [40.0]" in done.stdout


def test_a_planner_rule_from_the_users_file_via_run_py_and_batch_run(tmp_path):
    (_, plugin), (_, command), (_, sweep) = blocks()[1:4]
    (tmp_path / "my_planners.py").write_text(plugin, encoding="utf-8")
    words = shlex.split(command)
    assert words[:2] == ["python", "run.py"]
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *words[2:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "results" / "flat-tax"
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["planner"] == "flat_tax"
    import pandas as pd

    rates = pd.read_parquet(out / "model.parquet")[["rate_1", "rate_7"]]
    assert (rates["rate_1"] == rates["rate_7"]).all() and rates["rate_1"].nunique() > 1  # flat, and it moved
    assert rates["rate_1"].iloc[0] == 0.2
    done = run_python(sweep, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "flat_tax" in done.stdout and "saez" in done.stdout


def test_a_model_reporter(tmp_path):
    done = run_python(blocks()[4][1], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "share_over_45h" in done.stdout
