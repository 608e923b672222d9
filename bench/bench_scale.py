"""The largest model ``--workers`` accepts; prints figures.

    python bench/bench_scale.py [--workers 10000000] [--steps 3]

Builds a rational model with the default (``census``) population, personas included, under the
``us_federal`` planner with agent collection off, then times a few full steps. Prints the build time,
the median step and the process's peak memory (``ru_maxrss``), and whether the machine was quiet or loaded
(loaded: other processes took 10 % or more of the CPU while it ran).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

from bench_llm_throughput import machine_busy_seconds

from model.model import EconomyModel
from model.params import MAX_WORKERS


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def peak_memory_gb() -> float:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=MAX_WORKERS)
    parser.add_argument("--steps", type=int, default=3, help="steps timed; the median is printed")
    args = parser.parse_args()

    # the load average lags by a minute and counts this process: measure the others' CPU instead
    busy, own, began = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    start = time.perf_counter()
    model = EconomyModel(workers=args.workers, worker_mind="rational", planner="us_federal", agent_interval=0,
                         max_steps=args.steps + 1, rng=1)
    build = time.perf_counter() - start
    print(f"model construction, {args.workers:,} census workers with personas: {build:.1f} s "
          f"(peak memory so far {peak_memory_gb():.1f} GB)", flush=True)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.step()
        times.append(time.perf_counter() - start)
    print(f"one full step, {args.workers:,} rational workers (agent collection off): "
          f"{statistics.median(times):.2f} s median of {args.steps} ({', '.join(f'{t:.2f}' for t in times)})")
    print(f"peak memory (ru_maxrss): {peak_memory_gb():.1f} GB")
    wall = time.perf_counter() - began
    others = max(0.0, machine_busy_seconds() - busy - (own_cpu_seconds() - own)) / (wall * (os.cpu_count() or 1))
    print(f"{'loaded' if others >= 0.1 else 'quiet'} machine: other processes took {100 * others:.0f} % of "
          f"the CPU ({os.cpu_count()} cores) over the {wall:.0f} s run")


if __name__ == "__main__":
    main()
