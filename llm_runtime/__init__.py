"""LLM layer: one OpenAI-compatible path (embedded offline model by default), persisted responses, fault tolerance.

    from llm_runtime import LLMClient, LLMConfig, LLMRequest
    with LLMClient(LLMConfig(store_path="results/llm.sqlite")) as client:
        results = client.run_batch([LLMRequest(key=("run1", 0, "work", 7), messages=msgs, schema=Answer)])

Names are imported when first used, so that code needing only requests or errors does not load the openai client.
"""

import importlib

_WHERE = {"Accounting": "accounting", "LLMClient": "client", "BACKENDS": "config", "STORE_MODES": "config",
          "Backend": "config", "LLMConfig": "config", "redact_url": "config", "resolve_backend": "config",
          "ReplayMissError": "errors", "ServerStopped": "errors", "StoreCorruptError": "errors",
          "StoreError": "errors", "Failure": "records", "FailureKind": "records", "LLMRequest": "records",
          "LLMResult": "records", "RequestStream": "records", "Usage": "records", "ResponseStore": "store"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'llm_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
