"""A hostile or broken server: whatever it sends is stored before it is judged, judged for what it is (never
clipped, coerced or guessed), bounded in size and time, counted under its own kind, stripped of the key, and never
bought twice by a resume."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from aiohttp import web

from agents.prompts import WorkerAnswer
from llm_runtime import FailureKind, LLMClient, LLMConfig, LLMRequest, ServerStopped
from tests.llm_server import FaultServer

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-" + "k3y9" * 8  # the server requires it; one mode echoes it back
REQUEST = LLMRequest(key=("hostile", 0, "work", 7), schema=WorkerAnswer,
                     messages=[{"role": "user", "content": "How many hours will you work this week?"}])
BOMB_BYTES = 512 * 2**20


def completion(content, **changes) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    body = {"id": "c", "object": "chat.completion", "model": "fault-model", "choices": [choice],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
    for path, value in changes.items():  # "choices.0.finish_reason" -> value
        *parents, last = path.split(".")
        target = body
        for name in parents:
            target = target[int(name)] if isinstance(target, list) else target[name]
        target[int(last) if isinstance(target, list) else last] = value
    return body


def answer(hours) -> str:
    return json.dumps({"hours": hours, "reason": "r"}, ensure_ascii=False)


def sends(body, status: int = 200, headers: dict | None = None):
    """A handler that sends ``body`` (a JSON value, or text as it is) with ``status``."""
    text = body if isinstance(body, (str, bytes)) else json.dumps(body)

    async def respond(request: web.Request, payload: dict) -> web.StreamResponse:
        return web.Response(body=text.encode() if isinstance(text, str) else text, status=status,
                            content_type="application/json", headers=headers)

    return respond


@functools.cache
def gzip_bomb() -> bytes:
    """A chat completion whose content is 512 MB of zeros, gzip-compressed to about 0.5 MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(2**20)
    parts = [packer.compress(b'{"choices": [{"message": {"content": "')]
    parts += [packer.compress(zeros) for _ in range(BOMB_BYTES // len(zeros))]
    return b"".join(parts + [packer.compress(b'"}}]}'), packer.flush()])


async def bomb(request: web.Request, payload: dict) -> web.StreamResponse:
    return web.Response(body=gzip_bomb(), content_type="application/json", headers={"Content-Encoding": "gzip"})


async def five_megabytes(request: web.Request, payload: dict) -> web.StreamResponse:
    """5 MB of prose before a valid object, chunked (no length announced)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    body = json.dumps(completion("Let me think. " * (5 * 2**20 // 14) + answer(40))).encode()
    for start in range(0, len(body), 65536):
        await response.write(body[start:start + 65536])
    await response.write_eof()
    return response


async def drip(request: web.Request, payload: dict) -> web.StreamResponse:
    """A valid answer, one byte a second."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for byte in json.dumps(completion(answer(40))).encode():
        await response.write(bytes([byte]))
        await asyncio.sleep(1)
    return response


async def echo_key(request: web.Request, payload: dict) -> web.StreamResponse:
    return web.json_response({"error": {"message": f"bad request; you sent {request.headers['Authorization']}"}},
                             status=400)


async def redirect(request: web.Request, payload: dict) -> web.StreamResponse:
    return web.Response(status=307, headers={"Location": "http://127.0.0.1:9/v1/chat/completions"}, text="moved")


HOSTILE = {  # name: (how the server answers, the kind the client must count)
    "gzip_512mb": (bomb, FailureKind.TOO_LARGE),
    "plain_5mb": (five_megabytes, FailureKind.TOO_LARGE),
    "drip_1_byte_per_s": (drip, FailureKind.DEADLINE),
    "duplicate_keys": (sends(completion('{"hours": 12, "hours": 47, "reason": "r"}')), FailureKind.AMBIGUOUS),
    "two_objects": (sends(completion(answer(12) + "\n" + answer(47))), FailureKind.AMBIGUOUS),
    "prose_and_fence": (sends(completion(f"I'd say {answer(12)}.\n```json\n{answer(47)}\n```")),
                        FailureKind.AMBIGUOUS),
    "arabic_digits": (sends(completion(answer("٤٧"))), FailureKind.INVALID_TYPE),
    "fullwidth_digits": (sends(completion(answer("４７"))), FailureKind.INVALID_TYPE),
    "padded_digits": (sends(completion(answer(" 47 "))), FailureKind.INVALID_TYPE),
    "signed_digits": (sends(completion(answer("+47"))), FailureKind.INVALID_TYPE),
    "content_number": (sends(completion(47)), FailureKind.BAD_RESPONSE),
    "choices_null": (sends({"choices": [None]}), FailureKind.BAD_RESPONSE),
    "body_array": (sends([completion(answer(47))]), FailureKind.BAD_RESPONSE),
    "deeply_nested": (sends("[" * 100_000 + "]" * 100_000), FailureKind.BAD_RESPONSE),
    "usage_string": (sends(completion(answer(47), **{"usage.prompt_tokens": "12"})), FailureKind.BAD_RESPONSE),
    "usage_huge": (sends(completion(answer(47), **{"usage.prompt_tokens": 10**30})), FailureKind.BAD_RESPONSE),
    "usage_nan": (sends(json.dumps(completion(answer(47))).replace('"prompt_tokens": 10', '"prompt_tokens": NaN')),
                  FailureKind.BAD_RESPONSE),
    "finish_reason_object": (sends(completion(answer(47), **{"choices.0.finish_reason": {"why": "stop"}})),
                             FailureKind.BAD_RESPONSE),
    "error_in_200": (sends({"error": {"message": "the model is overloaded", "type": "server_error"}}),
                     FailureKind.ERROR_IN_200),
    "redirect_307": (redirect, FailureKind.REDIRECT),
    "key_echoed_in_400": (echo_key, FailureKind.HTTP_ERROR),
}


def client(url: str, store: Path) -> LLMClient:
    config = LLMConfig(base_urls=(url,), model="fault-model", store_path=str(store), max_retries=0, timeout_s=5,
                       deadline_s=3)
    return LLMClient(config, env={"LLM_API_KEY": KEY})


def rows(store: Path) -> list[dict]:
    with sqlite3.connect(store) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM responses")]


@pytest.mark.parametrize("mode", HOSTILE)
def test_a_hostile_answer_is_stored_then_counted_as_its_kind_and_never_bought_twice(mode, tmp_path):
    respond, kind = HOSTILE[mode]
    store = tmp_path / "responses.sqlite"
    gzip_bomb()  # made before the server answers, not on its clock
    with FaultServer(api_key=KEY, respond=respond) as srv:
        with client(srv.base_url, store) as llm:
            counted = []

            def stored_first(count):  # every fault and failure is counted only once its answer is stored
                def check(name):
                    assert rows(store), f"{name} counted before anything was stored"
                    counted.append(name)
                    count(name)
                return check

            llm.accounting.fault = stored_first(llm.accounting.fault)
            llm.accounting.failure = stored_first(llm.accounting.failure)
            result = llm.run_batch([REQUEST])[0]
            stats = llm.accounting.to_dict()
            transcripts = tmp_path / "transcripts.jsonl"
            llm.export_transcripts(transcripts)
        asked = srv.stats()["requests"]
        assert result.value is None and result.failure.kind is kind, (result.failure, result.raw)
        assert stats["failures"] == {kind.value: 1} and stats["faults"].get(kind.value, 0) >= 1, stats
        assert set(counted) == {kind.value}
        kept = rows(store)
        assert len(kept) == stats["calls"] == asked  # one row per answer: each re-ask of a bad text is one more
        assert all(row["body"] is not None and len(row["body"]) <= 1_000_000 for row in kept)
        assert all(row["parsed"] is None for row in kept)
        json.loads(json.dumps(stats, allow_nan=False))  # the accounting is valid JSON
        for text in (store.read_bytes(), transcripts.read_bytes()):
            assert KEY.encode() not in text
        with client(srv.base_url, store) as llm:  # a resume: everything the server said is in the store
            again = llm.run_batch([REQUEST])[0]
            assert llm.accounting.to_dict()["calls"] == 0
        assert srv.stats()["requests"] == asked
        assert again.failure.kind is kind and again.value is None


def test_content_as_a_list_of_text_parts_is_text(tmp_path):
    parts = [{"type": "text", "text": '{"hours": 47,'}, {"type": "text", "text": ' "reason": "r"}'}]
    with FaultServer(api_key=KEY, respond=sends(completion(parts))) as srv:
        with client(srv.base_url, tmp_path / "responses.sqlite") as llm:
            result = llm.run_batch([REQUEST])[0]
    assert result.failure is None and result.value.hours == 47.0


def test_minus_zero_hours_are_zero(tmp_path):
    with FaultServer(api_key=KEY, respond=sends(completion('{"hours": -0.0, "reason": "r"}'))) as srv:
        with client(srv.base_url, tmp_path / "responses.sqlite") as llm:
            result = llm.run_batch([REQUEST])[0]
    assert result.failure is None and str(result.value.hours) == "0.0"
    assert json.loads(rows(tmp_path / "responses.sqlite")[0]["parsed"])["hours"] == 0.0


def test_a_stall_in_the_body_is_a_read_stall_and_stops_the_batch_for_a_resume(tmp_path):
    async def stall(request: web.Request, payload: dict) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"choices": [')
        await asyncio.sleep(30)
        return response

    store = tmp_path / "responses.sqlite"
    with FaultServer(respond=stall) as srv:
        config = LLMConfig(base_urls=(srv.base_url,), model="fault-model", store_path=str(store), max_retries=1,
                           timeout_s=1)
        with LLMClient(config) as llm:
            with pytest.raises(ServerStopped, match=r"stopped answering: every request of a batch of 1 failed "
                                                    r"\(read_stall 1\)"):
                llm.run_batch([REQUEST])
            stats = llm.accounting.to_dict()
    assert stats["failures"] == {"read_stall": 1}
    assert stats["faults"] == {"read_stall": 2} and stats["retries"] == 1
    assert rows(store)[0]["failure_kind"] == "read_stall"  # stored, and a resume asks again: nothing was learnt
    assert FailureKind.READ_STALL.is_transient


def test_a_refused_connection_is_named_as_such(tmp_path):
    with FaultServer() as srv:
        url = srv.base_url
    config = LLMConfig(base_urls=(url,), model="fault-model", store_path=str(tmp_path / "r.sqlite"), max_retries=1,
                       check_server=False)
    with LLMClient(config) as llm:
        with pytest.raises(ServerStopped, match=r"\(connection_refused 1\)"):  # an interruption, not a result
            llm.run_batch([REQUEST])
        stats = llm.accounting.to_dict()
    assert stats["faults"] == {"connection_refused": 2} and stats["failures"] == {"connection_refused": 1}


MEMORY = """
import resource, sys
from llm_runtime import LLMClient, LLMConfig
from tests.test_llm_hostile import REQUEST
config = LLMConfig(base_urls=(sys.argv[1],), model="fault-model", store_path=sys.argv[2], max_retries=0)
with LLMClient(config) as llm:
    for _ in range(3):
        result = llm.run_batch([REQUEST])[0]
        assert result.value is None and result.failure.kind.value == sys.argv[3], result.failure
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.parametrize("mode", ["gzip_512mb", "plain_5mb"])
def test_an_oversized_answer_costs_the_client_no_memory(mode, tmp_path):
    respond, kind = HOSTILE[mode]
    gzip_bomb()
    with FaultServer(respond=respond) as srv:
        done = subprocess.run([sys.executable, "-c", MEMORY, srv.base_url, str(tmp_path / "r.sqlite"), kind.value],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    peak_kib = int(done.stdout.split()[-1])
    assert peak_kib < 1024 * 1024, f"peak memory {peak_kib / 1024:.0f} MiB"


def test_the_request_asks_only_for_encodings_the_client_bounds_and_is_one_json_object(tmp_path):
    seen = []

    async def capture(request: web.Request, payload: dict) -> web.StreamResponse:
        seen.append((request.headers.get("Accept-Encoding"), request.content_type, payload))
        return await sends(completion(answer(30)))(request, payload)

    with FaultServer(api_key=KEY, respond=capture) as srv:
        with client(srv.base_url, tmp_path / "responses.sqlite") as llm:
            result = llm.run_batch([REQUEST])[0]
    assert result.value.hours == 30.0
    (encodings, content_type, payload), = seen
    assert encodings == "gzip, x-gzip, deflate" and content_type == "application/json"
    assert payload["model"] == "fault-model" and payload["messages"] == [dict(m) for m in REQUEST.messages]
    assert payload["response_format"]["type"] == "json_schema" and "max_tokens" in payload
