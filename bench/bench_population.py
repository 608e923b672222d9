"""Time population sampling: ``python bench/bench_population.py [n]`` (default 1,000,000).

Prints the one-off table build, a full ``census`` draw (with personas), the same without
personas, and ``paper_gb2``. Goal: 1,000,000 census workers in at most 5 s, build included.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from calibration import population
from calibration.census import sample_census
from calibration.census_model import census_model


def timed(label: str, fn) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label:<44} {seconds:7.2f} s")
    return seconds


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rng = np.random.default_rng(0)
    build = timed("census tables (once per process)", census_model)
    draw = timed(
        f"census, {n:,} workers with personas", lambda: population.sample_population("census", n, rng)
    )
    timed(f"census, {n:,} workers without personas", lambda: sample_census(n, rng, with_personas=False))
    timed(f"paper_gb2, {n:,} workers", lambda: population.sample_population("paper_gb2", n, rng))
    total = build + draw
    verdict = "met" if total <= 5 else "MISSED"
    print(f"{'census first draw incl. tables':<44} {total:7.2f} s  (goal <= 5 s: {verdict})")


if __name__ == "__main__":
    main()
