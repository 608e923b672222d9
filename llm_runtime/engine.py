"""Asynchronous core: runs requests under a concurrency limit, persists each answer, parses and re-asks."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sized

import httpx2
import openai
from pydantic import BaseModel

from .accounting import Accounting
from .config import LLMConfig, redact, redact_url
from .errors import ReplayMissError, ServerStopped, StoreCorruptError, StoreError
from .pool import EndpointPool
from .parsing import parse_answer, read_completion, reask_message, response_format, schema_instruction, schema_json
from .records import Failure, FailureKind, LLMRequest, LLMResult, Usage
from .store import ResponseStore, StoredResponse, identity_of
from .transport import (FORMAT_LEVELS, PROBE, STORED_HEAD_BYTES, AnswerRefused, Endpoint, Probe, is_format_rejection,
                        kind_of_error, rejection, retry_after)

log = logging.getLogger("llm_runtime")
LOOKAHEAD = 16  # requests built ahead of the servers: enough to keep each busy, few enough not to slow the first
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.25, 60.0  # a 429 that asks for less (or nothing) still waits this, doubling
RATE_LIMIT = FailureKind.RATE_LIMIT


class Engine:
    """Lives on one event loop; see ``LLMClient`` for the synchronous façade."""

    def __init__(self, endpoints: list[Endpoint], *, model: str, store: ResponseStore | None, config: LLMConfig,
                 accounting: Accounting, secrets: tuple[str, ...] = ()):
        self.endpoints, self.model, self.store, self.mode = endpoints, model, store, config.store_mode
        self.max_reasks, self.temperature, self.seed = config.max_reasks, config.temperature, config.seed
        self.max_tokens = config.max_tokens
        self.acc = accounting
        self.secrets = secrets  # replaced in anything stored or logged from a server's answer
        self.pool = EndpointPool(endpoints)
        self.rate_limit_wait_s = config.rate_limit_wait_s
        self.rejected: tuple[str, str, str] | None = None  # the last answer that said a setting is wrong

    async def run_batch(self, requests: Iterable[LLMRequest], on_done: Callable[[asyncio.Task], None] | None,
                        ) -> list[LLMResult]:
        """Run every request of ``requests``; results in their order. Each request is taken from the iterable
        here, on the loop, once fewer than ``LOOKAHEAD`` taken requests wait for a server: a stream of requests
        is built as servers free up, and building the last ones never holds up sending the first."""
        tasks: list[asyncio.Task] = []
        ended: list[BaseException] = []  # an error that ends the batch: no further request is sent

        def check(task: asyncio.Task) -> None:
            if not task.cancelled() and task.exception() is not None:
                ended.append(task.exception())

        try:
            for request in _taken(requests):
                if ended:
                    raise ended[0]
                tasks.append(asyncio.create_task(self.run_one(request)))
                tasks[-1].add_done_callback(check)
                if on_done is not None:
                    tasks[-1].add_done_callback(on_done)
                await self.pool.fewer_waiting_than(LOOKAHEAD)
            if isinstance(requests, Sized) and len(tasks) != len(requests):
                raise ValueError(f"requests: {len(tasks)} given, but the batch said {len(requests)}")
            results = await asyncio.gather(*tasks)
            if self.store is not None:
                self.store.flush()
            return results
        finally:  # the batch failed or was cancelled: end what is left of it
            for task in tasks:
                task.cancel()

    async def run_one(self, req: LLMRequest) -> LLMResult:
        """Never raises for a bad answer or a failed call; raises ReplayMissError in replay mode, and
        StoreError or StoreCorruptError when the response store cannot keep or give back answers."""
        try:
            result = await self._run(req)
        except (ReplayMissError, StoreError, StoreCorruptError, ServerStopped):
            raise  # the batch must end: going on would fetch answers that cannot be kept, or build on wrong ones
        except Exception as err:  # noqa: BLE001 - a bug or an unforeseen error must not end a run
            log.warning("request %s failed inside the LLM layer: %s", identity_of(req.key), type(err).__name__)
            result = LLMResult(req.key, None, Failure(FailureKind.INTERNAL, f"{type(err).__name__}: {err}"))
        self.acc.add(requests=1)
        if result.failure is not None:
            self.acc.failure(result.failure.kind.value)
        return result

    def _hash(self, req: LLMRequest, messages_json: str, temperature: float, seed, max_tokens: int) -> str:
        text = json.dumps([self.model, req.schema.__name__, temperature, seed, max_tokens], default=str)
        return hashlib.sha256((text + messages_json + schema_json(req.schema)).encode()).hexdigest()

    async def _run(self, req: LLMRequest) -> LLMResult:
        """Answers of attempt 0, 1, ... (each a re-ask with the previous error), each stored before it is judged."""
        identity = identity_of(req.key)
        request_id = hashlib.sha256(identity.encode()).hexdigest()[:24]
        temperature = self.temperature if req.temperature is None else req.temperature
        seed = self.seed if req.seed is None else req.seed
        max_tokens = self.max_tokens if req.max_tokens is None else req.max_tokens
        messages = list(req.messages)
        usage, latency, sends, all_from_store = Usage(), 0.0, 0, True
        for attempt in range(self.max_reasks + 1):
            if attempt:
                self.acc.add(reasks=1)
            messages_json = _dumps(messages)
            req_hash = self._hash(req, messages_json, temperature, seed, max_tokens)
            stored = None if self.store is None else self.store.get(identity, attempt, req_hash)
            # in record mode a stored transient failure (connection, timeout, 429, 5xx) is asked again: it says
            # nothing about the answer; anything else the server sent is kept and never bought twice
            fresh = stored is None or (self.mode != "replay" and _is_transient(stored.failure_kind))
            if not fresh:
                self.acc.add(store_hits=1)
                answer = stored
            elif self.mode == "replay":
                raise ReplayMissError(f"replay-only: no stored response for key {identity} attempt {attempt}; "
                                      "run in record mode first")
            else:
                all_from_store = False
                answer, faults = await self._call(req, messages, messages_json, request_id, temperature, seed,
                                                  max_tokens)
                if self.store is not None:  # what the server sent is kept before anything reads or counts it
                    self.store.put(identity, attempt, req_hash, model=self.model, messages=messages_json,
                                   raw=None, finish_reason=None, parsed=None, failure_kind=answer.failure_kind,
                                   failure_message=answer.failure_message, prompt_tokens=0, completion_tokens=0,
                                   latency_s=answer.latency_s, sends=answer.sends, body=answer.body)
                for kind in faults:
                    self.acc.fault(kind.value)
            value, failure, text, finish, tokens = judge(answer, req.schema)
            if fresh:
                self.acc.add(prompt_tokens=tokens[0], completion_tokens=tokens[1])
                if failure is not None and answer.failure_kind is None:  # the transport counted its own
                    self.acc.fault(failure.kind.value)
                if self.store is not None and answer.body is not None:
                    self.store.judge(identity, attempt, req_hash, raw=text, finish_reason=finish,
                                     parsed=None if value is None else value.model_dump_json(),
                                     failure_kind=None if failure is None else failure.kind.value,
                                     failure_message=None if failure is None else failure.message,
                                     prompt_tokens=tokens[0], completion_tokens=tokens[1])
            usage.prompt_tokens += tokens[0]
            usage.completion_tokens += tokens[1]
            latency += answer.latency_s
            sends += answer.sends
            if failure is None or not failure.kind.is_content or attempt == self.max_reasks:
                return LLMResult(req.key, value, failure, text, all_from_store, usage, latency, attempt + 1, sends)
            messages = messages + [{"role": "assistant", "content": text or ""}, reask_message(failure)]
        raise AssertionError("unreachable")

    async def _call(self, req: LLMRequest, messages: list[dict], messages_json: str, request_id: str,
                    temperature: float, seed, max_tokens: int) -> tuple[StoredResponse, list[FailureKind]]:
        """One answer from the least loaded server, and the faults met on the way: the openai client retries 5xx,
        timeouts and connection errors; a 429 waits as long as it asks, and at least a backoff that doubles with
        each 429 the request meets (within ``rate_limit_wait_s`` in all), then the request goes out again."""
        faults, waited, sends, latency = [], 0.0, 0, 0.0
        while True:
            ep = await self.pool.acquire()
            try:
                answer, seen, wait = await self._call_endpoint(ep, req, messages, messages_json, request_id,
                                                               temperature, seed, max_tokens)
            except BaseException:
                self.pool.release(ep, ok=False)
                raise
            faults += seen
            sends, latency = sends + answer.sends, latency + answer.latency_s
            if wait is None:
                self.pool.release(ep, ok=answer.failure_kind is None)
                answer.sends, answer.latency_s = sends, latency
                return answer, faults
            backoff = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (sum(k is RATE_LIMIT for k in faults) - 1))
            if waited + max(wait, backoff) > self.rate_limit_wait_s:
                self.pool.release(ep, ok=False)
                for kind in faults:
                    self.acc.fault(kind.value)
                raise ServerStopped(f"{redact_url(ep.base_url)} answers 429: waiting {max(wait, backoff):,.0f} s more "
                                    f"would go beyond the rate-limit budget of {self.rate_limit_wait_s:g} s per "
                                    "request (rate_limit_wait_s, $LLM_RATE_LIMIT_WAIT)")
            waited += max(wait, backoff)
            self.acc.add(rate_limit_waits=1, rate_limit_wait_s=max(wait, backoff))
            self.pool.back_off(ep, wait)  # the server's pause holds every request to it; the backoff only this one
            if backoff > wait:
                await asyncio.sleep(backoff - wait)

    async def _call_endpoint(self, ep: Endpoint, req: LLMRequest, messages: list[dict], messages_json: str,
                             request_id: str, temperature: float, seed, max_tokens: int,
                             ) -> tuple[StoredResponse, list[FailureKind], float | None]:
        """The exchange as it happened: the body the server sent (bounded, secrets replaced), or the failure of
        the exchange (with an error's body where there was one); the faults of every send; and for a 429, the
        seconds it asks to wait. Nothing here reads the body."""
        sends, latency, seen = 0, 0.0, []
        while True:
            level = ep.format_level
            body = request_body(self.model, temperature, max_tokens, seed, req.schema, level,
                                messages_json if level == 0 else _dumps(
                                    [{"role": "system", "content": schema_instruction(req.schema)}] + messages))
            probe = Probe()
            token = PROBE.set(probe)
            start = time.perf_counter()
            try:
                # the client's generic post (its retries and timeouts): chat.completions.create would re-walk
                # every message and the schema through its typed-parameter transform on each call
                response = await ep.client.post(ep.chat_url, cast_to=httpx2.Response, content=body.encode(),
                                                options={"headers": {"X-Client-Request-Id": request_id}})
                content, error = response.content, None
            except Exception as err:  # noqa: BLE001 - classified below
                content, error = None, err
            finally:
                PROBE.reset(token)
            latency += time.perf_counter() - start
            sends += probe.sends
            self.acc.add(calls=1, sends=probe.sends, retries=max(0, probe.sends - 1))
            faults = probe.faults
            if error is not None and is_format_rejection(error) and ep.downgrade(level):
                faults = faults[:-1]  # a refused format is a fallback, not a fault
                self.acc.add(format_fallbacks=1)
                log.info("%s rejected response_format %s; using %s", redact_url(ep.base_url),
                         FORMAT_LEVELS[level], ep.format)
            seen += faults
            if error is not None and ep.format_level > level:
                continue
            self.acc.latency(latency)
            if error is None:
                return (StoredResponse(None, None, None, None, 0, 0, latency, sends, body=self._text(content)), seen,
                        None)
            if isinstance(error, openai.RateLimitError):
                return StoredResponse(None, None, FailureKind.RATE_LIMIT.value, None, 0, 0, latency, sends), seen, \
                    retry_after(error.response.headers)
            self.rejected = rejection(error, self.model, redact_url(ep.base_url)) or self.rejected
            kind = kind_of_error(error, probe)
            message = self._text(f"{type(error).__name__}: {error}", limit=200)
            return StoredResponse(None, None, kind.value, message, 0, 0, latency, sends,
                                  body=self._text(_error_body(error), limit=STORED_HEAD_BYTES)), seen, None

    def _text(self, data: bytes | str | None, limit: int | None = None) -> str | None:
        """Bytes or text from a server as text that may be stored and shown: the client's secrets replaced (then
        cut to ``limit`` characters, so that no cut leaves part of a secret)."""
        if data is None:
            return None
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return redact(text, self.secrets)[:limit]


class BuildInterrupted(Exception):
    """A KeyboardInterrupt or SystemExit raised while a request was built on the loop's thread, carried to the
    caller's thread (raised on the loop's own thread, it would stop the loop)."""

    def __init__(self, error: BaseException):
        super().__init__(repr(error))
        self.error = error


def _taken(requests: Iterable[LLMRequest]):
    iterator = iter(requests)
    while True:
        try:
            request = next(iterator)
        except StopIteration:
            return
        except (KeyboardInterrupt, SystemExit) as err:
            raise BuildInterrupted(err) from None
        yield request


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


@functools.lru_cache(maxsize=256)  # a handful per run: one per schema, format and setting
def _settings_json(model: str, temperature: float, max_tokens: int, seed, schema: type[BaseModel], level: int) -> str:
    settings = {"model": model, "temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        settings["seed"] = seed
    if (rf := response_format(schema, FORMAT_LEVELS[level])) is not None:
        settings["response_format"] = rf
    return _dumps(settings)


def request_body(model: str, temperature: float, max_tokens: int, seed, schema: type[BaseModel], level: int,
                 messages_json: str) -> str:
    """The chat-completion request as JSON text, built around the messages' JSON (already made for the request's
    hash) and the settings' JSON (the same for every request of a batch) instead of serialising both again."""
    return _settings_json(model, temperature, max_tokens, seed, schema, level)[:-1] + ',"messages":' + messages_json + "}"


