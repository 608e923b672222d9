"""Benchmarks of the economy core; prints figures.

    python bench/bench_economy.py [--workers 1000000] [--loop-sample 20000] [--oracle-workers 1000]

1. One full model step (plan, work, settle, vote, collect) with N rational workers and
   agent collection off, best of 5 steps.
2. The same best responses computed by a per-agent Python loop (one call per worker, the
   way an agent-by-agent ``step()`` would), timed on a sample and scaled to N.
3. The 7-bracket Stackelberg oracle with 1,000 workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.economy import best_response  # noqa: E402
from model.model import EconomyModel  # noqa: E402


def bench_step(workers: int) -> tuple[float, float, EconomyModel]:
    start = time.perf_counter()
    model = EconomyModel(workers=workers, population="paper_gb2", agent_interval=0, max_steps=10, rng=1)
    build = time.perf_counter() - start
    times = []
    for _ in range(5):
        start = time.perf_counter()
        model.step()
        times.append(time.perf_counter() - start)
    return build, min(times), model


def bench_loop(model: EconomyModel, sample: int) -> float:
    skills = model.workforce.skill[:sample]
    start = time.perf_counter()
    for skill in skills:
        best_response(np.array([skill]), model.schedule, model.expected_rebate, model.preferences)
    return (time.perf_counter() - start) / skills.size


def bench_oracle(workers: int) -> tuple[float, EconomyModel]:
    start = time.perf_counter()
    model = EconomyModel(workers=workers, population="paper_gb2", planner="oracle", agent_interval=0, max_steps=1,
                         rng=1)
    return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1_000_000)
    parser.add_argument("--loop-sample", type=int, default=20_000)
    parser.add_argument("--oracle-workers", type=int, default=1000)
    args = parser.parse_args()

    build, step, model = bench_step(args.workers)
    per_worker = bench_loop(model, args.loop_sample)
    loop = per_worker * args.workers
    print(f"model construction, {args.workers:,} workers: {build:.2f} s")
    print(f"one full step, {args.workers:,} rational workers (agent collection off): {step:.3f} s")
    print(f"per-agent Python best-response loop: {1e6 * per_worker:.1f} us/worker -> {loop:.1f} s "
          f"for {args.workers:,} (timed on {args.loop_sample:,})")
    print(f"speed-up of the batched step over the loop: {loop / step:.0f}x")
    seconds, oracle = bench_oracle(args.oracle_workers)
    rates = " ".join(f"{100 * r:.0f}" for r in oracle.schedule.rates)
    print(f"7-bracket oracle, {args.oracle_workers:,} workers: {seconds:.1f} s (rates % {rates}, "
          f"objective {oracle.objective:.4f})")


if __name__ == "__main__":
    main()
