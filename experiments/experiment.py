"""The ``run``, ``resume``, ``replay`` and ``compare`` commands."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from experiments import plots, results
from experiments.cli import PARAM, flag
from experiments.config import ConfigError
from experiments.folders import exclusive, partial_dir
from experiments.plugins import load_plugins
from experiments.runner import Interrupted, baseline_kwargs, model_kwargs, step_all


def run(settings: dict, progress: bool = True) -> Path:
    """A new run: the main model, then the baselines; returns the results folder."""
    out = Path(settings["out"])
    config = {"command": "run", "run_id": out.name, "settings": settings}
    with exclusive(results.start(out, config), "--out"):
        return _execute(config, out, mode="new", progress=progress)


def resume(out: Path, progress: bool = True) -> Path:
    """Continue an interrupted run or sweep from the start: stored responses replay, then it goes live."""
    config = results.read_config(partial_dir(out))
    if config.get("command") == "sweep":
        from experiments import sweep

        return sweep.run(config["settings"], out, resume=True, progress=progress)
    if config.get("command") != "run":
        raise ConfigError("--run", f"{out} is not a run of `run` or `sweep`", "a folder written by run or sweep")
    with exclusive(partial_dir(out), "--run"):
        return _execute(config, out, mode="resume", progress=progress)


def replay(out: Path, progress: bool = True) -> Path:
    """Rerun a finished run from its stored responses only, and rewrite its results."""
    config = results.read_config(out)
    if config.get("command") != "run":
        written = f"`{config['command']}`" if "command" in config else "an older run.py"
        raise ConfigError("--run", f"{out} was written by {written}", "a folder written by `run`")
    partial = results.start(out, config)
    with exclusive(partial, "--run"):
        if (out / results.STORE_NAME).is_file():
            shutil.copy2(out / results.STORE_NAME, partial / results.STORE_NAME)
        return _execute(config, out, mode="replay", progress=progress)


def _execute(config: dict, out: Path, mode: str, progress: bool) -> Path:
    from model.model import EconomyModel

    s, partial = config["settings"], partial_dir(out)
    load_plugins(s.get("plugin", []))
    kwargs = model_kwargs(s, seed=s["seed"], run_id=config["run_id"], store=str(partial / results.STORE_NAME),
                          store_mode="replay" if mode == "replay" else "record", agent_interval=s["agent_interval"])
    model = None
    try:
        start = time.perf_counter()
        model = build(EconomyModel, kwargs)
        step_all(model, desc=f"{out.name} ({mode})" if mode != "new" else out.name, progress=progress)
        seconds = time.perf_counter() - start
        frame = results.write_model_data(model, partial)
        state, label = results.final_state(model), f"this run: {_planner(s)}, {s['worker_mind']} workers"
        elections, objective_name = list(model.elections), model.objective_name
        final_rates = tuple(float(r) for r in model.schedule.rates)
        config["llm"] = results.llm_settings(model)
        results.write_json(partial / results.CONFIG_NAME, config)
    except KeyboardInterrupt:
        step = int(model.time) if model is not None else 0
        for name in ("llm_runtime", "asyncio"):  # requests and tasks cut short by the stop are not news
            logging.getLogger(name).setLevel(logging.CRITICAL)
        _close(model)
        if mode == "replay":
            shutil.rmtree(partial, ignore_errors=True)
        raise Interrupted(out, step, s["steps"]) from None
    except BaseException:
        _close(model)
        _failed(out, mode, started=model is not None)
        raise
    _close(model)
    try:
        rows = [results.summary_row(label, frame, seconds)]
        baselines = run_baselines(s, final_rates, progress)
        for name, (data, taken) in baselines.items():
            rows.append(results.summary_row(name, data, taken))
        table = pd.DataFrame(rows).set_index("run")
        if baselines:
            tidy = pd.concat({name: data for name, (data, _) in baselines.items()}, names=["run"])
            tidy.reset_index().to_parquet(partial / "baselines.parquet")
        results.write_plots(partial, frame, {n: d for n, (d, _) in baselines.items()}, state, objective_name, label,
                            elections)
        table.to_csv(partial / "summary.csv")
        files = sorted({p.name for p in partial.iterdir()} | {"summary.md"})
        text = summary_text(out, s, objective_name, table, skipped=_skipped(s), mode=mode, files=files)
        (partial / "summary.md").write_text(text, encoding="utf-8")
    except KeyboardInterrupt:
        raise Interrupted(out, s["steps"], s["steps"]) from None
    except BaseException:
        _failed(out, mode, started=True)
        raise
    results.finish(out)
    print(text)
    print(f"results: {out}")
    return out


def _failed(out: Path, mode: str, started: bool) -> None:
    """After an error: a replay, or a new run that never started, leaves nothing behind; a started run keeps
    its stored responses for ``resume``."""
    if mode == "replay" or (mode == "new" and not started):
        shutil.rmtree(partial_dir(out), ignore_errors=True)
    elif started:
        print(f"run.py: the run stopped with an error; stored responses are kept in {partial_dir(out)}. After "
              f"fixing the cause, resume with: python run.py resume --run {out}", file=sys.stderr)


def build(model_class, kwargs: dict):
    """The model; its own checks of the arguments become ConfigErrors (bad input, exit 2)."""
    from llm_runtime.errors import LLMConfigError

    names = {parameter: name for name, parameter in PARAM.items()}
    try:
        return model_class(**kwargs)
    except ConfigError as error:
        raise ConfigError(flag(names.get(error.field, error.field)), error.problem, error.allowed) from None
    except LLMConfigError as error:
        raise ConfigError(error.field, error.problem, error.allowed) from None


def _planner(s: dict) -> str:
    return "elected leaders" if s["scenario"] == "democratic" else s["planner"]


def _close(model) -> None:
    if model is not None:
        model.close()


def statutory(brackets: str | None, preset: str) -> bool:
    from model.params import PRESETS
    from public_finance.taxes import bracket_set

    return bracket_set(brackets or PRESETS[preset]["brackets"]).statutory


def _skipped(s: dict) -> list[str]:
    return [p for p in s["baselines"] if p == "us_federal" and not statutory(s["brackets"], s["preset"])]


def run_baselines(s: dict, final_rates: tuple, progress: bool) -> dict[str, tuple[pd.DataFrame, float]]:
    """Each baseline with rational workers on the same population and seed, and the run's final rates held fixed."""
    from model.model import EconomyModel

    runs = {p: baseline_kwargs(s, p) for p in s["baselines"] if p not in _skipped(s)}
    if s["scenario"] != "democratic":
        runs["this run's final rates"] = baseline_kwargs(
            s, "fixed", planner_options={"rates": list(final_rates)})
    out = {}
    for name, kwargs in runs.items():
        start = time.perf_counter()
        model = EconomyModel(**kwargs)
        try:
            step_all(model, desc=name, progress=progress)
            out[name] = (results.model_frame(model), time.perf_counter() - start)
        finally:
            model.close()
    return out


