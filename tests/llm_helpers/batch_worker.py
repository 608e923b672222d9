"""Runs one batch in its own process (for kill -9 tests).

    python -m tests.llm_helpers.batch_worker BASE_URL STORE N OUT [RUN]
"""

import json
import sys

from llm_runtime import LLMClient, LLMConfig
from tests.llm_helpers.common import outcome, work_requests


def main() -> None:
    base_url, store, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    run = sys.argv[5] if len(sys.argv) > 5 else "run"
    config = LLMConfig(base_urls=(base_url,), model="fault-model", store_path=store, concurrency=16)
    with LLMClient(config) as client:
        results = client.run_batch(work_requests(n, run))
        with open(out, "w") as fh:
            json.dump({"results": [outcome(r) for r in results], "accounting": client.accounting.to_dict()}, fh)


if __name__ == "__main__":
    main()
