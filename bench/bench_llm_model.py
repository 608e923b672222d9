"""One model step with 2,000 LLM workers, in one client process with the LLM layer's default settings.

The test server (``python -m tests.llm_server``, a process of its own) answers each request after 1 s on one of
256 slots, so a step's ideal time is ceil(2,000 / 256) x 1 s = 8 s. Prints the ideal, the measured step time
(the median of the timed steps), efficiency = ideal / measured, the client process's CPU per request (prompts,
HTTP, parsing and the response store together), and whether the machine was quiet or loaded (loaded: other
processes took 10 % or more of the CPU while the steps ran).

    .venv/bin/python bench/bench_llm_model.py [--workers 2000] [--latency 1] [--slots 256] [--steps 3]
    .venv/bin/python bench/bench_llm_model.py --servers 2       # two servers: ideal ceil(2,000 / 512) x 1 s = 4 s
    .venv/bin/python bench/bench_llm_model.py --workers 1000000 --archetypes 100   # one request per archetype

With ``--archetypes K`` each step sends K requests (one per archetype) for all the workers; the ideal is then
ceil(K / slots) x latency, and the time beyond it is what the step costs for the whole population.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time

from bench_llm_throughput import machine_busy_seconds, process_cpu_seconds, start_server

from llm_runtime import LLMClient, LLMConfig
from model.model import EconomyModel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--slots", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--archetypes", type=int, default=0, help="decide per archetype (K clusters); 0 = each worker")
    ap.add_argument("--servers", type=int, default=1, help="test servers, each with --slots slots")
    ns = ap.parse_args()
    servers = [start_server(ns.latency, ns.slots) for _ in range(ns.servers)]
    try:
        with tempfile.TemporaryDirectory() as tmp, LLMClient(LLMConfig(
                base_urls=tuple(url for _, url in servers), model="fault-model",
                store_path=os.path.join(tmp, "store.sqlite"))) as llm:
            build = time.perf_counter()
            model = EconomyModel(workers=ns.workers, worker_mind="llm", planner="fixed", llm=llm, agent_interval=0,
                                 tax_year_length=1000, max_steps=1000, archetypes=ns.archetypes, rng=7)
            build = time.perf_counter() - build
            model.step()  # warm-up: connections opened
            steps, cpu, server_cpu, busy = [], 0.0, 0.0, 0.0
            for _ in range(ns.steps):
                c0, s0, b0 = os.times(), sum(process_cpu_seconds(p.pid) for p, _ in servers), machine_busy_seconds()
                start = time.perf_counter()
                model.step()
                steps.append(time.perf_counter() - start)
                c1 = os.times()
                cpu += c1.user + c1.system - c0.user - c0.system
                server_cpu += sum(process_cpu_seconds(p.pid) for p, _ in servers) - s0
                busy += machine_busy_seconds() - b0
            acc = llm.accounting.to_dict()
            model.close()
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(10)
    deciders = ns.archetypes or ns.workers
    requests = deciders * ns.steps
    ideal = math.ceil(deciders / (ns.slots * ns.servers)) * ns.latency
    measured = statistics.median(steps)
    # the cores' time taken by other processes while the steps ran (the load average lags by a minute)
    others = max(0.0, busy - cpu - server_cpu) / (sum(steps) * (os.cpu_count() or 1))
    loaded = others >= 0.1
    print(json.dumps({
        "bench": "llm_workers_step", "workers": ns.workers, "archetypes": ns.archetypes, "build_s": round(build, 1),
        "latency_s": ns.latency, "slots": ns.slots, "servers": ns.servers, "beyond_ideal_s": round(measured - ideal, 3),
        "concurrency_per_server": LLMConfig().concurrency, "ideal_s": round(ideal, 3), "measured_s": round(measured, 3),
        "efficiency": round(ideal / measured, 3), "steps_s": [round(s, 3) for s in steps],
        "client_cpu_us_per_request": round(cpu / requests * 1e6),
        "server_cpu_us_per_request": round(server_cpu / requests * 1e6),
        "failures": acc["failures"], "cores": os.cpu_count(),
        "other_processes_share_of_cpu": round(others, 2),
        "machine": "loaded" if loaded else "quiet"}), flush=True)
    goal = 0.9 if ns.servers > 1 else 0.95
    print(f"efficiency {ideal / measured:.3f} (goal >= {goal}) on a {'loaded' if loaded else 'quiet'} machine")


if __name__ == "__main__":
    main()
