"""LLMClient.run_batch under faults: throughput, recovered share, faults and failures by kind.

Runs against the test server (``python -m tests.llm_server``, a separate process) with faults of every kind.

    .venv/bin/python bench/bench_llm_faults.py [--requests 5000] [--fault-rate 0.3] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.request

from bench_llm_throughput import Answer, messages, start_server

from llm_runtime import LLMClient, LLMConfig, LLMRequest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--fault-rate", type=float, default=0.3)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=1.0, help="client timeout, s (the 'timeout' fault waits it out)")
    ns = ap.parse_args()
    proc, base_url = start_server(ns.latency, ns.concurrency, "--fault-rate", str(ns.fault_rate), "--seed", "1")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = LLMConfig(base_urls=(base_url,), model="fault-model", concurrency=ns.concurrency,
                            timeout_s=ns.timeout, store_path=os.path.join(tmp, "faults.sqlite"))
            with LLMClient(cfg) as client:
                reqs = [LLMRequest(key=("faults", i), messages=messages(i), schema=Answer)
                        for i in range(ns.requests)]
                start = time.perf_counter()
                results = client.run_batch(reqs)
                elapsed = time.perf_counter() - start
                acc = client.accounting.to_dict()
            with urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/stats", timeout=10) as response:
                # a dropped connection is what the client sees of the server's "disconnect"
                injected = {"connection_reset" if kind == "disconnect" else kind: n
                            for kind, n in json.load(response)["by_kind"].items()}
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps({"requests": ns.requests, "fault_rate": ns.fault_rate, "seconds": round(elapsed, 2),
                      "req_per_s": round(ns.requests / elapsed, 1),
                      "validated_share": round(sum(r.ok for r in results) / ns.requests, 4),
                      "sends": acc["sends"], "retries": acc["retries"], "reasks": acc["reasks"],
                      "faults": acc["faults"], "injected": injected,
                      "injected_equals_counted": injected == acc["faults"], "failures": acc["failures"],
                      "latency_ms": {k: round(v * 1000, 1) for k, v in acc["latency_s"].items()}}, indent=1))


if __name__ == "__main__":
    main()
