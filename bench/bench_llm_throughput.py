"""Throughput of LLMClient.run_batch versus a bare asyncio.gather of raw HTTP requests.

Both run against the fault-free test server (``python -m tests.llm_server``, a separate process; 50 ms latency,
64 slots) at the same concurrency, where the client's CPU sets the pace. Prints requests/s for each, their
ratio, and what the LLM layer (openai client, response store, parsing) costs per request beyond bare HTTP, in
microseconds of this process's CPU and of wall time.

    .venv/bin/python bench/bench_llm_throughput.py [--sizes 1000 10000] [--latency 0.05] [--slots 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

import httpx2
from pydantic import BaseModel, Field

from llm_runtime import LLMClient, LLMConfig, LLMRequest
from llm_runtime.parsing import response_format


class Answer(BaseModel):
    hours: int = Field(ge=0, le=100)
    reason: str = Field(max_length=80)


def start_server(latency: float, slots: int, *options: str) -> tuple[subprocess.Popen, str]:
    """The test server in its own process (so its CPU is not the client's); ``options``: more of its flags."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "tests.llm_server", "--port", "0", "--latency", str(latency),
                             "--slots", str(slots), *options], stdout=subprocess.PIPE, text=True, cwd=root)
    line = proc.stdout.readline()
    if not line.startswith("LISTENING "):
        proc.kill()
        raise RuntimeError(f"the test server did not start: {line!r}")
    return proc, line.split()[1]


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot, from /proc/stat (Linux)."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU time of another process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def messages(i: int) -> list[dict]:
    return [{"role": "system", "content": "You are a worker. Answer in JSON."},
            {"role": "user", "content": f"Agent {i}: how many hours will you work this year?"}]


async def bare(base_url: str, n: int, concurrency: int) -> float:
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    rf = response_format(Answer, "json_schema")
    async with httpx2.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:
        async def one(i: int) -> dict:
            async with sem:
                r = await http.post("/chat/completions", json={"model": "fault-model", "messages": messages(i),
                                                               "response_format": rf, "max_tokens": 256})
                return r.json()

        start = time.perf_counter()
        out = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    assert len(out) == n and all("choices" in o for o in out)
    return elapsed


def ours(client: LLMClient, n: int, tag: str) -> tuple[float, dict]:
    """One batch of ``n`` new requests through a running client (as a model uses it, step after step)."""
    reqs = [LLMRequest(key=(tag, i), messages=messages(i), schema=Answer) for i in range(n)]
    start = time.perf_counter()
    results = client.run_batch(reqs)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), client.accounting.to_dict()["failures"]
    return elapsed, client.accounting.to_dict()


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each; the best of each counts")
    ns = ap.parse_args()
    proc, base_url = start_server(ns.latency, ns.slots)
    try:
        with tempfile.TemporaryDirectory() as tmp, LLMClient(LLMConfig(
                base_urls=(base_url,), model="fault-model", concurrency=ns.concurrency,
                store_path=os.path.join(tmp, "store.sqlite"))) as client:
            asyncio.run(bare(base_url, 300, ns.concurrency))  # warm up both sides
            ours(client, 300, "warm")
            for n in ns.sizes:
                bare_runs, our_runs = [], []
                for r in range(ns.repeats):  # interleaved, so load on the machine hits both alike
                    c0 = cpu_seconds()
                    elapsed = asyncio.run(bare(base_url, n, ns.concurrency))
                    bare_runs.append((elapsed, cpu_seconds() - c0))
                    c0 = cpu_seconds()
                    elapsed, acc = ours(client, n, f"n{n}r{r}")
                    our_runs.append((elapsed, cpu_seconds() - c0, acc))
                bare_s, bare_cpu = min(bare_runs)
                ours_s, ours_cpu, acc = min(our_runs, key=lambda x: x[0])
                row = {"requests": n, "bare_req_per_s": round(n / bare_s, 1), "ours_req_per_s": round(n / ours_s, 1),
                       "ratio": round(bare_s / ours_s, 3), "ideal_req_per_s": round(ns.slots / ns.latency, 1),
                       "bare_cpu_us_per_request": round(bare_cpu / n * 1e6),
                       "ours_cpu_us_per_request": round(ours_cpu / n * 1e6),
                       "client_overhead_cpu_us_per_request": round((ours_cpu - bare_cpu) / n * 1e6),
                       "client_overhead_wall_us_per_request": round((ours_s - bare_s) / n * 1e6, 1),
                       "ratios_per_run": [round(b[0] / o[0], 3) for b, o in zip(bare_runs, our_runs)],
                       "p50_latency_ms": round(acc["latency_s"]["p50"] * 1000, 1)}
                print(json.dumps(row), flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
