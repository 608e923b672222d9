"""One model step with 2,000 LLM workers, in one client process with the LLM layer's default settings.

The test server (``python -m tests.llm_server``, a process of its own) answers each request after 1 s on one of
256 slots, so a step's ideal time is ceil(2,000 / 256) x 1 s = 8 s. Prints the ideal, the measured step time
(the median of the timed steps), efficiency = ideal / measured (goal >= 0.97), the client process's CPU per
request (prompts, HTTP, parsing and the response store together), and whether the machine was quiet or loaded.

    .venv/bin/python bench/bench_llm_model.py [--workers 2000] [--latency 1] [--slots 256] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time

from bench_llm_throughput import process_cpu_seconds, start_server

from llm_runtime import LLMClient, LLMConfig
from model.model import EconomyModel


def load_per_core() -> float:
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--slots", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ns = ap.parse_args()
    load_before = load_per_core()
    proc, base_url = start_server(ns.latency, ns.slots)
    try:
        with tempfile.TemporaryDirectory() as tmp, LLMClient(LLMConfig(
                base_urls=(base_url,), model="fault-model", store_path=os.path.join(tmp, "store.sqlite"))) as llm:
            model = EconomyModel(workers=ns.workers, worker_mind="llm", planner="fixed", llm=llm, agent_interval=0,
                                 tax_year_length=1000, max_steps=1000, rng=7)
            model.step()  # warm-up: connections opened
            steps, cpu, server_cpu = [], 0.0, 0.0
            for _ in range(ns.steps):
                c0, s0, start = os.times(), process_cpu_seconds(proc.pid), time.perf_counter()
                model.step()
                steps.append(time.perf_counter() - start)
                c1 = os.times()
                cpu += c1.user + c1.system - c0.user - c0.system
                server_cpu += process_cpu_seconds(proc.pid) - s0
            acc = llm.accounting.to_dict()
            model.close()
    finally:
        proc.terminate()
        proc.wait(10)
    load_after = load_per_core()
    requests = ns.workers * ns.steps
    ideal = math.ceil(ns.workers / ns.slots) * ns.latency
    measured = statistics.median(steps)
    loaded = max(load_before, load_after) >= 0.5
    print(json.dumps({
        "bench": "llm_workers_step", "workers": ns.workers, "latency_s": ns.latency, "slots": ns.slots,
        "concurrency": LLMConfig().concurrency, "ideal_s": round(ideal, 3), "measured_s": round(measured, 3),
        "efficiency": round(ideal / measured, 3), "steps_s": [round(s, 3) for s in steps],
        "client_cpu_us_per_request": round(cpu / requests * 1e6),
        "server_cpu_us_per_request": round(server_cpu / requests * 1e6),
        "failures": acc["failures"], "cores": os.cpu_count(),
        "load_per_core": [round(load_before, 2), round(load_after, 2)],
        "machine": "loaded" if loaded else "quiet"}), flush=True)
    print(f"efficiency {ideal / measured:.3f} (goal >= 0.97) on a {'loaded' if loaded else 'quiet'} machine")


if __name__ == "__main__":
    main()
