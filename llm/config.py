"""Configuration of the LLM layer and resolution of the backend (OpenAI-compatible server or embedded model)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlparse

from .errors import LLMConfigError

BACKENDS = ("auto", "openai", "embedded")
STORE_MODES = ("record", "replay", "off")
API_KEY_ENV = ("OPENAI_API_KEY", "LLM_API_KEY")
OPENAI_URL = "https://api.openai.com/v1"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class LLMConfig:
    """Settings; the API key is never a field: it is read from ``OPENAI_API_KEY`` or ``LLM_API_KEY``."""

    backend: str = "auto"
    base_urls: tuple[str, ...] = ()
    model: str | None = None
    concurrency: int = 16
    timeout_s: float = 60.0
    max_retries: int = 2
    max_reasks: int = 2
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int = 256
    store_path: str | None = "results/llm_responses.sqlite"
    store_mode: str = "record"
    embedded_model_path: str | None = None
    # One slot: on small CPUs llama.cpp's parallel slots add no throughput, only waiting (2 vCPU: 8 worker prompts
    # in 12.7 s with 1 slot, 12.6 s with 4; 13 s against 66 s with other jobs running); the client sends at most
    # `slots` requests at once.
    embedded_slots: int = 1
    embedded_ctx_per_slot: int = 8192
    embedded_threads: int | None = None
    # worker processes for large batches (None: up to 4, one per core, except for the embedded model)
    processes: int | None = None
    check_server: bool = True
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.base_urls, str):
            object.__setattr__(self, "base_urls", tuple(u for u in self.base_urls.split(",") if u))
        else:
            object.__setattr__(self, "base_urls", tuple(self.base_urls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> LLMConfig:
        """Settings from ``LLM_*`` variables; keyword overrides (e.g. command-line flags) win."""
        env = os.environ if env is None else env
        read = {"backend": ("LLM_BACKEND", str), "base_urls": ("LLM_BASE_URL", str), "model": ("LLM_MODEL", str),
                "concurrency": ("LLM_CONCURRENCY", int), "timeout_s": ("LLM_TIMEOUT", float),
                "max_retries": ("LLM_MAX_RETRIES", int), "store_path": ("LLM_STORE", str),
                "store_mode": ("LLM_STORE_MODE", str), "embedded_model_path": ("LLM_EMBEDDED_MODEL", str),
                "embedded_slots": ("LLM_EMBEDDED_SLOTS", int), "embedded_threads": ("LLM_EMBEDDED_THREADS", int),
                "processes": ("LLM_PROCESSES", int)}
        values = {}
        for name, (var, conv) in read.items():
            if env.get(var):
                try:
                    values[name] = conv(env[var])
                except ValueError:
                    raise LLMConfigError(f"{name} (${var})", f"{env[var]!r} is not a {conv.__name__}",
                                         f"a {conv.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes) -> LLMConfig:
        return replace(self, **changes)

    def validate(self) -> None:
        """Raise LLMConfigError for the first invalid field."""
        _choice("backend", self.backend, BACKENDS)
        _choice("store_mode", self.store_mode, STORE_MODES)
        for url in self.base_urls:
            check_url(url)
        _positive_int("concurrency", self.concurrency)
        _positive_int("embedded_slots", self.embedded_slots)
        _positive_int("embedded_ctx_per_slot", self.embedded_ctx_per_slot)
        _positive_int("max_tokens", self.max_tokens)
        if self.processes is not None:
            _positive_int("processes", self.processes)
        if self.embedded_threads is not None:
            _positive_int("embedded_threads", self.embedded_threads)
        for name in ("max_retries", "max_reasks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise LLMConfigError(name, f"{value!r} is invalid", "an integer >= 0")
        for name in ("timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise LLMConfigError(name, f"{value!r} is invalid", "a number of seconds > 0")
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 2:
            raise LLMConfigError("temperature", f"{self.temperature!r} is invalid", "a number in [0, 2]")
        if self.store_mode != "off" and not self.store_path:
            raise LLMConfigError("store_path", f"missing for store_mode {self.store_mode!r}",
                                 "a file path, or store_mode 'off'")

    def public_dict(self) -> dict:
        """The settings as a dict for result files (holds no secret)."""
        return asdict(self)


@dataclass(frozen=True)
class Backend:
    """Where requests go: ``kind`` is 'openai' (any compatible server) or 'embedded'."""

    kind: str
    base_urls: tuple[str, ...] = ()
    model: str | None = None
    api_key: str = field(default="", repr=False)
    model_path: str | None = None


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise LLMConfigError(name, f"unknown value {value!r}", " | ".join(allowed))


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise LLMConfigError(name, f"{value!r} is invalid", "an integer >= 1")


def check_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or " " in url:
        raise LLMConfigError("base_url", f"{url!r} is not a valid URL", "http(s)://host[:port]/v1")
    try:
        _ = parsed.port  # raises for a port that is not a number
    except ValueError:
        raise LLMConfigError("base_url", f"{url!r} has an invalid port", "http(s)://host[:port]/v1") from None


def api_key_from_env(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return next((env[v] for v in API_KEY_ENV if env.get(v)), None)


def resolve_backend(config: LLMConfig, env: Mapping[str, str] | None = None) -> Backend:
    """Pick the backend. ``auto``: explicit settings (base URL, model, API key) win, else the embedded model."""
    env = os.environ if env is None else env
    config.validate()
    key = api_key_from_env(env)
    kind = config.backend
    if kind == "auto":
        explicit = config.base_urls or config.model or env.get("LLM_BASE_URL") or env.get("LLM_MODEL") or key
        kind = "openai" if explicit else "embedded"
    if kind == "embedded":
        from .embedded import find_model_file

        return Backend("embedded", model_path=find_model_file(config.embedded_model_path, env))
    urls = config.base_urls or tuple(u for u in env.get("LLM_BASE_URL", "").split(",") if u) or (OPENAI_URL,)
    for url in urls:
        check_url(url)
    model = config.model or env.get("LLM_MODEL") or (OPENAI_DEFAULT_MODEL if urls == (OPENAI_URL,) else None)
    if urls == (OPENAI_URL,) and not key:
        raise LLMConfigError("api_key", "no key for api.openai.com",
                             "set OPENAI_API_KEY or LLM_API_KEY, or set base_urls / LLM_BASE_URL")
    return Backend("openai", base_urls=urls, model=model, api_key=key or "not-needed")
