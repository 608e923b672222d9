"""LLM layer: one OpenAI-compatible path (embedded offline model by default), persisted responses, fault tolerance.

    from llm import LLMClient, LLMConfig, LLMRequest
    with LLMClient(LLMConfig(store_path="results/llm.sqlite")) as client:
        results = client.run_batch([LLMRequest(key=("run1", 0, "work", 7), messages=msgs, schema=Answer)])
"""

from .accounting import Accounting
from .client import LLMClient
from .config import BACKENDS, STORE_MODES, Backend, LLMConfig, resolve_backend
from .errors import LLMConfigError, ReplayMissError
from .records import Failure, FailureKind, LLMRequest, LLMResult, RequestStream, Usage
from .store import ResponseStore


def __getattr__(name: str):
    if name == "FaultServer":  # imported on use, so `python -m llm.fault_server` runs a fresh module
        from .fault_server import FaultServer

        return FaultServer
    raise AttributeError(f"module 'llm' has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "STORE_MODES",
    "Accounting",
    "Backend",
    "Failure",
    "FailureKind",
    "FaultServer",
    "LLMClient",
    "LLMConfig",
    "LLMConfigError",
    "LLMRequest",
    "LLMResult",
    "ReplayMissError",
    "RequestStream",
    "ResponseStore",
    "Usage",
    "resolve_backend",
]
