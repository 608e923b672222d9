"""The LLM Economist on Mesa: run experiments from the command line.

    python run.py                  # baseline planners side by side on one rational population (= compare)
    python run.py run              # LLM workers and an LLM planner, then the baselines; writes results/
    python run.py replay --run results/<run>   # rerun a run from its stored responses, no HTTP
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from model.model import PRESET_DEFAULTS, PRESETS, SCENARIOS, EconomyModel
from model.taxes import BRACKET_SETS, bracket_set

BASELINES = ("us_federal", "saez_reference", "saez", "oracle", "blackbox", "fixed")
RUN_DEFAULTS = {"workers": 10, "steps": 30, "tax_year_length": 10}
COMPARE_DEFAULTS = {"workers": 100, "steps": 250, "tax_year_length": 25}


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


def _add_common(parser: argparse.ArgumentParser, defaults: dict) -> None:
    parser.add_argument("--workers", type=int, default=defaults["workers"], help="number of workers")
    parser.add_argument("--steps", type=int, default=defaults["steps"], help="steps to run")
    parser.add_argument("--tax-year-length", type=int, default=defaults["tax_year_length"], help="steps per tax year")
    parser.add_argument("--preset", choices=PRESETS, default="calibrated", help="economics preset")
    parser.add_argument("--brackets", choices=BRACKET_SETS, default=None, help="bracket set; None means the preset's")
    parser.add_argument("--objective", default=None, help="planner objective; None means the preset's")
    parser.add_argument("--seed", type=int, default=42, help="random seed")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="LLM workers and planner, then baselines; writes a results folder",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_common(run, RUN_DEFAULTS)
    run.add_argument("--planner", default="llm", help="planner of the main run")
    run.add_argument("--worker-mind", choices=("llm", "rational"), default="llm", help="how workers decide")
    run.add_argument("--scenario", choices=SCENARIOS, default="rational", help="scenario")
    run.add_argument("--prompt-mode", choices=("improved", "paper"), default="improved", help="prompt style")
    run.add_argument("--archetypes", type=int, default=0, help="LLM decisions per archetype (0 = per worker)")
    run.add_argument("--backend", choices=("auto", "embedded", "openai"), default="auto",
                     help="LLM backend: auto = LLM_BASE_URL/OPENAI_API_KEY if set, else the embedded model")
    run.add_argument("--base-url", default=None, help="OpenAI-compatible base URL(s), comma-separated")
    run.add_argument("--model", default=None, help="model name on the server")
    run.add_argument("--out", default=None, help="results folder (default results/<preset>-<planner>-seed<seed>)")
    compare = commands.add_parser("compare", help="baseline planners on one rational population",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_common(compare, COMPARE_DEFAULTS)
    compare.add_argument("--planners", default=",".join(BASELINES), help="comma-separated planners")
    replay = commands.add_parser("replay", help="rerun a run from its response store only (no HTTP)")
    replay.add_argument("--run", required=True, help="results folder of the run")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "compare", "replay", "-h", "--help"):
        argv = ["compare", *argv]
    return parser.parse_args(argv)


def compare(args) -> pd.DataFrame:
    """Each planner on the same rational population (same seed); the final step of each."""
    brackets = args.brackets or PRESET_DEFAULTS[args.preset]["brackets"]
    planners = [name.strip() for name in args.planners.split(",") if name.strip()]
    if not bracket_set(brackets).statutory and "us_federal" in planners:
        planners.remove("us_federal")
    rows = [summarise(planner, run_model(dict(workers=args.workers, preset=args.preset, brackets=brackets,
                                                   planner=planner, objective=args.objective,
                                                   tax_year_length=args.tax_year_length, max_steps=args.steps,
                                                   agent_interval=0, rng=args.seed)))
            for planner in planners]
    return pd.DataFrame(rows).set_index("planner")


def run_model(kwargs: dict, progress: bool = False) -> EconomyModel:
    start = time.perf_counter()
    model = EconomyModel(**kwargs)
    bar = tqdm(total=model.max_steps, desc=kwargs.get("planner") or "run", unit="step", disable=not progress)
    try:
        while model.running:
            model.step()
            if model.llm is not None:
                stats = model.llm.accounting.to_dict()
                bar.set_postfix(requests=stats["requests"], tokens=stats["prompt_tokens"] + stats["completion_tokens"],
                                failures=sum(stats["failures"].values()), refresh=False)
            bar.update(1)
    finally:
        bar.close()
    model.seconds = time.perf_counter() - start
    return model


def summarise(name: str, model: EconomyModel) -> dict:
    return {"planner": name, "objective": model.objective, "utilitarian": model.utilitarian,
            "paper_swf": model.paper_swf, "mean_hours": model.mean_hours, "median_hours": model.median_hours,
            "zero_hours_%": 100 * model.share_zero_hours, "gini_post_tax": model.gini_post_tax,
            "rates_%": " ".join(f"{100 * r:.0f}" for r in model.schedule.rates),
            "seconds": getattr(model, "seconds", float("nan"))}


def table_text(table: pd.DataFrame) -> str:
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:,.3f}".format):
        return table.sort_values("objective", ascending=False).to_string()


def main_run(args) -> Path:
    out = Path(args.out or f"results/{args.preset}-{args.planner}-seed{args.seed}")
    config = {"workers": args.workers, "preset": args.preset, "brackets": args.brackets, "planner": args.planner,
              "worker_mind": args.worker_mind, "scenario_name": args.scenario, "objective": args.objective,
              "tax_year_length": args.tax_year_length, "max_steps": args.steps, "prompt_mode": args.prompt_mode,
              "archetypes": args.archetypes, "backend": args.backend, "base_url": args.base_url,
              "llm_model": args.model, "rng": args.seed, "run_id": out.name}
    return execute(config, out, store_mode="record")


def execute(config: dict, out: Path, store_mode: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    store = out.parent / f"{out.name}.llm.sqlite"
    kwargs = dict(config, agent_interval=1, llm_store=str(store), llm_store_mode=store_mode)
    model = run_model(kwargs, progress=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        model_frame = model.datacollector.get_model_vars_dataframe()
        model_frame.to_csv(staging / "model.csv", index_label="step")
        model_frame.to_parquet(staging / "model.parquet")
        workers = model.datacollector.get_agenttype_vars_dataframe(type(model.workers.to_list()[0]))
        workers.to_parquet(staging / "agents.parquet")
        rows = [summarise(f"{config['planner']} ({config['worker_mind']} workers)", model)]
        if model.llm is not None:
            model.llm.accounting.write_json(staging / "llm_accounting.json")
            model.llm.export_transcripts(staging / "transcripts.jsonl")
    finally:
        model.close()
    baseline_config = {k: v for k, v in config.items() if k in ("workers", "preset", "brackets", "objective",
                                                                "tax_year_length", "max_steps", "rng")}
    brackets = config["brackets"] or PRESET_DEFAULTS[config["preset"]]["brackets"]
    for planner in BASELINES:
        if planner == "us_federal" and not bracket_set(brackets).statutory:
            continue
        rows.append(summarise(f"{planner} (rational workers)", run_model(dict(baseline_config, planner=planner,
                                                                              agent_interval=0))))
    final = tuple(model.schedule.rates)
    rows.append(summarise(f"{config['planner']}'s final rates (rational workers)", run_model(
        dict(baseline_config, planner="fixed", planner_options={"rates": final}, agent_interval=0))))
    table = pd.DataFrame(rows).set_index("planner")
    summary = (f"# {out.name}\n\n{config['workers']} workers, {config['max_steps']} steps, tax year "
               f"{config['tax_year_length']} steps, preset {config['preset']}, objective {model.objective_name}, "
               f"seed {config['rng']}.\n\nFinal step of each run (baselines: rational workers on the same "
               f"population):\n\n```\n{table_text(table)}\n```\n")
    (staging / "summary.md").write_text(summary)
    table.to_csv(staging / "summary.csv")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    print(summary)
    print(f"results: {out}")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "compare":
            table = compare(args)
            objective = args.objective or ("paper_swf" if args.preset == "paper" else "utilitarian")
            print(f"{args.preset} preset, {args.workers} rational workers, {args.steps} steps, objective "
                  f"{objective}, seed {args.seed}")
            print(table_text(table))
        elif args.command == "replay":
            run_dir = Path(args.run)
            config_file = run_dir / "config.json"
            if not config_file.is_file():
                raise UsageError(f"--run: no config.json in {run_dir}")
            execute(json.loads(config_file.read_text()), run_dir, store_mode="replay")
        else:
            main_run(args)
    except (ValueError, UsageError) as error:
        print(f"run.py: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
