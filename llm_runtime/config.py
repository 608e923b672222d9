"""Settings of the LLM layer, declared once with pydantic-settings, and resolution of the backend.

``LLMConfig(**settings)`` takes each setting from its keyword, else its ``LLM_*`` environment variable, else its
default; a bad value raises :class:`validation.ParameterError` naming the setting (and its variable, where it came
from there). The model's LLM parameters (``model.params``) and ``run.py``'s flags reuse these declarations.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from validation import ParameterError, choice, parameter_error

BACKENDS = ("auto", "openai", "embedded")
STORE_MODES = ("record", "replay", "off")
API_KEY_ENV = ("OPENAI_API_KEY", "LLM_API_KEY")
OPENAI_URL = "https://api.openai.com/v1"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
MAX_CONCURRENCY = 4096
MAX_ANSWER_BYTES = 64 * 2**20
URL_FORM = "http(s)://host[:port]/v1, several comma-separated, the key in OPENAI_API_KEY or LLM_API_KEY"


def _urls(value: Any) -> Any:
    """Comma-separated text (a flag, a variable) or a list of URLs, as a tuple of URLs (spaces around each dropped;
    other white space stays, for the check to refuse)."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list | tuple):
        return tuple(url.strip(" ") for url in value if url.strip(" ")) \
            if all(isinstance(url, str) for url in value) else value
    return value


def _checked_urls(urls: tuple[str, ...] | None) -> tuple[str, ...] | None:
    for url in urls or ():
        check_url(url)
    return urls


def _env(name: str, description: str, **constraints) -> Any:
    return Field(validation_alias=name, description=description, **constraints)


def _seconds(name: str, description: str, high: float) -> Any:
    """A finite number of seconds in (0, high]: inf and nan would mean no limit at all, or an overflow."""
    return Field(validation_alias=name, description=description, gt=0, le=high, allow_inf_nan=False,
                 json_schema_extra={"allowed": f"a finite number of seconds in (0, {high:,g}]"})


