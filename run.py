"""Compare tax planners on one population of rational workers and print a table.

    python run.py                       # calibrated preset, US 2025 brackets, 100 workers
    python run.py --preset paper        # the reference formulas on its three brackets
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from model.model import PRESET_DEFAULTS, PRESETS, EconomyModel
from model.taxes import BRACKET_SETS, bracket_set

DEFAULT_PLANNERS = ("us_federal", "saez_reference", "saez", "oracle", "blackbox", "fixed")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--workers", type=int, default=100, help="number of workers")
    parser.add_argument("--steps", type=int, default=250, help="steps per run")
    parser.add_argument("--tax-year-length", type=int, default=25, help="steps per tax year")
    parser.add_argument("--preset", choices=PRESETS, default="calibrated", help="economics preset")
    parser.add_argument("--brackets", choices=BRACKET_SETS, default=None, help="bracket set; None means the preset's")
    parser.add_argument("--planners", default=",".join(DEFAULT_PLANNERS), help="comma-separated planners")
    parser.add_argument("--objective", default=None, help="planner objective; None means the preset's")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    return parser.parse_args(argv)


def compare(args: argparse.Namespace) -> pd.DataFrame:
    """Run each planner on the same population (same seed) and tabulate the final step."""
    brackets = args.brackets or PRESET_DEFAULTS[args.preset]["brackets"]
    planners = [name.strip() for name in args.planners.split(",") if name.strip()]
    if not bracket_set(brackets).statutory and "us_federal" in planners:
        planners.remove("us_federal")
    rows = []
    for planner in planners:
        start = time.perf_counter()
        model = EconomyModel(workers=args.workers, preset=args.preset, brackets=brackets, planner=planner,
                             objective=args.objective, tax_year_length=args.tax_year_length, max_steps=args.steps,
                             agent_interval=0, rng=args.seed)
        while model.running:
            model.step()
        rows.append({
            "planner": planner, "objective": model.objective, "utilitarian": model.utilitarian,
            "paper_swf": model.paper_swf, "mean_hours": model.mean_hours, "median_hours": model.median_hours,
            "zero_hours_%": 100 * model.share_zero_hours, "gini_post_tax": model.gini_post_tax,
            "rates_%": " ".join(f"{100 * r:.0f}" for r in model.schedule.rates),
            "seconds": time.perf_counter() - start,
        })
    return pd.DataFrame(rows).set_index("planner")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        table = compare(args)
    except ValueError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2
    objective = args.objective or ("paper_swf" if args.preset == "paper" else "utilitarian")
    print(f"{args.preset} preset, {args.workers} rational workers, {args.steps} steps, objective {objective}, "
          f"seed {args.seed}")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:,.3f}".format):
        print(table.sort_values("objective", ascending=False).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
