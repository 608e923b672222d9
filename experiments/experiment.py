"""The ``run``, ``resume``, ``replay`` and ``compare`` commands."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from agents.planner import PLANNERS
from experiments import plots, results
from experiments.cli import PARAMETERS, flag
from experiments.config import ConfigError, llm_config
from experiments.folders import discard, exclusive, held, holder, partial_dir, resume_command
from experiments.plugins import load_model_class, load_plugins
from experiments.runner import (Interrupted, ResultsNotWritten, TooManyFailures, baseline_kwargs, failure_rate,
                                model_kwargs, step_all, writing)
from agents.llm_settings import as_parameter_error
from llm_runtime.errors import ServerStopped
from model.params import PRESETS
from public_finance.taxes import bracket_set


def run(settings: dict, progress: bool = True) -> Path:
    """A new run: the main model, then the baselines; returns the results folder."""
    out = Path(settings["out"])
    config = {"command": "run", "run_id": out.name, "settings": settings}
    with results.start(out, config, "--out", overwrite=settings.get("overwrite", False)):
        return _execute(config, out, mode="new", progress=progress)


def resume(out: Path, progress: bool = True, asked: dict | None = None) -> Path:
    """Continue an interrupted run or sweep from the start: stored responses replay, then it goes live, on the
    run's own server and model (``asked``: the user's ``base_url``, ``llm_model`` and ``allow_other_model``)."""
    config = results.read_config(partial_dir(out))
    if config.get("command") == "sweep":
        from experiments import sweep

        return sweep.run(config["settings"], out, resume=True, progress=progress)
    if config.get("command") != "run":
        raise ConfigError("--run", f"{out} is not a run of `run` or `sweep`", "a folder written by run or sweep")
    with held(out, "--run"):
        return _execute(config, out, mode="resume", progress=progress, asked=asked)


def replay(out: Path, progress: bool = True, asked: dict | None = None) -> Path:
    """Rerun a finished run from its stored responses only, into ``<run>/replay``; the run's own files stay as
    they are. The baselines are not rerun: they are the run's own."""
    config = results.read_config(out)
    if config.get("command") != "run":
        written = f"`{config['command']}`" if "command" in config else "an older run.py"
        raise ConfigError("--run", f"{out} was written by {written}", "a folder written by `run`")
    target = out / REPLAY_NAME
    with exclusive(out, "--run", doing="replayed", remove=True):  # no run replaces the folder while it is replayed
        partial = partial_dir(target)
        if partial.exists():
            if (pid := holder(partial)) is not None:
                raise ConfigError("--run", f"{partial} is already running (pid {pid or 'unknown'})",
                                  "one run, resume or replay of a results folder at a time")
            discard(partial)  # a replay that was stopped: it holds nothing that is not in the run
        if (out / results.STORE_NAME).is_file():  # a damaged store is reported under its own name, before any work
            from llm_runtime.store import ResponseStore

            ResponseStore(out / results.STORE_NAME, writable=False).close()
        config = dict(config, command="replay", replay_of=str(out))
        with results.start(target, config, "--run", overwrite=True) as partial:
            with writing(target, kept=False):
                if (out / results.STORE_NAME).is_file():
                    shutil.copy2(out / results.STORE_NAME, partial / results.STORE_NAME)
            return _execute(config, target, mode="replay", progress=progress, original=out, asked=asked)


