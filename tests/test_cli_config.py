"""run.py settings: flags, TOML files, precedence, and bad input (exit 2, one line, nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import run
from experiments.config import COMMANDS, ConfigError, resolve

ROOT = Path(__file__).parent.parent

# (arguments with {tmp} for the test's folder, TOML text or None (written to {tmp}/c.toml), field named)
BAD = [
    ("run --workers abc", None, "--workers"),
    ("run --workers -3", None, "--workers"),
    ("run --workers 0", None, "--workers"),
    ("run --workers 2.5", None, "--workers"),
    ("run --workers 99999999999", None, "--workers"),
    ("run --steps x", None, "--max-steps"),
    ("run --steps 0", None, "--max-steps"),
    ("run --tax-year-length 0", None, "--tax-year-length"),
    ("run --tax-year-length=-10 --steps 10", None, "--tax-year-length"),
    ("run --preset weird", None, "--preset"),
    ("run --brackets nope", None, "--brackets"),
    ("run --planner magic", None, "--planner"),
    ("run --worker-mind psychic", None, "--worker-mind"),
    ("run --scenario anarchy", None, "--scenario-name"),
    ("run --objective happiness", None, "--objective"),
    ("run --backend cloud", None, "--backend"),
    ("run --base-url notaurl", None, "--base-url"),
    ("run --base-url http://host:port/v1", None, "--base-url"),
    ("run --model=", None, "--llm-model"),
    ("run --seed -1", None, "--seed"),
    ("run --seed 1.5", None, "--seed"),
    ("run --prompt-mode verbose", None, "--prompt-mode"),
    ("run --archetypes -1", None, "--archetypes"),
    ("run --archetypes 50 --workers 10", None, "--archetypes"),
    ("run --agent-interval -2", None, "--agent-interval"),
    ("run --baselines foo", None, "--baselines"),
    ("run --baselines saez,saez", None, "--baselines"),
    ("run --scenario bounded --worker-mind rational", None, "--scenario-name"),
    ("run --planner us_federal --brackets three --worker-mind rational", None, "--planner"),
    ("run --wrokers 3", None, "arguments"),
    ("run --workers", None, "--workers"),
    ("run extra", None, "arguments"),
    ("frobnicate", None, "command"),
    ("--workers 3 --steps", None, "--max-steps"),
    ("compare --planners=", None, "--planners"),
    ("compare --planners saez,llm", None, "--planners"),
    ("compare --planners a,b", None, "--planners"),
    ("compare --steps -5", None, "--max-steps"),
    ("compare --workers 1e3", None, "--workers"),
    ("sweep --executor spark", None, "--executor"),
    ("sweep --scheduler tcp://127.0.0.1:8786", None, "--scheduler"),
    ("sweep --executor dask --scheduler http://x", None, "--scheduler"),
    ("sweep --grid planner", None, "--grid"),
    ("sweep --grid colour=red,blue", None, "--grid"),
    ("sweep --grid workers=10,abc", None, "--grid workers"),
    ("sweep --grid planner=saez,saez", None, "--grid"),
    ("sweep --grid planner=saez --grid planner=fixed", None, "--grid"),
    ("sweep --seeds a,b", None, "--seeds"),
    ("sweep --seeds 1,1", None, "--seeds"),
    ("sweep --jobs 0", None, "--jobs"),
    ("sweep --grid scenario=rational,bounded", None, "--scenario-name (grid point scenario_name=bounded)"),
    ("sweep --grid planner=fixed,us_federal --brackets three", None, "--planner (grid point planner=us_federal)"),
    ("sweep --grid seed=1,2", None, "--grid"),
    ("run --base-url http://a/v1,ftp://b", None, "--base-url"),
    ("run --base-url http://user:secret@127.0.0.1:8000/v1", None, "--base-url"),
    ("replay --run {tmp}/missing", None, "--run"),
    ("resume --run {tmp}/missing", None, "--run"),
    ("replay", None, "--run"),
    ("dashboard --port 70000", None, "--port"),
    ("dashboard --port http", None, "--port"),
    ("run --out {tmp}/afile", None, "--out"),
    ("run --out {tmp}/afile/sub", None, "--out"),
    ("run --out /proc/run-py-results", None, "--out"),
    ("run --out {tmp}/notrun", None, "--out"),
    ("run --out {tmp}/stopped", None, "--out"),
    ("run --out {tmp}/x.partial", None, "--out"),
    ("run --config {tmp}/missing.toml", None, "--config"),
    ("run --config {tmp}", None, "--config"),
    ("run --config {tmp}/c.toml", "workers = = 3", "--config"),
    ("run --config {tmp}/c.toml", "\udcff", "--config"),
    ("run --config {tmp}/c.toml", 'workers = "ten"', "workers ("),
    ("run --config {tmp}/c.toml", "workers = 10.5", "workers ("),
    ("run --config {tmp}/c.toml", "workers = true", "workers ("),
    ("run --config {tmp}/c.toml", "wrokers = 10", "wrokers: unknown key"),
    ("run --config {tmp}/c.toml", 'planners = ["saez"]', "planners: not a setting of `run`"),
    ("run --config {tmp}/c.toml", "preset = 3", "preset ("),
    ("run --config {tmp}/c.toml", "seed = -4", "seed ("),
    ("run --config {tmp}/c.toml", "base_url = 5", "base_url ("),
    ("run --config {tmp}/c.toml", "steps = 0", "max_steps ("),
    ("run --config {tmp}/c.toml", "planner_options = 3", "planner_options ("),
    ("run --config {tmp}/c.toml", "[workers]\nn = 3", "workers ("),
    ("compare --config {tmp}/c.toml", 'planners = "saez,llm"', "planners ("),
    ("sweep --config {tmp}/c.toml", 'grid = {colour = ["red"]}', "grid ("),
    ("sweep --config {tmp}/c.toml", 'grid = {planner = "saez"}', "grid ("),
    ("sweep --config {tmp}/c.toml", "seeds = []", "seeds ("),
    ("sweep --config {tmp}/c.toml", 'executor = "threads"', "executor ("),
    ("sweep --config {tmp}/c.toml", "jobs = -1", "jobs ("),
    ("resume --run /", None, "--run"),
    ("resume --run {tmp}/garbled", None, "--run"),
    ("run --out {tmp}/loop1/x", None, "--out"),
    ("run --out {tmp}/" + "a" * 5000, None, "--out"),
    ("run --config {tmp}/c.toml", "a = " + "[" * 5000 + "]" * 5000, "--config"),
    ("sweep --executor dask --scheduler tcp://999.999.999.999:99999", None, "--scheduler"),
    ("run --base-url http://[::1/v1", None, "--base-url"),
    ("run --config {tmp}/c.toml", "planner = \"oracle\"\n[planner_options]\nbogus = 1", "planner_options.bogus"),
    ("run --config {tmp}/c.toml", "planner = \"blackbox\"\n[planner_options]\nsigma = -1", "planner_options.sigma"),
    ("run --plugin {tmp}/missing.py", None, "--plugin"),
    ("dashboard --plugin {tmp}/missing.py", None, "--plugin"),
]


def prepare(tmp: Path, toml: str | None) -> None:
    (tmp / "afile").write_text("not a folder")
    (tmp / "notrun").mkdir()
    (tmp / "notrun" / "keep.txt").write_text("a user's file")
    (tmp / "stopped.partial").mkdir()
    (tmp / "garbled.partial").mkdir()
    (tmp / "garbled.partial" / "config.json").write_text("{garbled")
    (tmp / "loop1").symlink_to(tmp / "loop2")
    (tmp / "loop2").symlink_to(tmp / "loop1")
    if toml is not None:
        (tmp / "c.toml").write_bytes(toml.encode("utf-8", "surrogateescape"))


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def check_failure(code: int, err: str, field: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("run.py: error: ") and field in lines[0] and "allowed: " in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "toml", "field"), BAD, ids=[f"{i:02d}:{a[0]}" for i, a in enumerate(BAD)])
def test_bad_input_exits_2_with_one_line(args, toml, field, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default results/ folder would appear here
    prepare(tmp_path, toml)
    before = listing(tmp_path)
    code = run.main(args.format(tmp=tmp_path).split(" "))
    captured = capsys.readouterr()
    check_failure(code, captured.err, field)
    assert listing(tmp_path) == before  # no results folder, staged or final


def test_there_are_at_least_50_bad_inputs():
    assert len(BAD) >= 50 and sum(toml is not None for _, toml, _ in BAD) >= 15


def test_unreachable_server_fails_before_writing_results(tmp_path, capsys):
    """The model's own check (the LLM server answers) fails after staging: the staged folder is removed."""
    code = run.main(["run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--workers", "3", "--steps", "2",
                     "--tax-year-length", "1", "--out", str(tmp_path / "out")])
    check_failure(code, capsys.readouterr().err, "--base-url")
    assert listing(tmp_path) == set()


