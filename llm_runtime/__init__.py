"""LLM layer: one OpenAI-compatible path (embedded offline model by default), persisted responses, fault tolerance.

    from llm_runtime import LLMClient, LLMConfig, LLMRequest
    with LLMClient(LLMConfig(store_path="results/llm.sqlite")) as client:
        results = client.run_batch([LLMRequest(key=("run1", 0, "work", 7), messages=msgs, schema=Answer)])
"""

from .accounting import Accounting
from .client import LLMClient
from .config import BACKENDS, STORE_MODES, Backend, LLMConfig, redact_url, resolve_backend
from .errors import LLMConfigError, ReplayMissError
from .records import Failure, FailureKind, LLMRequest, LLMResult, RequestStream, Usage
from .store import ResponseStore

__all__ = [
    "BACKENDS",
    "STORE_MODES",
    "Accounting",
    "Backend",
    "Failure",
    "FailureKind",
    "LLMClient",
    "LLMConfig",
    "LLMConfigError",
    "LLMRequest",
    "LLMResult",
    "ReplayMissError",
    "RequestStream",
    "ResponseStore",
    "Usage",
    "redact_url",
    "resolve_backend",
]