def _execute(config: dict, out: Path, mode: str, progress: bool, original: Path | None = None,
             asked: dict | None = None) -> Path:
    """The baselines first (stored ones are reused), then the run itself, then the summary.

    The model is built before the baselines run, so that a wrong LLM setting stops the run before any work."""
    s, partial = config["settings"], partial_dir(out)
    load_plugins(s.get("plugin", []))
    model_class = load_model_class(s.get("model_class"))
    kwargs = model_kwargs(s, seed=s["seed"], run_id=config["run_id"], store=str(partial / results.STORE_NAME),
                          store_mode="replay" if mode == "replay" else "record", agent_interval=s["agent_interval"])
    before = (config.get("llm") or {}).get("resolved")
    if mode != "new":
        kwargs.update(llm_source(config, asked or {}, mode, out if mode == "resume" else original))
    model = None
    try:
        model = build(model_class, kwargs)  # first: it checks the LLM server and model before any work
        if model.llm is not None:  # where the answers come from, from the first moment: resume asks the same
            config["llm"] = results.llm_settings(model)
            if before and not same_source(before, config["llm"]["resolved"]):
                config["llm"]["before"] = before  # allowed by --allow-other-model; summary.md says so first
            with writing(out, kept=mode != "replay"):
                results.write_json(partial / results.CONFIG_NAME, config)
        with writing(out, kept=mode != "replay"):
            baselines = _baselines(s, partial, stored=original or partial, progress=progress)
        if baselines and mode != "replay":
            print(_baseline_table(s, baselines), flush=True)
        start = time.perf_counter()
        if model.llm is not None and model.llm.backend.kind == "embedded" and mode != "replay":
            print(plumbing_note(), file=sys.stderr, flush=True)
        try:
            step_all(model, desc=f"{out.name} ({mode})" if mode != "new" else out.name, progress=progress)
        except ConfigError as error:  # every request failed as a wrong setting makes them fail
            raise config_error(error) from None
        seconds = time.perf_counter() - start
        with writing(out, kept=mode != "replay"):
            frame = results.write_model_data(model, partial)
        state, label = results.final_state(model), f"this run: {_planner(s)}, {s['worker_mind']} workers"
        elections, objective_name = list(model.elections), model.objective_name
        final_rates = tuple(float(r) for r in model.schedule.rates)
        llm = config.get("llm") if model.llm is not None else None  # recorded when the model was built
        stats = model.llm.accounting.to_dict() if model.llm is not None else None
        with writing(out, kept=mode != "replay"):
            results.write_json(partial / results.CONFIG_NAME, config)
    except (KeyboardInterrupt, ServerStopped) as stop:
        step = int(model.time) if model is not None else 0
        for name in ("llm_runtime", "asyncio"):  # requests and tasks cut short by the stop are not news
            logging.getLogger(name).setLevel(logging.CRITICAL)
        _keep_accounting(model, partial, mode)
        _close(model)
        if mode == "replay":
            discard(partial)
        reason = str(stop) if isinstance(stop, ServerStopped) else None
        raise Interrupted(out, step, s["max_steps"], replay=mode == "replay", reason=reason) from None
    except BaseException as error:
        _keep_accounting(model, partial, mode)
        _close(model)
        _failed(out, mode, started=model is not None and not _nothing_answered(model, error),
                quiet=isinstance(error, ResultsNotWritten))
        raise
    _close(model)
    try:
        rows = [results.summary_row(label, frame, seconds)]
        final = _final_rates_baseline(s, final_rates, progress)
        for name, (data, taken) in {**baselines, **final}.items():
            rows.append(results.summary_row(name, data, taken))
        table = pd.DataFrame(rows).set_index("run")
        frames = {n: d for n, (d, _) in {**baselines, **final}.items()}
        with writing(out, kept=mode != "replay"):
            if frames:
                tidy = pd.concat(frames, names=["run"])
                tidy.reset_index().to_parquet(partial / "baselines.parquet")
            results.write_plots(partial, frame, frames, state, objective_name, label, elections)
            table.to_csv(partial / "summary.csv")
            files = sorted({p.name for p in partial.iterdir() if not p.name.startswith(".")} | {"summary.md"})
        same = _same_data(original, frame) if original is not None else None
        text = summary_text(out, s, objective_name, table, skipped=_skipped(s), mode=mode, files=files,
                            llm=llm, stats=stats, same_as_original=same)
        with writing(out, kept=mode != "replay"):
            (partial / "summary.md").write_text(text, encoding="utf-8")
            replaced = out.exists()
            results.finish(out)
    except KeyboardInterrupt:
        if mode == "replay":
            discard(partial)
        raise Interrupted(out, s["max_steps"], s["max_steps"], replay=mode == "replay") from None
    except BaseException as error:
        _failed(out, mode, started=True, quiet=isinstance(error, ResultsNotWritten))
        raise
    print(text)
    print(f"results: {out}" + (" (replacing the earlier replay)" if replaced and mode == "replay" else ""))
    limit = s.get("max_failure_rate", DEFAULT_MAX_FAILURE_RATE)
    if stats is not None and failure_rate(stats) > limit:
        raise TooManyFailures(out, stats, limit)
    return out


REPLAY_NAME = "replay"
DEFAULT_MAX_FAILURE_RATE = 0.05
EMBEDDED_NOTE = ("The embedded model (SmolLM2-135M, offline) is a plumbing model: it shows that every part of the "
                 "pipeline works, but its answers are not economic. The same run on a real server: "
                 "`LLM_BASE_URL=http://HOST:PORT/v1 LLM_MODEL=NAME .venv/bin/python run.py` (or OPENAI_API_KEY=... for "
                 "OpenAI).")


def plumbing_note() -> str:
    return "run.py: " + EMBEDDED_NOTE