def _is_transient(kind: str | None) -> bool:
    return kind is not None and FailureKind(kind).is_transient


def _error_body(error: BaseException) -> bytes | None:
    """What the server sent with a refused answer or an HTTP error, as far as it was read."""
    if isinstance(error, AnswerRefused):
        return error.head
    if isinstance(error, openai.APIStatusError):
        try:
            return error.response.content
        except Exception:  # noqa: BLE001 - a body that was never read
            return None
    return None


def judge(answer: StoredResponse, schema: type[BaseModel]):
    """``(value, failure, text, finish_reason, tokens)`` of a stored exchange; the same for a fresh answer and for
    one read back from the store."""
    kind = None if answer.failure_kind is None else FailureKind(answer.failure_kind)
    if kind is not None and (kind.is_exchange or answer.body is None and not kind.is_content):
        return None, Failure(kind, answer.failure_message or ""), None, None, (0, 0)
    if answer.body is not None:
        text, finish, tokens, failure = read_completion(answer.body)
        if failure is not None:
            return None, failure, text, finish, tokens
    else:  # a row stored before bodies were kept: its text is the answer
        text, finish, tokens = answer.raw, answer.finish_reason, (answer.prompt_tokens, answer.completion_tokens)
    value, failure = parse_answer(text, schema, finish)
    return value, failure, text, finish, tokens
