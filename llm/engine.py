"""Asynchronous core: runs requests under a concurrency limit, persists each answer, parses and re-asks."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence

import httpx2
import openai

from .accounting import Accounting
from .errors import ReplayMissError
from .parsing import _strict_schema_json, parse_answer, reask_message, response_format, schema_instruction
from .records import Failure, FailureKind, LLMRequest, LLMResult, Usage
from .store import GroupWriter, ResponseStore, StoredResponse, identity_of
from .transport import FORMAT_LEVELS, PROBE, Endpoint, Probe, is_format_rejection, kind_of_error

log = logging.getLogger("llm")


class Engine:
    """Lives on one event loop; see ``LLMClient`` for the synchronous façade."""

    def __init__(self, endpoints: list[Endpoint], *, model: str, store: ResponseStore | None, mode: str,
                 concurrency: int, max_reasks: int, temperature: float, seed: int | None, max_tokens: int,
                 accounting: Accounting):
        self.endpoints, self.model, self.store, self.mode = endpoints, model, store, mode
        self.max_reasks, self.temperature, self.seed, self.max_tokens = max_reasks, temperature, seed, max_tokens
        self.acc = accounting
        self._sem = asyncio.Semaphore(concurrency)
        self._writer = GroupWriter(store) if store is not None else None

    async def run_batch(self, requests: Sequence[LLMRequest],
                        on_done: Callable[[int], None] | None = None) -> list[LLMResult]:
        known = self.known_keys(requests)

        async def one(i: int, req: LLMRequest) -> LLMResult:
            try:
                return await self.run_one(req, known)
            finally:
                if on_done is not None:
                    on_done(i)

        try:
            return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))
        finally:
            self.fold_store_log()

    def fold_store_log(self) -> None:
        """Fold the store's log into its database, from the writer thread, after the rows queued so far."""
        if self._writer is not None:
            self._writer.checkpoint_soon()

    def known_keys(self, requests: Sequence[LLMRequest]) -> set | None:
        """Stored (identity, attempt, hash) keys of these requests: one query instead of one per request."""
        if self.store is None:
            return None
        return self.store.keys_for(list({identity_of(r.key) for r in requests}))

    async def run_one(self, req: LLMRequest, known: set | None = None) -> LLMResult:
        """Never raises for a bad answer or a failed call; raises ReplayMissError in replay mode.

        ``known``: stored (identity, attempt, hash) keys, when the caller looked them up already.
        """
        try:
            result = await self._run(req, known)
        except ReplayMissError:
            raise
        except Exception as err:  # noqa: BLE001 - a bug or an unforeseen error must not end a run
            log.warning("request %s failed inside the LLM layer: %s", identity_of(req.key), type(err).__name__)
            result = LLMResult(req.key, None, Failure(FailureKind.INTERNAL, f"{type(err).__name__}: {err}"))
        self.acc.add(requests=1)
        if result.failure is not None:
            self.acc.failure(result.failure.kind.value)
        return result

    def _hash(self, req: LLMRequest, messages_json: str, temperature: float, seed, max_tokens: int) -> str:
        text = json.dumps([self.model, req.schema.__name__, temperature, seed, max_tokens], default=str)
        return hashlib.sha256((text + messages_json + _strict_schema_json(req.schema)).encode()).hexdigest()

    async def _run(self, req: LLMRequest, known: set | None) -> LLMResult:
        identity = identity_of(req.key)
        request_id = hashlib.sha256(identity.encode()).hexdigest()[:24]
        temperature = self.temperature if req.temperature is None else req.temperature
        seed = self.seed if req.seed is None else req.seed
        max_tokens = self.max_tokens if req.max_tokens is None else req.max_tokens
        messages = list(req.messages)
        usage, latency, sends, all_from_store = Usage(), 0.0, 0, True
        failure: Failure | None = None
        raw = None
        for attempt in range(self.max_reasks + 1):
            if attempt:
                self.acc.add(reasks=1)
            messages_json = json.dumps(messages, separators=(",", ":"), default=str)
            req_hash = self._hash(req, messages_json, temperature, seed, max_tokens)
            stored = None
            if self.store is not None and (known is None or (identity, attempt, req_hash) in known):
                stored = self.store.get(identity, attempt, req_hash)
            if stored is not None and (self.mode == "replay" or not _is_transport(stored.failure_kind)):
                self.acc.add(store_hits=1)
                answer = stored
            elif self.mode == "replay":
                raise ReplayMissError(f"replay-only: no stored response for key {identity} attempt {attempt}; "
                                      "run in record mode first")
            else:
                all_from_store = False
                answer = await self._call(req, messages, messages_json, request_id, temperature, seed, max_tokens)
            raw = answer.raw
            usage.prompt_tokens += answer.prompt_tokens
            usage.completion_tokens += answer.completion_tokens
            latency += answer.latency_s
            sends += answer.sends
            if answer.failure_kind is not None and _is_transport(answer.failure_kind):
                failure, value = Failure(FailureKind(answer.failure_kind), answer.failure_message or ""), None
            else:
                value, failure = parse_answer(answer.raw, req.schema, answer.finish_reason)
            if stored is None or answer is not stored:
                if failure is not None and not failure.kind.is_transport:
                    self.acc.fault(failure.kind.value)
                if self.store is not None:
                    await self._writer.put(ResponseStore.row(
                                   identity, attempt, req_hash, model=self.model, messages=messages_json, raw=raw,
                                   finish_reason=answer.finish_reason,
                                   parsed=None if value is None else value.model_dump_json(),
                                   failure_kind=None if failure is None else failure.kind.value,
                                   failure_message=None if failure is None else failure.message,
                                   prompt_tokens=answer.prompt_tokens,
                                   completion_tokens=answer.completion_tokens,
                                   latency_s=answer.latency_s, sends=answer.sends))
            if failure is None or failure.kind.is_transport or attempt == self.max_reasks:
                return LLMResult(req.key, value, failure, raw, all_from_store, usage, latency, attempt + 1, sends)
            messages = messages + [{"role": "assistant", "content": raw or ""}, reask_message(failure)]
        raise AssertionError("unreachable")

    def _pick(self) -> Endpoint:
        return min(self.endpoints, key=lambda e: (e.outstanding, e.sent))

    async def _call(self, req: LLMRequest, messages: list[dict], messages_json: str, request_id: str,
                    temperature: float, seed, max_tokens: int) -> StoredResponse:
        """One answer from a server (the client retries 429/5xx/connection errors itself)."""
        async with self._sem:
            ep = self._pick()
            lane = ep.acquire_lane()
            try:
                return await self._call_endpoint(ep, ep.lanes[lane], req, messages, messages_json, request_id,
                                                 temperature, seed, max_tokens)
            finally:
                ep.release_lane(lane)

    async def _call_endpoint(self, ep: Endpoint, client: openai.AsyncOpenAI, req: LLMRequest, messages: list[dict],
                             messages_json: str, request_id: str, temperature: float, seed,
                             max_tokens: int) -> StoredResponse:
        sends, latency = 0, 0.0
        while True:
            level = ep.format_level
            fmt = FORMAT_LEVELS[level]
            sent = messages_json if fmt == "json_schema" else _dumps(
                [{"role": "system", "content": schema_instruction(req.schema)}] + messages)
            settings = {"model": self.model, "temperature": temperature, "max_tokens": max_tokens}
            if seed is not None:
                settings["seed"] = seed
            # the messages are JSON already (for the request hash): splice them in rather than encode them twice
            content = f'{{"messages":{sent},{_format_json(req.schema, fmt)}{_dumps(settings)[1:]}'
            probe = Probe()
            token = PROBE.set(probe)
            start = time.perf_counter()
            try:
                # the client's generic post: its retries and timeouts, without re-walking a prepared body
                response = await client.post(ep.chat_url, cast_to=httpx2.Response,
                                                content=content.encode(),
                                                options={"headers": {"X-Client-Request-Id": request_id},
                                                         "idempotency_key": request_id})
                completion = response.json()
                error = None
            except Exception as err:  # noqa: BLE001 - classified below
                error = err
            finally:
                PROBE.reset(token)
            latency += time.perf_counter() - start
            sends += probe.sends
            self.acc.add(calls=1, sends=probe.sends, retries=max(0, probe.sends - 1))
            faults = probe.faults
            if error is not None and is_format_rejection(error) and ep.downgrade(level):
                faults = faults[:-1]
                self.acc.add(format_fallbacks=1)
                log.info("%s rejected response_format %s; using %s", ep.base_url, fmt, ep.format)
            for kind in faults:
                self.acc.fault(kind.value)
            if error is not None and ep.format_level > level:
                continue
            self.acc.latency(latency)
            if error is not None:
                kind = kind_of_error(error)
                return StoredResponse(None, None, kind.value, f"{type(error).__name__}: {str(error)[:200]}",
                                      0, 0, latency, sends)
            choice = (completion.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            raw = message.get("content") or message.get("refusal") or ""
            usage = completion.get("usage") or {}
            pt, ct = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
            self.acc.add(prompt_tokens=pt, completion_tokens=ct)
            return StoredResponse(raw, choice.get("finish_reason"), None, None, pt, ct, latency, sends)

    async def aclose(self) -> None:
        for ep in self.endpoints:
            await ep.aclose()
        if self._writer is not None:  # no request is in flight: joining the writer thread here is brief
            self._writer.close()


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


@functools.cache
def _format_json(schema: type, level: str) -> str:
    """``"response_format":...,`` as JSON text, or nothing when the server gets plain text."""
    rf = response_format(schema, level)
    return "" if rf is None else f'"response_format":{_dumps(rf)},'


def _is_transport(kind: str | None) -> bool:
    return kind is not None and FailureKind(kind).is_transport
