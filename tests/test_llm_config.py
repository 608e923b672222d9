"""Bad configuration fails at start-up with one clear line; backend selection."""

from __future__ import annotations

import os
import socket

import pytest

from llm_runtime import LLMClient, LLMConfig, resolve_backend
from llm_runtime.config import OPENAI_URL, redact_url
from tests.llm_server import FaultServer
from validation import ParameterError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_error(config: LLMConfig, env: dict | None = None) -> ParameterError:
    with pytest.raises(ParameterError) as info:
        LLMClient(config, env=env or {})
    return one_line(info.value)


def one_line(error: ParameterError) -> ParameterError:
    message = str(error)
    assert "\n" not in message and message.startswith(f"{error.field}: ") and "allowed: " in message
    return error


@pytest.fixture(autouse=True)
def no_llm_variables(monkeypatch):
    for name in [name for name in os.environ if name.startswith("LLM_") or name == "OPENAI_API_KEY"]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("settings,field,allowed", [
    (dict(backend="gpt5-magic"), "backend", "auto, openai, embedded"),
    (dict(base_urls=("localhost:8000",)), "base_urls", "http(s)://"),
    (dict(base_urls=("http://",)), "base_urls", "http(s)://"),
    (dict(base_urls=("http://127.0.0.1:notaport/v1",)), "base_urls", "http(s)://"),
    (dict(base_urls=("http://[::1/v1",)), "base_urls", "http(s)://"),
    (dict(base_urls=("http://user:pass@127.0.0.1:8000/v1",)), "base_urls", "http(s)://"),
    (dict(base_urls=("http://127.0.0.1:8000/v1?key=abc",)), "base_urls", "http(s)://"),
    (dict(concurrency=0), "concurrency", "an integer >= 1 and <= 4096"),
    (dict(concurrency=-3), "concurrency", "an integer >= 1 and <= 4096"),
    (dict(concurrency=1_000_000), "concurrency", "an integer >= 1 and <= 4096"),
    (dict(concurrency=True), "concurrency", "an integer >= 1 and <= 4096"),
    (dict(embedded_threads=0), "embedded_threads", "an integer >= 1"),
    (dict(store_mode="sometimes", store_path="x"), "store_mode", "record, replay, off"),
    (dict(store_mode="record", store_path=None), "store_path", "a file path"),
    (dict(max_retries=-1), "max_retries", "an integer >= 0"),
    (dict(timeout_s=0), "timeout_s", "a finite number of seconds in (0, 3,600]"),
    (dict(timeout_s=float("inf")), "timeout_s", "a finite number of seconds in (0, 3,600]"),
    (dict(temperature=5), "temperature", "[0, 2]"),
    (dict(tempreature=0.5), "tempreature", "temperature"),
])
def test_invalid_settings_are_named_with_allowed_values(settings, field, allowed):
    with pytest.raises(ParameterError) as info:
        LLMConfig(**{"store_mode": "off", **settings})
    assert one_line(info.value).field == field and allowed in str(info.value)


def test_unwritable_store_is_a_startup_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = start_error(LLMConfig(base_urls=("http://127.0.0.1:9/v1",), model="m",
                                store_path=str(blocker / "store.sqlite")))
    assert err.field == "store_path"


def test_unreachable_server_is_a_startup_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    err = start_error(LLMConfig(base_urls=(url,), model="m", store_mode="off", connect_timeout_s=1))
    assert err.field == "base_urls" and url in str(err)


def test_missing_model_file_is_a_startup_error(tmp_path):
    missing = tmp_path / "nope.gguf"
    err = start_error(LLMConfig(backend="embedded", embedded_model_path=str(missing), store_mode="off"))
    assert err.field == "embedded_model_path" and str(missing) in str(err)


def test_rejected_api_key_is_a_startup_error():
    with FaultServer(api_key="right") as srv:
        cfg = LLMConfig(base_urls=(srv.base_url,), model="fault-model", store_mode="off")
        with pytest.raises(ParameterError, match="api_key: rejected"):
            LLMClient(cfg, env={"OPENAI_API_KEY": "wrong"})
        LLMClient(cfg, env={"OPENAI_API_KEY": "right"}).close()


@pytest.mark.parametrize("env,named", [
    ({"LLM_CONCURRENCY": "lots"}, r"concurrency \(\$LLM_CONCURRENCY\): 'lots' is not an integer"),
    ({"LLM_CONCURRENCY": "1000000"}, r"concurrency \(\$LLM_CONCURRENCY\): 1000000 is out of range"),
    ({"LLM_TIMEOUT": "nan"}, r"timeout_s \(\$LLM_TIMEOUT\)"),
    ({"LLM_BASE_URL": "http://user:s3cret@127.0.0.1:8000/v1"}, r"base_urls \(\$LLM_BASE_URL\)"),
    ({"LLM_BASE_URL": "http://[::1/v1"}, r"base_urls \(\$LLM_BASE_URL\)"),
])
def test_bad_env_values_are_one_line_errors_naming_the_variable(env, named, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ParameterError, match=named) as info:
        LLMConfig()
    assert "s3cret" not in one_line(info.value).problem


def test_a_setting_given_overrides_a_bad_env_value(monkeypatch):
    monkeypatch.setenv("LLM_CONCURRENCY", "1000000")
    assert LLMConfig(concurrency=8).concurrency == 8
    with pytest.raises(ParameterError, match=r"\$LLM_CONCURRENCY"):
        LLMConfig.from_env(concurrency=None)  # None: not given


def test_every_setting_has_its_own_variable():
    variables = [LLMConfig.variable(name) for name in LLMConfig.model_fields]
    assert all(v.startswith("LLM_") for v in variables) and len(set(variables)) == len(variables)


def test_url_secrets_never_reach_messages_or_public_settings():
    for url in ("http://user:s3cret@h:1/v1", "http://h:1/v1?api_key=s3cret"):
        with pytest.raises(ParameterError) as info:
            LLMConfig(base_urls=(url,), store_mode="off")
        assert "s3cret" not in str(info.value)
        assert "s3cret" not in redact_url(url)
    public = LLMConfig(base_urls=("http://h:1/v1",), store_mode="off").public_dict()
    assert public["base_urls"] == ["http://h:1/v1"]


def test_variables_are_read_and_given_settings_win(monkeypatch):
    for name, value in {"LLM_BASE_URL": "http://a:1/v1,http://b:2/v1", "LLM_MODEL": "m", "LLM_CONCURRENCY": "9",
                        "LLM_TIMEOUT": "7.5", "LLM_CHECK_SERVER": "false"}.items():
        monkeypatch.setenv(name, value)
    cfg = LLMConfig(concurrency=3)
    assert cfg.base_urls == ("http://a:1/v1", "http://b:2/v1") and cfg.model == "m" and cfg.concurrency == 3
    assert cfg.timeout_s == 7.5 and cfg.check_server is False


def test_auto_backend_prefers_explicit_settings_else_the_embedded_model(monkeypatch):
    off = {"store_mode": "off"}
    assert resolve_backend(LLMConfig(**off), env={}).kind == "embedded"
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    b = resolve_backend(LLMConfig(**off), env={})
    assert b.kind == "openai" and b.base_urls == ("http://127.0.0.1:8000/v1",) and b.api_key == "not-needed"
    monkeypatch.delenv("LLM_BASE_URL")
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
