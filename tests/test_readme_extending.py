"""The README's Extending examples, run from the README's own code blocks as a user would run them."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

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


def run_py(command: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """A README's `python run.py ...` line, run with this interpreter from ``cwd`` (with ``env`` added)."""
    words = shlex.split(command)
    assert words[:2] == ["python", "run.py"]
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *words[2:]], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, **(env or {})))


def test_the_section_has_its_examples_in_order():
    assert [language for language, _ in blocks()] == ["python", "python", "bash", "python", "python", "python",
                                                      "bash", "python", "python", "bash", "python", "python",
                                                      "python"]


def test_a_per_agent_worker_rule(tmp_path):
    done = run_python(blocks()[0][1], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cashiers, hours: [40.0]" in done.stdout


def test_a_planner_rule_from_the_users_file_via_run_py_and_batch_run(tmp_path):
    (_, plugin), (_, command), (_, sweep) = blocks()[1:4]
    (tmp_path / "my_planners.py").write_text(plugin, encoding="utf-8")
    done = run_py(command, tmp_path)
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
    (_, model_class), (_, use) = blocks()[4:6]
    (tmp_path / "my_model.py").write_text(model_class, encoding="utf-8")
    done = run_python(use, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "share_over_45h" in done.stdout


def test_a_model_subclass_through_run_py_and_its_resume_and_replay(tmp_path):
    (_, model_class), (_, command), (_, read) = blocks()[4], *blocks()[6:8]
    (tmp_path / "my_model.py").write_text(model_class, encoding="utf-8")
    assert "--model-class my_model.py:LongHoursEconomy" in command
    done = run_py(command, tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "results" / "long-hours"
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["model_class"] == f"{tmp_path / 'my_model.py'}:LongHoursEconomy"
    done = run_python(read, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "share_over_45h" in done.stdout
    import pandas as pd

    replay = subprocess.run([sys.executable, str(ROOT / "run.py"), "replay", "--run", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)  # from elsewhere: the class is found
    assert replay.returncode == 0, replay.stderr
    assert "share_over_45h" in pd.read_parquet(out / "replay" / "model.parquet").columns


def test_a_model_class_that_is_not_an_economy_model_exits_2_naming_the_flag(tmp_path, monkeypatch, capsys):
    import run

    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_a_model.py").write_text("class NotAModel:\n    pass\n", encoding="utf-8")
    for spec in ("not_a_model.py:NotAModel", "not_a_model.py:Missing", "missing.py:X", "no_such_module:X",
                 "not_a_model.py", "model.params:EconomyParams"):
        code = run.main(["run", "--model-class", spec, "--worker-mind", "rational", "--planner", "us_federal",
                         "--baselines", "none", "--out", "results/x"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (spec, lines)
        assert lines[0].startswith("run.py: error: --model-class: ") and "EconomyModel" in lines[0], lines[0]
        assert not (tmp_path / "results").exists()


def test_a_prompt_style_from_the_users_file_via_run_py(tmp_path):
    from tests.llm_server import FaultServer

    (_, plugin), (_, command), (_, read) = blocks()[8:11]
    (tmp_path / "my_styles.py").write_text(plugin, encoding="utf-8")
    systems = []

    def script(messages):
        systems.append(messages[0]["content"])
        return {"hours": 40, "reason": "scripted"}

    with FaultServer(script=script) as server:
        env = {"LLM_BASE_URL": server.base_url, "LLM_MODEL": "fault-model", "LLM_BACKEND": "openai"}
        done = run_py(command, tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "results" / "plain-words" / "config.json").read_text())
    assert config["settings"]["prompt_mode"] == "plain_words"
    assert len(systems) == 10 and all(s.startswith("Pick how many hours a week you work") for s in systems)
    done = run_python(read, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == systems[0]


def test_a_population_source(tmp_path):
    done = run_python(blocks()[11][1], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['north', 'south']"


def test_a_bracket_set(tmp_path):
    done = run_python(blocks()[12][1], tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\[0, 50,000\): [\d.]+%; \[50,000, inf\): [\d.]+%", done.stdout.strip()), done.stdout
