"""Configuration of the LLM layer and resolution of the backend (OpenAI-compatible server or embedded model)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from .errors import LLMConfigError

BACKENDS = ("auto", "openai", "embedded")
STORE_MODES = ("record", "replay", "off")
API_KEY_ENV = ("OPENAI_API_KEY", "LLM_API_KEY")
OPENAI_URL = "https://api.openai.com/v1"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
MAX_CONCURRENCY = 4096
MAX_ANSWER_BYTES = 64 * 2**20
SECONDS = {"timeout_s": 3600.0, "connect_timeout_s": 600.0, "deadline_s": 86_400.0,  # upper bounds
           "rate_limit_wait_s": 86_400.0}
URL_FORM = "http(s)://host[:port]/v1, the key in OPENAI_API_KEY or LLM_API_KEY"
_ENV = {"backend": ("LLM_BACKEND", str), "base_urls": ("LLM_BASE_URL", str), "model": ("LLM_MODEL", str),
        "concurrency": ("LLM_CONCURRENCY", int), "timeout_s": ("LLM_TIMEOUT", float),
        "max_retries": ("LLM_MAX_RETRIES", int), "deadline_s": ("LLM_DEADLINE", float),
        "max_answer_bytes": ("LLM_MAX_ANSWER_BYTES", int), "rate_limit_wait_s": ("LLM_RATE_LIMIT_WAIT", float),
        "store_path": ("LLM_STORE", str),
        "store_mode": ("LLM_STORE_MODE", str), "embedded_model_path": ("LLM_EMBEDDED_MODEL", str),
        "embedded_slots": ("LLM_EMBEDDED_SLOTS", int), "embedded_threads": ("LLM_EMBEDDED_THREADS", int)}


@dataclass(frozen=True)
class LLMConfig:
    """Settings; the API key is never a field: it is read from ``OPENAI_API_KEY`` or ``LLM_API_KEY``.

    ``concurrency`` is the most requests in flight to each server: above an inference server's parallel slots
    (vLLM's default is 256), so the server's own queue never runs dry while answers travel back. A server that
    answers 429 gets fewer for a while (see ``pool.EndpointPool``).
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
    store_path: str | None = "results/llm-responses.sqlite"
    store_mode: str = "record"
    embedded_model_path: str | None = None
    # llama.cpp's parallel slots add little on a few CPU cores and make each answer wait longer
    embedded_slots: int = 1
    embedded_ctx_per_slot: int = 8192
    embedded_threads: int | None = None
    check_server: bool = True
    connect_timeout_s: float = 5.0
    # a whole exchange, body included: a server that drips its answer cannot hold a request past this
    deadline_s: float = 300.0
    # an answer is a few kB; beyond this (on the wire or decompressed) it is refused and the connection dropped
    max_answer_bytes: int = 1_000_000
    # the most one request may wait out 429s (as long as each asks): beyond it the run stops, to be resumed
    rate_limit_wait_s: float = 900.0

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
        _int_in("max_answer_bytes", self.max_answer_bytes, 1024, MAX_ANSWER_BYTES)
        for name, high in SECONDS.items():
            _seconds(name, getattr(self, name), high)
        if (not isinstance(self.temperature, (int, float)) or isinstance(self.temperature, bool)
                or not 0 <= self.temperature <= 2):
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


def _seconds(name: str, value: object, high: float) -> None:
    """A finite number of seconds in (0, high]: inf and nan would mean no limit at all, or an overflow."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not 0 < value <= high):
        raise LLMConfigError(name, f"{value!r} is invalid", f"a finite number of seconds in (0, {high:g}]")


def redact_url(url: str) -> str:
    """``url`` with any user-info and query hidden: what may be printed, logged or written."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<unparsable URL>"
    return parts._replace(netloc=("***@" if "@" in parts.netloc else "") + host,
                          query="***" if parts.query else "", fragment="").geturl()


_KEY_PREFIX = re.compile(r"(?:sk|pk|rk|key|token|bearer)[-_]", re.IGNORECASE)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9]{32,}")


def _key_like(segment: str, keys: Iterable[str]) -> bool:
    """A URL path segment that looks like a credential: a known key prefix, a long run of letters and digits,
    or a key from the environment."""
    long_token = _LONG_TOKEN.fullmatch(segment) and re.search(r"\d", segment) and re.search(r"[A-Za-z]", segment)
    return bool(_KEY_PREFIX.match(segment) or long_token or any(key and key in segment for key in keys))


def check_url(url: str, field: str = "base_url", env: Mapping[str, str] | None = None) -> None:
    """A base URL the openai client can use; credentials (user-info, a query, a key-like path segment) are refused:
    they belong in the key, which is never written anywhere."""
    shown = redact_url(url)
    if any(ord(char) < 32 or ord(char) == 127 for char in url):
        raise LLMConfigError(field, f"{shown!r} holds a line break or another control character", URL_FORM)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number or out of range
    except ValueError:
        raise LLMConfigError(field, f"{shown!r} is not a valid URL", URL_FORM) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        raise LLMConfigError(field, f"{shown!r} is not a valid URL", URL_FORM)
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise LLMConfigError(field, f"{shown!r} carries credentials, a query or a fragment", URL_FORM)
    keys = [key for key in (api_key_from_env(env),) if key and len(key) >= MIN_SECRET]
    if any(_key_like(segment, keys) for segment in parts.path.split("/")):
        raise LLMConfigError(field, f"{parts.scheme}://{parts.netloc}/... carries what looks like a key in its path",
                             URL_FORM)


MIN_SECRET = 8  # shorter "keys" (e.g. a placeholder for a local server) are not secrets worth hiding


def secrets_of(api_key: str | None) -> tuple[str, ...]:
    """The values that must never be written: the key the client sends (its ``Authorization`` header value)."""
    return (f"Bearer {api_key}", api_key) if api_key and len(api_key) >= MIN_SECRET else ()


def redact(text: str | None, secrets: Iterable[str]) -> str | None:
    """``text`` with every secret replaced, before it is stored, logged or printed."""
    if text is None:
        return None
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


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
    if urls == (OPENAI_URL,) and not key and config.store_mode != "replay":  # a replay sends nothing
        raise LLMConfigError("api_key", "no key for api.openai.com",
                             "set OPENAI_API_KEY or LLM_API_KEY, or set base_urls / LLM_BASE_URL")
    return Backend("openai", base_urls=urls, model=model, api_key=key or "not-needed")
