"""Configuration of the LLM layer and resolution of the backend (OpenAI-compatible server or embedded model)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from .errors import LLMConfigError

BACKENDS = ("auto", "openai", "embedded")
STORE_MODES = ("record", "replay", "off")
API_KEY_ENV = ("OPENAI_API_KEY", "LLM_API_KEY")
OPENAI_URL = "https://api.openai.com/v1"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
MAX_CONCURRENCY = 4096
URL_FORM = "http(s)://host[:port]/v1, the key in OPENAI_API_KEY or LLM_API_KEY"
_ENV = {"backend": ("LLM_BACKEND", str), "base_urls": ("LLM_BASE_URL", str), "model": ("LLM_MODEL", str),
        "concurrency": ("LLM_CONCURRENCY", int), "timeout_s": ("LLM_TIMEOUT", float),
        "max_retries": ("LLM_MAX_RETRIES", int), "store_path": ("LLM_STORE", str),
        "store_mode": ("LLM_STORE_MODE", str), "embedded_model_path": ("LLM_EMBEDDED_MODEL", str),
        "embedded_slots": ("LLM_EMBEDDED_SLOTS", int), "embedded_threads": ("LLM_EMBEDDED_THREADS", int)}


@dataclass(frozen=True)
class LLMConfig:
    """Settings; the API key is never a field: it is read from ``OPENAI_API_KEY`` or ``LLM_API_KEY``.

    ``concurrency`` is the most requests in flight: above an inference server's parallel slots (vLLM's
    default is 256), so the server's own queue never runs dry while answers travel back.
    """

    backend: str = "auto"
    base_urls: tuple[str, ...] = ()
    model: str | None = None
    concurrency: int = 512
    timeout_s: float = 60.0
    max_retries: int = 2
    max_reasks: int = 2
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int = 256
    store_path: str | None = "results/llm_responses.sqlite"
    store_mode: str = "record"
    embedded_model_path: str | None = None
    # llama.cpp's parallel slots add little on a few CPU cores and make each answer wait longer
    embedded_slots: int = 1
    embedded_ctx_per_slot: int = 8192
    embedded_threads: int | None = None
    check_server: bool = True
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        urls = self.base_urls.split(",") if isinstance(self.base_urls, str) else self.base_urls
        object.__setattr__(self, "base_urls", tuple(u.strip() for u in urls if u.strip()))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> LLMConfig:
        """Settings from ``LLM_*`` variables; keyword overrides (e.g. command-line flags) win.

        A bad value read from the environment is an error naming its variable.
        """
        env = os.environ if env is None else env
        values, variables = {}, {}
        for name, (var, conv) in _ENV.items():
            if env.get(var) and overrides.get(name) is None:
                try:
                    values[name] = conv(env[var])
                except ValueError:
                    raise LLMConfigError(f"{name} (${var})", f"{env[var]!r} is not a {conv.__name__}",
                                         f"a {conv.__name__}") from None
                variables[name] = var
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        try:
            config.validate()
        except LLMConfigError as err:
            name = "base_urls" if err.field == "base_url" else err.field
            if name in variables:
                raise LLMConfigError(f"{err.field} (${variables[name]})", err.problem, err.allowed) from None
            raise
        return config

    def validate(self) -> None:
        """Raise LLMConfigError for the first invalid field."""
        _choice("backend", self.backend, BACKENDS)
        _choice("store_mode", self.store_mode, STORE_MODES)
        for url in self.base_urls:
            check_url(url)
        _int_in("concurrency", self.concurrency, 1, MAX_CONCURRENCY)
        for name in ("embedded_slots", "embedded_ctx_per_slot", "max_tokens"):
            _int_in(name, getattr(self, name), 1)
        if self.embedded_threads is not None:
            _int_in("embedded_threads", self.embedded_threads, 1)
        _int_in("max_retries", self.max_retries, 0)
        _int_in("max_reasks", self.max_reasks, 0)
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
        return asdict(self) | {"base_urls": [redact_url(u) for u in self.base_urls]}


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


def _int_in(name: str, value: object, low: int, high: int | None = None) -> None:
    if (not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        raise LLMConfigError(name, f"{value!r} is invalid",
                             f"an integer in {low}..{high}" if high else f"an integer >= {low}")


def redact_url(url: str) -> str:
    """``url`` with any user-info and query hidden: what may be printed, logged or written."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<unparsable URL>"
    return parts._replace(netloc=("***@" if "@" in parts.netloc else "") + host,
                          query="***" if parts.query else "", fragment="").geturl()


def check_url(url: str, field: str = "base_url") -> None:
    """A base URL the openai client can use; credentials and queries are refused (they belong in the key)."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number or out of range
    except ValueError:
        raise LLMConfigError(field, f"{shown!r} is not a valid URL", URL_FORM) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        raise LLMConfigError(field, f"{shown!r} is not a valid URL", URL_FORM)
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise LLMConfigError(field, f"{shown!r} carries credentials, a query or a fragment", URL_FORM)


def api_key_from_env(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return next((env[v] for v in API_KEY_ENV if env.get(v)), None)


def server_named(backend: str | None, base_urls, env: Mapping[str, str] | None = None) -> bool:
    """Whether requests go to a server rather than the embedded model: ``backend`` says so, or (``auto``) a URL
    or an API key is set. A model name alone names no server."""
    env = os.environ if env is None else env
    backend = backend or env.get("LLM_BACKEND") or "auto"
    if backend != "auto":
        return backend == "openai"
    return bool(base_urls or env.get("LLM_BASE_URL") or api_key_from_env(env))


def resolve_backend(config: LLMConfig, env: Mapping[str, str] | None = None) -> Backend:
    """Pick the backend. ``auto``: explicit settings (base URL, model, API key) win, else the embedded model."""
    env = os.environ if env is None else env
    config.validate()
    key = api_key_from_env(env)
    kind = "openai" if server_named(config.backend, config.base_urls, env) else "embedded"
    if kind == "embedded":
        from .embedded import find_model_file, model_name

        path = find_model_file(config.embedded_model_path, env)
        named = config.model or env.get("LLM_MODEL")
        if named and named != model_name(path):
            field = "model" if config.model else "model ($LLM_MODEL)"
            raise LLMConfigError(field, f"{named!r} is not the embedded model ({model_name(path)})",
                                 f"{model_name(path)}, or a server that serves {named!r}: set base_url "
                                 "($LLM_BASE_URL) or OPENAI_API_KEY")
        return Backend("embedded", model=model_name(path), model_path=path)
    urls = config.base_urls
    if not urls:
        urls = tuple(u.strip() for u in env.get("LLM_BASE_URL", "").split(",") if u.strip())
        for url in urls:
            check_url(url, "base_url ($LLM_BASE_URL)")
    urls = urls or (OPENAI_URL,)
    model = config.model or env.get("LLM_MODEL") or (OPENAI_DEFAULT_MODEL if urls == (OPENAI_URL,) else None)
    if urls == (OPENAI_URL,) and not key:
        raise LLMConfigError("api_key", "no key for api.openai.com",
                             "set OPENAI_API_KEY or LLM_API_KEY, or set base_urls / LLM_BASE_URL")
    return Backend("openai", base_urls=urls, model=model, api_key=key or "not-needed")