def config_error(error: ConfigError) -> ConfigError:
    """A parameter's error (an LLM setting's under its parameter's name) under the name of its flag; one that came
    from a variable keeps the variable's name."""
    error = as_parameter_error(error)
    name = flag(error.field) if error.field in PARAMETERS else error.field
    return ConfigError(name, error.problem, error.allowed)


def _nothing_answered(model, error: BaseException) -> bool:
    """A configuration error before any request was answered: there is nothing worth keeping for ``resume``."""
    if not isinstance(error, ConfigError) or model.llm is None:
        return False
    stats = model.llm.accounting.to_dict()
    return stats["requests"] == sum(stats["failures"].values())


def _same_data(original: Path, frame: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(pd.read_parquet(original / "model.parquet"), frame)
    except (AssertionError, OSError, ValueError):
        return False
    return True


def _failed(out: Path, mode: str, started: bool, quiet: bool = False) -> None:
    """After an error: a replay, or a new run that never started, leaves nothing behind; a started run keeps
    its stored responses for ``resume`` (and says so, unless ``quiet``: the error's own line says it)."""
    if mode == "replay" or (mode == "new" and not started):
        discard(partial_dir(out))
    elif started and not quiet:
        print(f"run.py: the run stopped with an error; stored responses are kept in {partial_dir(out)}. After "
              f"fixing the cause, resume with: {resume_command(out)}", file=sys.stderr)


def same_source(a: dict, b: dict) -> bool:
    """Whether two recorded LLM sources are one backend, server(s) and model."""
    def urls(r):
        return sorted(u.rstrip("/") for u in r.get("base_urls") or ())
    return a.get("kind") == b.get("kind") and a.get("model") == b.get("model") and urls(a) == urls(b)


def _where(r: dict) -> str:
    return f"model {r.get('model')!r} on " + ("the embedded model" if r.get("kind") == "embedded" else
                                              ", ".join(r.get("base_urls") or ()))


def llm_source(config: dict, asked: dict, mode: str, out: Path) -> dict:
    """The LLM settings of a resume or replay: the run's own backend, server and model, so that its stored answers
    are found and new ones come from where the first ones came from. Another server or model, named by a flag or
    by ``LLM_BASE_URL``/``LLM_MODEL``/``LLM_BACKEND``, is refused unless ``allow_other_model``. The key still comes
    only from the environment: one the run used and that is missing now is named."""
    recorded = (config.get("llm") or {}).get("resolved")
    if not recorded:
        return {}  # a run without LLM minds
    env = os.environ
    now = llm_config({name: asked.get(name) for name in ("base_url", "llm_model")})  # flags, else LLM_* variables
    backend = now.backend if now.backend != "auto" else None
    kind = "openai" if now.base_urls else backend or recorded["kind"]
    wanted = {"kind": kind, "model": now.model or recorded["model"],
              "base_urls": list(now.base_urls) if now.base_urls else
              recorded.get("base_urls") if kind == recorded["kind"] else []}
    if not same_source(recorded, wanted):
        if not asked.get("allow_other_model"):
            field = "--llm-model" if wanted["model"] != recorded["model"] else "--base-url"
            raise ConfigError(field, f"{out} ran on {_where(recorded)}; asked now: {_where(wanted)}",
                              "the run's own model and server (leave out the flag or variable), or "
                              "--allow-other-model to go on with another (summary.md then says so first)")
        # what was not asked stays the run's own: a model alone never sends the run elsewhere
        return {"backend": kind, "base_url": ",".join(wanted["base_urls"]) or None, "llm_model": wanted["model"]}
    variable = recorded.get("api_key_env")
    if mode == "resume" and variable and not any(env.get(v) for v in ("OPENAI_API_KEY", "LLM_API_KEY")):
        raise ConfigError(variable, "is not set; the run sent its requests with a key from it",
                          f"the server's key in {variable} (keys are never written to results)")
    return {"backend": recorded["kind"], "base_url": ",".join(recorded.get("base_urls") or ()) or None,
            "llm_model": recorded["model"]}


def build(model_class, kwargs: dict):
    """The model; its own checks of the arguments become ConfigErrors (bad input, exit 2)."""
    try:
        return model_class(**kwargs)
    except ConfigError as error:
        raise config_error(error) from None


def _planner(s: dict) -> str:
    return "elected leaders" if s["scenario_name"] == "democratic" else s["planner"]


def _keep_accounting(model, partial: Path, mode: str) -> None:
    """A run that stops early still leaves its LLM accounting beside its stored answers."""
    if model is not None and model.llm is not None and mode != "replay" and partial.is_dir():
        try:
            model.llm.accounting.write_json(partial / "llm_accounting.json")
        except OSError:
            pass  # the stop's own error is the one to report


def _close(model) -> None:
    if model is not None:
        model.close()


def _skipped(s: dict) -> list[str]:
    """Baselines whose rule cannot set rates on the run's brackets."""
    brackets = bracket_set(s["brackets"] or PRESETS[s["preset"]].brackets)
    return [p for p in s["baselines"] if not PLANNERS[p].applies_to(brackets)]


def _baselines(s: dict, partial: Path, stored: Path, progress: bool) -> dict[str, tuple[pd.DataFrame, float]]:
    """The baseline runs: read from ``stored`` when it holds them (a resume or a replay), else run and kept in
    ``partial`` at once, so that a resume does not run them again."""
    names = [p for p in s["baselines"] if p not in _skipped(s)]
    kept = _stored_baselines(stored, names)
    if kept is not None:
        return kept
    out = run_baselines(s, names, progress)
    if out:
        pd.concat({n: d for n, (d, _) in out.items()}, names=["run"]).reset_index().to_parquet(
            partial / "baselines.parquet")
        pd.DataFrame([results.summary_row(n, d, t) for n, (d, t) in out.items()]).set_index("run").to_csv(
            partial / "summary.csv")
    return out


def _stored_baselines(folder: Path, names: list[str]) -> dict[str, tuple[pd.DataFrame, float]] | None:
    try:
        tidy = pd.read_parquet(folder / "baselines.parquet")
        seconds = pd.read_csv(folder / "summary.csv", index_col="run")["seconds"]
    except (OSError, ValueError, KeyError):
        return None
    if not set(names) <= set(tidy["run"]) or not set(names) <= set(seconds.index):
        return None
    return {name: (tidy[tidy["run"] == name].drop(columns="run").set_index("step"), float(seconds[name]))
            for name in names}


def _final_rates_baseline(s: dict, final_rates: tuple, progress: bool) -> dict:
    """Rational workers under the run's final rates held fixed (not for elected leaders)."""
    if s["scenario_name"] == "democratic":
        return {}
    return run_baselines(s, [FINAL_RATES], progress, rates=final_rates)


FINAL_RATES = "this run's final rates"


def run_baselines(s: dict, names: list[str], progress: bool, rates: tuple | None = None,
                  ) -> dict[str, tuple[pd.DataFrame, float]]:
    """Each baseline with rational workers on the same population and seed (``rates``: fixed rates); the
    population is sampled once, for the first."""
    from calibration.population import draws_reused

    model_class = load_model_class(s.get("model_class"))
    out = {}
    with draws_reused():
        for name in names:
            kwargs = (baseline_kwargs(s, "fixed", planner_options={"rates": list(rates)}) if name == FINAL_RATES
                      else baseline_kwargs(s, name))
            start = time.perf_counter()
            model = model_class(**kwargs)
            try:
                step_all(model, desc=name, progress=progress)
                out[name] = (results.model_frame(model), time.perf_counter() - start)
            finally:
                model.close()
    return out


def _baseline_table(s: dict, baselines: dict) -> str:
    table = pd.DataFrame([results.summary_row(n, d, t) for n, (d, t) in baselines.items()]).set_index("run")
    return (f"Baselines: rational workers on the same {s['workers']} workers (seed {s['seed']}), last of "
            f"{s['max_steps']} steps; the run follows.\n{results.table_text(table)}")


def summary_text(out: Path, s: dict, objective_name: str, table: pd.DataFrame, skipped: list[str],
                 mode: str, files: list[str], llm: dict | None = None, stats: dict | None = None,
                 same_as_original: bool | None = None) -> str:
    main = table.iloc[0]
    baselines = table.iloc[1:]
    lines = [f"# {out.name}" if same_as_original is None else f"# {out.parent.name} (replay)", ""]
    lines += llm_lines(s, llm, stats)
    if same_as_original is not None:
        lines += [f"Replay of `{out.parent}` from its stored responses: the model data are "
                  + ("identical to the run's." if same_as_original else "**not** identical to the run's.")
                  + " The baselines are the run's own.", ""]
    lines += [f"{s['workers']} workers ({s['worker_mind']}), planner {_planner(s)}, scenario {s['scenario_name']}, "
              f"{s['max_steps']} steps, tax year {s['tax_year_length']} steps, preset {s['preset']}, "
              f"objective {objective_name}, seed {s['seed']}.", "",
              "Final step of each run; the baselines have rational workers on the same population and seed.", "",
              "```", results.table_text(table), "```", ""]
    if len(baselines):
        best = baselines["objective"].idxmax()
        gap = main["objective"] - baselines["objective"].max()
        lines += [f"Best baseline: {best}, objective {baselines['objective'].max():,.4f}; this run "
                  f"{main['objective']:,.4f} ({gap:+,.4f}).", ""]
    if skipped:
        lines += ["Not run: " + ", ".join(f"{name} (needs {PLANNERS[name].needs_brackets})" for name in skipped)
                  + ".", ""]
    lines += oracle_note(table.index)
    if mode == "resume":
        lines += ["This folder was written by `resume`: LLM accounting counts that process only "
                  "(stored responses appear as store hits).", ""]
    lines += ["Files: " + ", ".join(f"`{name}`" for name in files) + " (see the README, Results).", ""]
    return "\n".join(lines)


def llm_lines(s: dict, llm: dict | None, stats: dict | None) -> list[str]:
    """The LLM requests of the run, first in summary.md: what was asked, what failed, where."""
    if stats is None:
        return []
    failed = sum(stats["failures"].values())
    limit = s.get("max_failure_rate", DEFAULT_MAX_FAILURE_RATE)
    lines = []
    if (llm or {}).get("before"):
        before, now = llm["before"], llm["resolved"]
        whose = ("every answer in its data comes from the second, as a stored answer is found only for the model "
                 "that gave it" if before.get("model") != now.get("model") else
                 "answers stored before came from the first, the rest from the second")
        lines += [f"**This run started on {_where(before)} and was resumed on {_where(now)} (--allow-other-model): "
                  f"{whose}.**", ""]
    if failure_rate(stats) > limit:
        lines += [f"**FAILED: {failed} of {stats['requests']} LLM requests failed "
                  f"({100 * failure_rate(stats):.1f} %, above --max-failure-rate {100 * limit:g} %). Workers whose "
                  "request failed kept their previous hours; a planner whose request failed kept its rates.**", ""]
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(stats["failures"].items()))
    faults = ", ".join(f"{kind} {n:,}" for kind, n in sorted(stats["faults"].items()))
    resolved = (llm or {}).get("resolved", {})
    where = "the embedded model" if resolved.get("kind") == "embedded" else ", ".join(resolved.get("base_urls", []))
    lines += [f"LLM requests: {stats['requests']:,}, failures {failed:,}" + (f" ({kinds})" if kinds else "")
              + f", retries {stats['retries']:,}, re-asks {stats['reasks']:,}, store hits {stats['store_hits']:,}"
              + (f", clipped or reversed by the paper's rules {stats['clipped']:,}" if stats.get("clipped") else "")
              + f"; model `{resolved.get('model')}` on {where}.", ""]
    if faults:
        lines += [f"Faults met on the way, retried or re-asked or not: {faults}.", ""]
    if resolved.get("kind") == "embedded":
        lines += [EMBEDDED_NOTE, ""]
    return lines


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
    settings = dict(s, planner=None, worker_mind="rational", scenario_name="rational")
    brackets = bracket_set(s["brackets"] or PRESETS[s["preset"]].brackets)
    planners = [p for p in s["planners"] if PLANNERS[p].applies_to(brackets)]
    from model.model import EconomyModel

    from calibration.population import draws_reused

    frames, rows = {}, []
    objective_name = None
    with draws_reused():  # one population for every planner: the same seed draws it once
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
    header = (f"{s['preset']} preset, {s['workers']} rational workers, {s['max_steps']} steps, tax year "
              f"{s['tax_year_length']}, objective {objective_name}, seed {s['seed']}")
    if s["out"] is not None:
        out = Path(s["out"])
        with results.start(out, {"command": "compare", "settings": s}, "--out", s.get("overwrite", False)) as partial:
            try:
                with writing(out, kept=False):
                    table.to_csv(partial / "compare.csv")
                    pd.concat(frames, names=["planner"]).reset_index().to_parquet(partial / "compare.parquet")
                    best = table.index[0]
                    plots.objective(frames[best], {p: f for p, f in frames.items() if p != best}, objective_name,
                                    best, partial / "objective.png")
                    note = "".join(f"\n{line}" for line in oracle_note(table.index))
                    (partial / "summary.md").write_text(f"# {out.name}\n\n{header}.\n\n```\n"
                                                        f"{results.table_text(table)}\n```\n{note}", encoding="utf-8")
                    results.finish(out)
            except BaseException:
                discard(partial)
                raise
    print(header)
    print(results.table_text(table))
    if s["out"] is not None:
        print(f"results: {s['out']}")
    return table