def summary_text(out: Path, s: dict, objective_name: str, table: pd.DataFrame, skipped: list[str],
                 mode: str, files: list[str]) -> str:
    main = table.iloc[0]
    baselines = table.iloc[1:]
    lines = [f"# {out.name}", "",
             f"{s['workers']} workers ({s['worker_mind']}), planner {_planner(s)}, scenario {s['scenario']}, "
             f"{s['steps']} steps, tax year {s['tax_year_length']} steps, preset {s['preset']}, "
             f"objective {objective_name}, seed {s['seed']}.", "",
             "Final step of each run; the baselines have rational workers on the same population and seed.", "",
             "```", results.table_text(table), "```", ""]
    if len(baselines):
        best = baselines["objective"].idxmax()
        gap = main["objective"] - baselines["objective"].max()
        lines += [f"Best baseline: {best}, objective {baselines['objective'].max():,.4f}; this run "
                  f"{main['objective']:,.4f} ({gap:+,.4f}).", ""]
    if skipped:
        lines += [f"Not run: {', '.join(skipped)} (needs US brackets).", ""]
    lines += oracle_note(table.index)
    if mode != "new":
        lines += [f"This folder was written by `{mode}`: LLM accounting counts that process only "
                  "(stored responses appear as store hits).", ""]
    lines += ["Files: " + ", ".join(f"`{name}`" for name in files) + " (see the README, Results).", ""]
    return "\n".join(lines)


def oracle_note(names) -> list[str]:
    """Lines of summary.md saying which Stackelberg oracle a table shows."""
    from agents.planner import OracleRule

    notes = {"oracle": "`oracle` is the population oracle: its rates are optimal for the population (a "
                       f"{OracleRule.POPULATION_DRAW:,}-worker draw from the same source and seed, or these workers if "
                       "more), and its objective is that of these workers",
             "oracle_sample": "`oracle_sample` is the optimum for these very workers, which small samples let it "
                              "exploit worker by worker"}
    shown = [text for name, text in notes.items() if name in names]
    return ["; ".join(shown) + ".", ""] if shown else []


def compare(s: dict, progress: bool = False) -> pd.DataFrame:
    """Each planner on the same rational population (same seed); prints a table, and writes it with ``--out``."""
    settings = dict(s, planner=None, worker_mind="rational", scenario="rational")
    planners = [p for p in s["planners"] if not (p == "us_federal" and not statutory(s["brackets"], s["preset"]))]
    from model.model import EconomyModel

    frames, rows = {}, []
    objective_name = None
    for planner in planners:
        start = time.perf_counter()
        model = EconomyModel(**baseline_kwargs(settings, planner))
        try:
            step_all(model, desc=planner, progress=progress)
        finally:
            model.close()
        taken = time.perf_counter() - start
        objective_name = model.objective_name
        frames[planner] = results.model_frame(model)
        rows.append(results.summary_row(planner, frames[planner], taken))
    table = pd.DataFrame(rows).set_index("run").rename_axis("planner").sort_values("objective", ascending=False)
    header = (f"{s['preset']} preset, {s['workers']} rational workers, {s['steps']} steps, tax year "
              f"{s['tax_year_length']}, objective {objective_name}, seed {s['seed']}")
    if s["out"] is not None:
        out = Path(s["out"])
        partial = results.start(out, {"command": "compare", "settings": s})
        try:
            table.to_csv(partial / "compare.csv")
            pd.concat(frames, names=["planner"]).reset_index().to_parquet(partial / "compare.parquet")
            best = table.index[0]
            plots.objective(frames[best], {p: f for p, f in frames.items() if p != best}, objective_name, best,
                            partial / "objective.png")
            note = "".join(f"\n{line}" for line in oracle_note(table.index))
            (partial / "summary.md").write_text(f"# {out.name}\n\n{header}.\n\n```\n{results.table_text(table)}\n"
                                                f"```\n{note}", encoding="utf-8")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        results.finish(out)
    print(header)
    print(results.table_text(table))
    if s["out"] is not None:
        print(f"results: {s['out']}")
    return table
