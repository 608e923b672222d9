"""Bad configuration fails at start-up with one clear line; backend selection."""

from __future__ import annotations

import socket

import pytest

from llm_runtime import LLMClient, LLMConfig, LLMConfigError, resolve_backend
from llm_runtime.config import OPENAI_URL, redact_url
from tests.llm_server import FaultServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_error(config: LLMConfig, env: dict | None = None) -> LLMConfigError:
    with pytest.raises(LLMConfigError) as info:
        LLMClient(config, env=env or {})
    message = str(info.value)
    assert "\n" not in message and message.startswith("LLM config: ")
    assert "allowed: " in message
    return info.value


@pytest.mark.parametrize("config,field,allowed", [
    (LLMConfig(backend="gpt5-magic", store_mode="off"), "backend", "auto | openai | embedded"),
    (LLMConfig(base_urls=("localhost:8000",), store_mode="off"), "base_url", "http(s)://"),
    (LLMConfig(base_urls=("http://",), store_mode="off"), "base_url", "http(s)://"),
    (LLMConfig(base_urls=("http://127.0.0.1:notaport/v1",), store_mode="off"), "base_url", "http(s)://"),
    (LLMConfig(base_urls=("http://[::1/v1",), store_mode="off"), "base_url", "http(s)://"),
    (LLMConfig(base_urls=("http://user:pass@127.0.0.1:8000/v1",), store_mode="off"), "base_url", "http(s)://"),
    (LLMConfig(base_urls=("http://127.0.0.1:8000/v1?key=abc",), store_mode="off"), "base_url", "http(s)://"),
    (LLMConfig(concurrency=0, store_mode="off"), "concurrency", "an integer in 1..4096"),
    (LLMConfig(concurrency=-3, store_mode="off"), "concurrency", "an integer in 1..4096"),
    (LLMConfig(concurrency=1_000_000, store_mode="off"), "concurrency", "an integer in 1..4096"),
    (LLMConfig(embedded_threads=0, store_mode="off"), "embedded_threads", "an integer >= 1"),
    (LLMConfig(store_mode="sometimes", store_path="x"), "store_mode", "record | replay | off"),
    (LLMConfig(store_mode="record", store_path=None), "store_path", "a file path"),
    (LLMConfig(max_retries=-1, store_mode="off"), "max_retries", "an integer >= 0"),
    (LLMConfig(timeout_s=0, store_mode="off"), "timeout_s", "a finite number of seconds in (0, 3600]"),
    (LLMConfig(temperature=5, store_mode="off"), "temperature", "[0, 2]"),
])
def test_invalid_fields_are_named_with_allowed_values(config, field, allowed):
    err = start_error(config)
    assert err.field == field and allowed in str(err)


def test_unwritable_store_is_a_startup_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = start_error(LLMConfig(base_urls=("http://127.0.0.1:9/v1",), model="m",
                                store_path=str(blocker / "store.sqlite")))
    assert err.field == "store_path"


def test_unreachable_server_is_a_startup_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    err = start_error(LLMConfig(base_urls=(url,), model="m", store_mode="off", connect_timeout_s=1))
    assert err.field == "base_url" and url in str(err)


def test_missing_model_file_is_a_startup_error(tmp_path):
    missing = tmp_path / "nope.gguf"
    err = start_error(LLMConfig(backend="embedded", embedded_model_path=str(missing), store_mode="off"))
    assert err.field == "embedded_model_path" and str(missing) in str(err)


def test_rejected_api_key_is_a_startup_error():
    with FaultServer(api_key="right") as srv:
        cfg = LLMConfig(base_urls=(srv.base_url,), model="fault-model", store_mode="off")
        with pytest.raises(LLMConfigError, match="api_key: rejected"):
            LLMClient(cfg, env={"OPENAI_API_KEY": "wrong"})
        LLMClient(cfg, env={"OPENAI_API_KEY": "right"}).close()