def test_openai_without_key_fails_before_writing_results(tmp_path, capsys, monkeypatch):
    for var in ("OPENAI_API_KEY", "LLM_API_KEY", "LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    code = run.main(["run", "--backend", "openai", "--workers", "3", "--steps", "2", "--tax-year-length", "1",
                     "--out", str(tmp_path / "out")])
    check_failure(code, capsys.readouterr().err, "api_key")
    assert listing(tmp_path) == set()


@pytest.mark.parametrize(("args", "toml", "field"), [
    ("run --workers -3 --out {tmp}/out", None, "--workers"),
    ("sweep --grid colour=red --out {tmp}/out", None, "--grid"),
    ("run --config {tmp}/c.toml --out {tmp}/out", "wrokers = 1", "wrokers"),
    ("run --out {tmp}/afile/sub", None, "--out"),
    ("nonsense --help", None, "command"),
])
@pytest.mark.slow  # a process each
def test_bad_input_in_a_subprocess(args, toml, field, tmp_path):
    prepare(tmp_path, toml)
    before = listing(tmp_path)
    done = subprocess.run([sys.executable, "run.py", *args.format(tmp=tmp_path).split(" ")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    check_failure(done.returncode, done.stderr, field)
    assert listing(tmp_path) == before


@pytest.mark.slow  # a process each
def test_help_exits_0_and_documents_every_option_with_its_default():
    done = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and all(c in done.stdout for c in COMMANDS)
    done = subprocess.run([sys.executable, "run.py", "run", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    entries = {}
    for line in done.stdout.split("options:")[1].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif line.strip():
            entries[flag] += " " + line.strip()
    for flag in ("--workers", "--max-steps", "--tax-year-length", "--preset", "--brackets", "--planner",
                 "--worker-mind", "--scenario-name", "--objective", "--backend", "--base-url", "--llm-model", "--seed",
                 "--out"):
        assert "(default: " in entries[flag], entries[flag]
    assert not {"--steps", "--scenario", "--model"} & set(entries)  # short spellings work, help shows one
    assert "--config" in entries


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    assert run.main([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    flags = [word for word in out.split() if word.startswith("--") and word not in ("--help", "--config")]
    assert flags
    if command not in ("replay", "resume"):
        assert out.count("(default: ") >= len(set(flags)) // 2  # each option line carries its default


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path):
    (tmp_path / "c.toml").write_text('workers = 7\nsteps = 12\npreset = "paper"\nbaselines = ["saez"]\n')
    _, settings = resolve(["run", "--config", str(tmp_path / "c.toml"), "--steps", "6", "--out",
                           str(tmp_path / "o")], run.DEFAULTS)
    assert (settings["workers"], settings["max_steps"], settings["preset"]) == (7, 6, "paper")
    assert settings["baselines"] == ["saez"] and settings["tax_year_length"] == run.RUN_DEFAULTS["tax_year_length"]
    assert settings["worker_mind"] == "llm" and settings["planner"] == "llm"


def test_no_arguments_is_the_main_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default results folder is relative; an earlier main job's is not in the way
    command, settings = resolve([], run.DEFAULTS)
    assert command == "run" and settings["worker_mind"] == "llm" and settings["planner"] == "llm"
    assert {k: settings[k] for k in ("workers", "max_steps", "tax_year_length")} == \
        {k: run.RUN_DEFAULTS[k] for k in ("workers", "max_steps", "tax_year_length")}
    assert settings["out"].startswith("results/calibrated-llm-seed42-")  # then a hash of the settings


def test_with_a_server_named_the_main_job_is_the_papers_default_experiment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("LLM_BASE_URL", "LLM_BACKEND", "OPENAI_API_KEY", "LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    paper = {"workers": 5, "max_steps": 2500, "tax_year_length": 25}  # the reference's N, max timesteps and T
    size = ("workers", "max_steps", "tax_year_length")
    for argv, env in ((["--base-url", "http://127.0.0.1:8000/v1"], {}), (["--backend", "openai"], {}),
                      ([], {"LLM_BASE_URL": "http://127.0.0.1:8000/v1"}), ([], {"OPENAI_API_KEY": "k"})):
        with monkeypatch.context() as env_now:
            for name, value in env.items():
                env_now.setenv(name, value)
            assert {k: resolve(argv, run.DEFAULTS)[1][k] for k in size} == paper, (argv, env)
    for argv in ([], ["--model", "SmolLM2-135M-Instruct.Q4_1"], ["--backend", "embedded"]):
        assert {k: resolve(argv, run.DEFAULTS)[1][k] for k in size} == {k: run.RUN_DEFAULTS[k] for k in size}
    assert resolve(["--base-url", "http://127.0.0.1:8000/v1", "--steps", "7"], run.DEFAULTS)[1]["max_steps"] == 7


def test_sweep_grid_from_flags_and_toml_agree(tmp_path):
    (tmp_path / "s.toml").write_text('seeds = [1, 2]\n[grid]\nplanner = ["saez", "fixed"]\nworkers = [10, 20]\n')
    _, from_file = resolve(["sweep", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path / "a")],
                           run.DEFAULTS)
    _, from_flags = resolve(["sweep", "--grid", "planner=saez,fixed", "--grid", "workers=10,20", "--seeds", "1,2",
                             "--out", str(tmp_path / "a")], run.DEFAULTS)
    assert from_file == from_flags and from_file["grid"] == {"planner": ["saez", "fixed"], "workers": [10, 20]}


def test_config_error_is_one_line_naming_field_and_allowed():
    error = ConfigError("--workers", "-3 is out of range", "an integer from 1 to 10")
    assert str(error) == "--workers: -3 is out of range; allowed: an integer from 1 to 10"
    assert os.linesep not in str(error)
