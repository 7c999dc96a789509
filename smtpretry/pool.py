"""Connections per destination: reuse, caps (adaptive), slots.

A :class:`DestinationPool` keeps one slot counter per destination. A slot is
held from connect to QUIT (idle connections kept for reuse hold theirs), never
while a send waits out a backoff. Throttling replies lower the effective cap
multiplicatively (never below 1); sustained success raises it additively back
to the configured value. Each move is a logged decision.

The slot counter sits behind :class:`SlotLimiter`, so a limiter shared between
processes (Redis) can take the place of the in-process one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from . import events
from .events import Logger
from .policy import Limits
from .reply import Evidence, Reply
from .transport import Endpoint, Session, open_session

__all__ = ["AdaptiveCap", "DestinationPool"]


@dataclass(slots=True)
class AdaptiveCap:
    """The effective connection cap of one destination (AIMD).

    ``lower(opened_at)`` on a throttling reply to a connection opened at
    ``opened_at`` (monotonic seconds): the cap loses half (never below 1). A
    reply to a connection opened before the last cut says nothing new (the
    cap was already lowered for it), so it does not cut again: one burst of
    421s lowers the cap once, not to 1. Any throttling resets the count of
    successes. ``success()`` after each completed transaction: every
    ``cap_recovery`` successes in a row while below the configured cap, it
    gains one.
    """

    configured: int
    current: int
    recovery: int
    adaptive: bool = True
    successes: int = 0
    lowered_at: float = float("-inf")

    @classmethod
    def from_limits(cls, limits: Limits) -> AdaptiveCap:
        return cls(limits.max_connections, limits.max_connections, limits.cap_recovery,
                   limits.adaptive)

    def lower(self, opened_at: float, now: float) -> int | None:
        """The new cap, or None when it did not move."""
        self.successes = 0
        if not self.adaptive or self.current <= 1 or opened_at < self.lowered_at:
            return None
        self.current = max(1, self.current - max(1, self.current // 2))
        self.lowered_at = now
        return self.current

    def success(self) -> int | None:
        if self.current >= self.configured:
            return None
        self.successes += 1
        if self.successes < self.recovery:
            return None
        self.successes = 0
        self.current += 1
        return self.current


class DestinationPool:
    """Open, reuse and close sessions to one destination, never more than the
    effective cap at once.

    ``acquire()`` gives an idle session if there is one, else opens a new one
    when a slot is free, else waits for one. ``release()`` keeps a healthy
    session for reuse (closed after ``idle_timeout`` unused) or closes it.
    """

    def __init__(
        self, endpoint: Endpoint, limits: Limits, log: Logger) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.cap = AdaptiveCap.from_limits(limits)
        self._log = log.bind(destination=endpoint.destination)
        self._open = 0
        self._idle: list[Session] = []
        self._cond = asyncio.Condition()
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.TimerHandle | None = None

    @property
    def active(self) -> int:
        """Connections open or being opened now (idle ones included)."""
        return self._open

    async def acquire(self) -> tuple[Session | Evidence, bool, float]:
        """A session, whether it was reused and when it was opened (monotonic
        seconds); or the reply or failure that kept a new one from opening
        (its slot is already given back) and when the opening began."""
        while True:
            stale: list[Session] = []
            async with self._cond:
                while True:
                    while self._idle:
                        session = self._idle.pop()
                        if session.connected and self._fresh(session):
                            return session, True, session.opened_at
                        stale.append(session)
                    if stale:
                        break
                    if self._open < self.cap.current:
                        self._open += 1
                        break
                    await self._cond.wait()
            if not stale:
                break
            # Close stale sessions before opening a new one, so the server
            # never sees more than the cap at once.
            for session in stale:
                await self._retire(session)
        started = time.monotonic()
        try:
            opened = await open_session(self.endpoint, opened_at=started)
        except BaseException:
            await self._give_back()
            raise
        if not isinstance(opened, Session):
            await self._give_back()
        return opened, False, started

    def _fresh(self, session: Session) -> bool:
        return time.monotonic() - session.last_used < self.limits.idle_timeout

    async def release(self, session: Session, *, reusable: bool) -> None:
        """Keep ``session`` for the next transaction, or close it and free its slot."""
        keep = (
            reusable
            and session.connected
            and session.transactions < self.limits.max_messages_per_connection
            and self._open <= self.cap.current
            and self.limits.idle_timeout > 0
        )
        if keep:
            session.last_used = time.monotonic()
            async with self._cond:
                self._idle.append(session)
                self._cond.notify()
            self._schedule_reap()
            return
        await session.quit()
        await self._give_back()

    async def _give_back(self) -> None:
        async with self._cond:
            self._open -= 1
            self._cond.notify()

    async def _retire(self, session: Session) -> None:
        await session.quit()
        await self._give_back()

    def _retire_later(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self._retire(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _schedule_reap(self) -> None:
        if self._reaper is None:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(self.limits.idle_timeout, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        stale = [s for s in self._idle if not (s.connected and self._fresh(s))]
        for s in stale:
            self._idle.remove(s)
            self._retire_later(s)
        if self._idle:
            self._schedule_reap()

    def throttled(self, reply: Reply, opened_at: float) -> None:
        """The server throttled a connection opened at ``opened_at``
        (monotonic): lower the effective cap, and close idle sessions above it."""
        previous = self.cap.current
        new = self.cap.lower(opened_at, time.monotonic())
        if new is None:
            return
        events.cap_changed(
            self._log, lowered=True, connections_cap=new, previous_cap=previous,
            connections_active=self._open, configured_cap=self.cap.configured, reply=reply,
        )
        surplus = self._open - new
        while self._idle and surplus > 0:
            self._retire_later(self._idle.pop(0))
            surplus -= 1

    def succeeded(self) -> None:
        previous = self.cap.current
        new = self.cap.success()
        if new is not None:
            events.cap_changed(
                self._log, lowered=False, connections_cap=new, previous_cap=previous,
                connections_active=self._open, configured_cap=self.cap.configured, reply=None,
            )

    async def close(self) -> None:
        """QUIT every idle session and wait for closes under way."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        async with self._cond:
            idle, self._idle = self._idle, []
        for session in idle:
            await self._retire(session)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