@pytest.mark.parametrize("env,named", [
    ({"LLM_CONCURRENCY": "lots"}, r"concurrency \(\$LLM_CONCURRENCY\)"),
    ({"LLM_CONCURRENCY": "1000000"}, r"concurrency \(\$LLM_CONCURRENCY\): 1000000 is invalid"),
    ({"LLM_BASE_URL": "http://user:s3cret@127.0.0.1:8000/v1"}, r"base_url \(\$LLM_BASE_URL\)"),
    ({"LLM_BASE_URL": "http://[::1/v1"}, r"base_url \(\$LLM_BASE_URL\)"),
])
def test_bad_env_values_are_one_line_errors_naming_the_variable(env, named):
    with pytest.raises(LLMConfigError, match=named) as info:
        LLMConfig.from_env(env)
    assert "\n" not in str(info.value) and "s3cret" not in str(info.value)


def test_a_base_url_with_credentials_in_the_client_env_is_a_startup_error():
    err = start_error(LLMConfig(store_mode="off"), env={"LLM_BASE_URL": "http://user:s3cret@127.0.0.1:8000/v1"})
    assert err.field == "base_url ($LLM_BASE_URL)" and "s3cret" not in str(err)


def test_a_flag_overrides_a_bad_env_value():
    cfg = LLMConfig.from_env({"LLM_CONCURRENCY": "1000000"}, concurrency=8)
    assert cfg.concurrency == 8


def test_url_secrets_never_reach_messages_or_public_settings():
    for url in ("http://user:s3cret@h:1/v1", "http://h:1/v1?api_key=s3cret"):
        with pytest.raises(LLMConfigError) as info:
            LLMConfig(base_urls=(url,), store_mode="off").validate()
        assert "s3cret" not in str(info.value)
        assert "s3cret" not in redact_url(url)
    public = LLMConfig(base_urls=("http://h:1/v1",), store_mode="off").public_dict()
    assert public["base_urls"] == ["http://h:1/v1"]


def test_from_env_reads_settings_and_flags_win():
    cfg = LLMConfig.from_env({"LLM_BASE_URL": "http://a:1/v1,http://b:2/v1", "LLM_MODEL": "m",
                              "LLM_CONCURRENCY": "9"}, concurrency=3)
    assert cfg.base_urls == ("http://a:1/v1", "http://b:2/v1") and cfg.model == "m" and cfg.concurrency == 3


def test_auto_backend_prefers_explicit_settings_else_the_embedded_model():
    off = {"store_mode": "off"}
    assert resolve_backend(LLMConfig(**off), env={}).kind == "embedded"
    b = resolve_backend(LLMConfig(**off), env={"LLM_BASE_URL": "http://127.0.0.1:8000/v1"})
    assert b.kind == "openai" and b.base_urls == ("http://127.0.0.1:8000/v1",) and b.api_key == "not-needed"
    b = resolve_backend(LLMConfig(**off), env={"OPENAI_API_KEY": "k"})
    assert (b.kind, b.base_urls, b.model, b.api_key) == ("openai", (OPENAI_URL,), "gpt-4o-mini", "k")
    b = resolve_backend(LLMConfig(base_urls="http://h:1/v1", model="x", **off), env={"LLM_API_KEY": "k2"})
    assert (b.kind, b.model, b.api_key) == ("openai", "x", "k2")
    assert resolve_backend(LLMConfig(backend="embedded", **off), env={"OPENAI_API_KEY": "k"}).kind == "embedded"


def test_openai_without_a_key_is_a_startup_error():
    err = start_error(LLMConfig(backend="openai", store_mode="off"), env={})
    assert err.field == "api_key" and "OPENAI_API_KEY" in str(err)


def test_model_is_taken_from_the_server_when_not_set():
    with FaultServer(models=("served-model",)) as srv, \
            LLMClient(LLMConfig(base_urls=(srv.base_url,), store_mode="off"), env={}) as client:
        assert client.model == "served-model"


def test_config_holds_no_secret():
    cfg = LLMConfig(store_mode="off")
    assert not any("key" in name for name in cfg.public_dict())
