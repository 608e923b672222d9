"""The real embedded model (xllamacpp + SmolLM2-135M): schema-constrained answers, clean stop."""

from __future__ import annotations

import socket

import pytest
from pydantic import BaseModel, ConfigDict, Field

from llm_runtime import LLMClient, LLMConfig, LLMRequest
from llm_runtime.embedded import find_model_file

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: int = Field(ge=0, le=100)
    reason: str = Field(max_length=40)


def port_is_free(port: int) -> bool:
    """Nothing listens on the port and a new server could bind it (closed connections may linger in TIME_WAIT)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            return True
        except OSError:
            return False


def test_embedded_model_answers_four_concurrent_schema_requests_and_stops_cleanly():
    try:
        find_model_file(None)
    except Exception as err:  # noqa: BLE001 - the model ships with the test requirements
        pytest.fail(f"embedded model missing: {err}")
    config = LLMConfig(backend="embedded", store_mode="off", embedded_slots=4, embedded_ctx_per_slot=1024,
                       max_tokens=80, concurrency=4, embedded_threads=1)
    client = LLMClient(config, env={})
    try:
        server = client.embedded
        port, proc = server.port, server.proc
        assert server.base_url.startswith("http://127.0.0.1:") and not port_is_free(port)
        requests = [LLMRequest(key=("embedded", i), schema=Plan, messages=[
            {"role": "system", "content": "You are a worker deciding how many hours to work. Reply in JSON."},
            {"role": "user", "content": f"Worker {i}: last year you worked 40 hours. How many this year?"}])
            for i in range(4)]
        results = client.run_batch(requests)
        acc = client.accounting.to_dict()
    finally:
        client.close()
    assert all(r.ok for r in results), [r.failure for r in results]
    assert all(isinstance(r.value, Plan) and 0 <= r.value.hours <= 100 for r in results)
    assert acc["sends"] == 4 and acc["completion_tokens"] > 0
    assert server.proc is None and proc.poll() is not None and port_is_free(port)


def test_clients_in_one_process_share_one_embedded_server_until_the_last_closes():
    from llm_runtime.embedded import SHARED

    config = LLMConfig(backend="embedded", store_mode="off", embedded_slots=1, embedded_ctx_per_slot=1024,
                       max_tokens=40, embedded_threads=1)
    first = LLMClient(config, env={})
    second = LLMClient(config, env={})  # a second dashboard session, say
    try:
        server = first.embedded
        assert second.embedded is server and SHARED.running() == 1
        first.close()
        assert server.alive()  # still serving the second client
        result = second.complete(LLMRequest(key=("shared", 0), schema=Plan, messages=[
            {"role": "user", "content": "How many hours will you work this week? Reply in JSON."}]))
        assert result.ok or not result.failure.kind.is_transient, result.failure  # the server answered
        assert second.accounting.to_dict()["sends"] >= 1
    finally:
        first.close()
        second.close()
    assert not server.alive() and SHARED.running() == 0


def test_llm_minds_on_the_embedded_model_replay_with_no_http(tmp_path):
    """The main job's path: LLM workers and planner on the embedded model, then a replay-only rerun."""
    from model.model import EconomyModel

    options = dict(workers=2, worker_mind="llm", planner="llm", tax_year_length=2, max_steps=3, backend="embedded",
                   llm_store=str(tmp_path / "store.sqlite"), run_id="embedded", rng=4)
    frames = []
    for mode in ("record", "replay"):
        model = EconomyModel(**options, llm_store_mode=mode)
        try:
            assert (model.llm.embedded is not None) == (mode == "record")
            while model.running:
                model.step()
            acc = model.llm.accounting.to_dict()
        finally:
            model.close()
        frames.append(model.datacollector.get_model_vars_dataframe())
        if mode == "record":
            assert acc["requests"] == 3 * 2 + 1 and acc["sends"] >= acc["requests"]
        else:
            assert acc["sends"] == 0 and acc["store_hits"] >= 7
    assert frames[0].equals(frames[1])