class LLMConfig(BaseSettings):
    """Settings; the API key is never one: it is read from ``OPENAI_API_KEY`` or ``LLM_API_KEY``.

    ``concurrency`` is the most requests in flight to each server: above an inference server's parallel slots
    (vLLM's default is 256), so the server's own queue never runs dry while answers travel back. A server that
    answers 429 gets fewer for a while (see ``pool.EndpointPool``).
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", strict=True, validate_by_name=True,
                                      validate_by_alias=True, env_ignore_empty=True, case_sensitive=True)

    backend: Annotated[str, choice(BACKENDS, "backend"), _env(
        "LLM_BACKEND", "auto (a server when a base URL or an API key is set, else the embedded model), openai, "
        "embedded")] = "auto"
    base_urls: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_urls), AfterValidator(_checked_urls),
                         _env("LLM_BASE_URL", "OpenAI-compatible base URL(s), comma-separated",
                              json_schema_extra={"allowed": URL_FORM})] = ()
    model: Annotated[str | None, _env("LLM_MODEL", "model name on the server",
                                      min_length=1, max_length=200)] = None
    concurrency: Annotated[int, _env("LLM_CONCURRENCY", "requests in flight to each server at once",
                                     ge=1, le=MAX_CONCURRENCY)] = 512
    timeout_s: Annotated[float, _seconds("LLM_TIMEOUT", "seconds one request may wait for its answer",
                                         3600)] = 60.0
    max_retries: Annotated[int, _env("LLM_MAX_RETRIES", "retries of a request that failed in transit",
                                     ge=0, le=100)] = 2
    max_reasks: Annotated[int, _env("LLM_MAX_REASKS", "re-asks of an answer outside its schema",
                                    ge=0, le=100)] = 2
    temperature: Annotated[float, _env("LLM_TEMPERATURE", "sampling temperature", ge=0, le=2,
                                       allow_inf_nan=False)] = 0.0
    seed: Annotated[int | None, _env("LLM_SEED", "sampling seed sent with each request", ge=0,
                                     le=2**63 - 1)] = 0
    max_tokens: Annotated[int, _env("LLM_MAX_TOKENS", "most tokens of one answer", ge=1, le=1_000_000)] = 256
    store_path: Annotated[str | None, _env("LLM_STORE", "SQLite file of the answers", min_length=1,
                                           max_length=4096)] = "results/llm-responses.sqlite"
    store_mode: Annotated[str, choice(STORE_MODES, "store mode"), _env(
        "LLM_STORE_MODE", "record (ask, keeping every answer), replay (stored answers only) or off")] = "record"
    embedded_model_path: Annotated[str | None, _env("LLM_EMBEDDED_MODEL", "GGUF file of the embedded model",
                                                    min_length=1, max_length=4096)] = None
    # llama.cpp's parallel slots add little on a few CPU cores and make each answer wait longer
    embedded_slots: Annotated[int, _env("LLM_EMBEDDED_SLOTS", "requests the embedded model answers at once",
                                        ge=1, le=1024)] = 1
    embedded_ctx_per_slot: Annotated[int, _env("LLM_EMBEDDED_CTX", "context tokens of each embedded slot",
                                               ge=256, le=1_048_576)] = 8192
    embedded_threads: Annotated[int | None, _env("LLM_EMBEDDED_THREADS", "CPU threads of the embedded model",
                                                 ge=1, le=1024)] = None
    check_server: Annotated[bool, _env("LLM_CHECK_SERVER", "ask each server for its models before any work")] = True
    connect_timeout_s: Annotated[float, _seconds("LLM_CONNECT_TIMEOUT", "seconds to connect to a server", 600)] = 5.0
    # a whole exchange, body included: a server that drips its answer cannot hold a request past this
    deadline_s: Annotated[float, _seconds("LLM_DEADLINE", "seconds a whole exchange may take, body included",
                                          86_400)] = 300.0
    # an answer is a few kB; beyond this (on the wire or decompressed) it is refused and the connection dropped
    max_answer_bytes: Annotated[int, _env("LLM_MAX_ANSWER_BYTES", "largest answer accepted, in bytes",
                                          ge=1024, le=MAX_ANSWER_BYTES)] = 1_000_000
    # the most one request may wait out 429s (as long as each asks): beyond it the run stops, to be resumed
    rate_limit_wait_s: Annotated[float, _seconds("LLM_RATE_LIMIT_WAIT", "seconds one request may wait out 429s",
                                                 86_400)] = 900.0

    _given: frozenset[str] = PrivateAttr(frozenset())

    def __init__(self, **settings: Any) -> None:
        try:
            super().__init__(**settings)
        except ValidationError as error:
            raise parameter_error(error, type(self), name=_label) from None
        self._given = frozenset(settings)

    @model_validator(mode="after")
    def _store_needs_a_path(self) -> LLMConfig:
        if self.store_mode != "off" and not self.store_path:
            raise ParameterError("store_path", f"missing for store_mode {self.store_mode!r}",
                                 "a file path, or store_mode 'off'")
        return self

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMConfig:
        """Settings from ``LLM_*`` variables, where an override (e.g. a flag) is None or not given."""
        return cls(**{name: value for name, value in overrides.items() if value is not None})

    @classmethod
    def variable(cls, name: str) -> str:
        """The environment variable of setting ``name``."""
        return cls.model_fields[name].validation_alias

    def named(self, name: str) -> str:
        """Setting ``name`` as an error names it: with its variable when its value came from the environment."""
        variable = self.variable(name)
        return f"{name} (${variable})" if name not in self._given and os.environ.get(variable) else name

    def public_dict(self) -> dict:
        """The settings as a dict for result files (holds no secret)."""
        return self.model_dump() | {"base_urls": [redact_url(u) for u in self.base_urls]}


def _label(field: str) -> str:
    """A setting as an error names it: by name, and by variable when its value came from the environment."""
    names = {info.validation_alias: name for name, info in LLMConfig.model_fields.items()}
    return f"{names[field]} (${field})" if field in names else field


@dataclass(frozen=True)
class Backend:
    """Where requests go: ``kind`` is 'openai' (any compatible server) or 'embedded'."""

    kind: str
    base_urls: tuple[str, ...] = ()
    model: str | None = None
    api_key: str = field(default="", repr=False)
    model_path: str | None = None


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


def check_url(url: str, field: str = "base_urls", env: Mapping[str, str] | None = None) -> None:
    """A base URL the openai client can use; credentials (user-info, a query, a key-like path segment) are refused:
    they belong in the key, which is never written anywhere."""
    shown = redact_url(url)
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in url):
        raise ParameterError(field, f"{shown!r} holds a line break or another control character", URL_FORM)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number or out of range
    except ValueError:
        raise ParameterError(field, f"{shown!r} is not a valid URL", URL_FORM) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        raise ParameterError(field, f"{shown!r} is not a valid URL", URL_FORM)
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ParameterError(field, f"{shown!r} carries credentials, a query or a fragment", URL_FORM)
    keys = [key for key in (api_key_from_env(env),) if key and len(key) >= MIN_SECRET]
    if any(_key_like(segment, keys) for segment in parts.path.split("/")):
        raise ParameterError(field, f"{parts.scheme}://{parts.netloc}/... carries what looks like a key in its path",
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


def server_named(config: LLMConfig, env: Mapping[str, str] | None = None) -> bool:
    """Whether requests go to a server rather than the embedded model: ``backend`` says so, or (``auto``) a URL
    or an API key is set. A model name alone names no server."""
    if config.backend != "auto":
        return config.backend == "openai"
    return bool(config.base_urls or api_key_from_env(env))


def resolve_backend(config: LLMConfig, env: Mapping[str, str] | None = None) -> Backend:
    """Pick the backend. ``auto``: a base URL or an API key names a server, else the embedded model."""
    key = api_key_from_env(env)
    if not server_named(config, env):
        from .embedded import find_model_file, model_name

        path = find_model_file(config.embedded_model_path)
        if config.model and config.model != model_name(path):
            raise ParameterError(config.named("model"), f"{config.model!r} is not the embedded model "
                                 f"({model_name(path)})", f"{model_name(path)}, or a server that serves "
                                 f"{config.model!r}: set base_urls ($LLM_BASE_URL) or OPENAI_API_KEY")
        return Backend("embedded", model=model_name(path), model_path=path)
    urls = config.base_urls or (OPENAI_URL,)
    model = config.model or (OPENAI_DEFAULT_MODEL if urls == (OPENAI_URL,) else None)
    if urls == (OPENAI_URL,) and not key and config.store_mode != "replay":  # a replay sends nothing
        raise ParameterError("api_key", "no key for api.openai.com",
                             "set OPENAI_API_KEY or LLM_API_KEY, or set base_urls ($LLM_BASE_URL)")
    return Backend("openai", base_urls=urls, model=model, api_key=key or "not-needed")

