"""Model steps with LLM minds against the fault-free test server (a separate process on 127.0.0.1).

1. Per-worker minds: one full step (plan, work, settle) with 1,000 LLM workers and an LLM planner, against
   a server with 50 ms latency and 64 slots. The ideal is requests / slots x latency; goal <= 1.05 x ideal
   (the median step). The client keeps twice as many requests in flight as the server has slots, so the
   server's queue never runs dry while answers travel back and the next requests go out. The server holds
   each request's slot from the kernel's receive time of its bytes, not from when its own loop, sharing the
   cores with the client, got round to reading them, and answers to the microsecond.
2. Archetypes: 1,000,000 workers in K = 100 archetypes; the step's time beyond the LLM batch (prompts for
   the archetypes, broadcasting, settling, observing); goal <= 2 s.

    .venv/bin/python bench/bench_llm_model.py [--workers 1000] [--population 1000000] [--archetypes 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_llm_throughput import start_server
from model.model import EconomyModel


class TimedBatches:
    """Wraps the model's LLM client to add up the wall time spent inside ``run_batch``."""

    def __init__(self, client):
        self.client, self.seconds, self.requests = client, 0.0, 0
        self._run_batch = client.run_batch
        client.run_batch = self.run_batch

    def run_batch(self, requests, progress=None):
        start = time.perf_counter()
        try:
            return self._run_batch(requests, progress)
        finally:
            self.seconds += time.perf_counter() - start
            self.requests += len(requests)


def timed_steps(model: EconomyModel, steps: int) -> list[dict]:
    timer = TimedBatches(model.llm)
    rows = []
    for _ in range(steps):
        timer.seconds, timer.requests = 0.0, 0
        start = time.perf_counter()
        model.step()
        rows.append({"step": model.period, "seconds": time.perf_counter() - start, "llm_seconds": timer.seconds,
                     "requests": timer.requests})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--population", type=int, default=1_000_000)
    ap.add_argument("--archetypes", type=int, default=100)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="timed steps after one warm-up step")
    ap.add_argument("--concurrency", type=int, default=None, help="LLM requests in flight (default: 2 x --slots)")
    ns = ap.parse_args()
    concurrency = ns.concurrency or 2 * ns.slots
    proc, base_url = start_server(ns.latency, ns.slots)
    common = dict(worker_mind="llm", planner="llm", base_url=base_url, llm_model="fault-model", agent_interval=0,
                  tax_year_length=1000, max_steps=1000, rng=7)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = EconomyModel(workers=ns.workers, llm_store=os.path.join(tmp, "w.sqlite"), run_id="workers",
                                 llm_concurrency=concurrency, **common)
            timed_steps(model, 1)  # warm-up: the planner's first request, worker processes start
            rows = timed_steps(model, ns.steps)
            model.close()
            seconds = sorted(r["seconds"] for r in rows)
            median = statistics.median(seconds)
            requests = rows[0]["requests"]
            ideal = requests / ns.slots * ns.latency  # the ideal: requests / slots x latency
            print(json.dumps({"bench": "llm_workers_step", "workers": ns.workers, "requests": requests,
                              "concurrency": concurrency, "ideal_s": round(ideal, 3),
                              "median_step_s": round(median, 3), "ratio_to_ideal": round(median / ideal, 3),
                              "best_step_s": round(seconds[0], 3), "best_ratio": round(seconds[0] / ideal, 3),
                              "median_llm_s": round(statistics.median(r["llm_seconds"] for r in rows), 3),
                              "steps_s": [round(r["seconds"], 3) for r in rows]}), flush=True)

            start = time.perf_counter()
            model = EconomyModel(workers=ns.population, archetypes=ns.archetypes, llm_concurrency=concurrency,
                                 llm_store=os.path.join(tmp, "a.sqlite"), run_id="archetypes", **common)
            build = time.perf_counter() - start
            timed_steps(model, 1)
            rows = timed_steps(model, ns.steps)
            model.close()
            overhead = [r["seconds"] - r["llm_seconds"] for r in rows]
            print(json.dumps({"bench": "archetype_step", "workers": ns.population, "archetypes": ns.archetypes,
                              "requests_per_step": rows[-1]["requests"], "build_s": round(build, 2),
                              "step_s": round(min(r["seconds"] for r in rows), 3),
                              "overhead_beyond_llm_s": round(min(overhead), 3),
                              "overhead_per_step_s": [round(o, 3) for o in overhead]}), flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
