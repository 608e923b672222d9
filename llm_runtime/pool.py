"""Requests in flight per server: each server its own limit, halved when it answers 429 and grown back one request
per round of answers (additive increase, multiplicative decrease); a request goes to the least loaded server that
may take one, in the order the requests came."""

from __future__ import annotations

import asyncio
import collections

from .transport import Endpoint


class EndpointPool:
    """Lives on one event loop. ``acquire()`` waits for a server that may take one more request; ``release`` or
    ``back_off`` gives it back."""

    def __init__(self, endpoints: list[Endpoint]):
        self.endpoints = endpoints
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._room: tuple[int, asyncio.Future] | None = None  # (count, future): see fewer_waiting_than

    @property
    def limit(self) -> int:
        """Requests that may be in flight now, over every server."""
        return sum(int(ep.limit) for ep in self.endpoints)

    def full(self) -> bool:
        """No server may take another request now."""
        return self._free() is None

    async def fewer_waiting_than(self, count: int) -> None:
        """Return once fewer than ``count`` requests wait for a server (after the ready ones have had their turn)."""
        await asyncio.sleep(0)
        while len(self._waiters) >= count:
            self._room = count, asyncio.get_running_loop().create_future()
            await self._room[1]

    async def acquire(self) -> Endpoint:
        if not self._waiters and (ep := self._take()) is not None:
            return ep
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake()  # a server may be free, or paused until a time to wake for
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # a server was handed over as the request was cancelled
                self.release(waiter.result(), ok=False)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self, ep: Endpoint, *, ok: bool) -> None:
        """A request has ended; a good answer grows the server's limit back by one request per round."""
        ep.outstanding -= 1
        if ok and ep.limit < ep.ceiling:
            ep.limit = min(float(ep.ceiling), ep.limit + 1.0 / ep.limit)
        self._wake()

    def back_off(self, ep: Endpoint, seconds: float) -> None:
        """The server answered 429: nothing more goes to it for ``seconds``, and its limit halves (once per pause:
        the answers of one wave are one signal)."""
        now = asyncio.get_running_loop().time()
        if ep.paused_until <= now:
            ep.limit = max(1.0, ep.limit / 2)
        ep.paused_until = max(ep.paused_until, now + seconds)
        self.release(ep, ok=False)

    def _free(self) -> Endpoint | None:
        now = asyncio.get_running_loop().time()
        best, load = None, 0.0
        for ep in self.endpoints:
            if ep.paused_until <= now and ep.outstanding < ep.limit:
                share = ep.outstanding / ep.limit
                if best is None or share < load or share == load and ep.sent < best.sent:
                    best, load = ep, share
        return best

    def _take(self) -> Endpoint | None:
        ep = self._free()
        if ep is not None:
            ep.outstanding += 1
            ep.sent += 1
        return ep

    def _wake(self) -> None:
        while self._waiters:
            if self._waiters[0].done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            ep = self._take()
            if ep is None:
                break
            self._waiters.popleft().set_result(ep)
        if self._room is not None and len(self._waiters) < self._room[0]:
            if not self._room[1].done():
                self._room[1].set_result(None)
            self._room = None
        if self._waiters:  # a paused server takes requests again when its pause ends
            loop = asyncio.get_running_loop()
            paused = [ep.paused_until for ep in self.endpoints if ep.paused_until > loop.time()]
            if paused and (self._timer is None or min(paused) < self._timer.when()):
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(min(paused), self._resume)

    def _resume(self) -> None:
        self._timer = None
        self._wake()
