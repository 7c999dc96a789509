"""Connections per destination: slots, adaptive caps, pacing, reuse.

Two pieces:

- A :class:`Limiter` keeps one slot counter per limit key (a destination, or
  a group of MX hosts that share one limit). A slot is held from connect to
  QUIT (idle connections kept for reuse hold theirs), never while a send
  waits out a backoff. Throttling replies lower the effective cap
  multiplicatively (never below 1); sustained success raises it additively
  back to the configured value. Each move is a logged decision. The limiter
  also paces transactions (``max_messages_per_minute``) and holds new
  connections off when a server named a wait.
- A :class:`DestinationPool` opens, reuses and closes the sessions of one
  endpoint (host, port, TLS, credentials), taking slots from its limiter.

The slot counter and the effective cap of a limiter sit behind the small
:class:`Slots` protocol: :class:`LocalSlots` (in-process, the default) or
``redis_limiter.RedisSlots``, which holds them in Redis for every worker
process. Pacing, hold-offs and idle sessions stay in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import events
from ._logging import LogContext, Logger, emit, reply_keys
from .endpoint import Endpoint
from .policy import Limits
from .reply import Evidence, Reply
from .transport import Session, open_session

__all__ = [
    "AdaptiveCap",
    "CapReport",
    "DestinationPool",
    "Lease",
    "Limiter",
    "LocalSlots",
    "Refusal",
    "SessionSource",
    "Slots",
]

ABORT_GRACE_S = 0.02
"""Seconds a slot stays taken after we cut a connection, before it is reused."""

LINGER_S = 2.0
"""Seconds a server may go on counting a connection we closed."""


@dataclass(slots=True)
class AdaptiveCap:
    """The effective connection cap of one destination (AIMD with memory).

    ``lower(opened_at, now, open_now, lingering)`` on a throttling reply to a
    connection opened at ``opened_at`` (monotonic seconds) while ``open_now``
    connections were open or opening: the cap loses half (never below 1), and
    the level the server refused (``open_now``) is remembered: the cap will
    not climb back above ``open_now - 1``. ``lingering`` says one of our
    connections closed a moment ago: servers count a closed session for a
    short while, so the refusal may be one too early, and the level is taken
    one higher. A single 421 while few connections are open halves the cap
    but does not pin it low.
    A reply to a connection opened before the last cut says nothing new (the
    cap was already lowered for it), so one burst of 421s lowers the cap once,
    not to 1. The cap the server refused is remembered for ``probe_after``
    seconds: success raises the effective cap by one every ``recovery``
    transactions in a row, up to just below that level, so a steady server
    sees no more 421s; after ``probe_after`` it probes higher again.
    """

    configured: int
    current: int
    recovery: int
    probe_after: float
    adaptive: bool = True
    successes: int = 0
    lowered_at: float = float("-inf")
    ceiling: int | None = None

    @classmethod
    def from_limits(cls, limits: Limits) -> AdaptiveCap:
        return cls(limits.max_connections, limits.max_connections, limits.cap_recovery,
                   limits.cap_probe_after, limits.adaptive)

    def lower(self, opened_at: float, now: float, open_now: int | None = None,
              lingering: bool = False) -> int | None:
        """The new cap, or None when it did not move."""
        self.successes = 0
        if not self.adaptive or self.current <= 1 or opened_at < self.lowered_at:
            return None
        self.current = max(1, self.current - max(1, self.current // 2))
        if open_now is None:  # a throttle that names no level (a rate limit in a session)
            self.ceiling = None
        else:
            level = open_now - 1 + (1 if lingering else 0)
            # Refused with fewer connections open than the new cap: the server counts
            # something besides us, and that says nothing about a level to stay under.
            self.ceiling = level if level >= self.current else None
        self.lowered_at = now
        return self.current

    def success(self, now: float) -> int | None:
        limit = self.configured
        if self.ceiling is not None:
            if now - self.lowered_at < self.probe_after:
                limit = min(limit, self.ceiling)
            else:
                self.ceiling = None
        if self.current >= limit:
            return None
        self.successes += 1
        if self.successes < self.recovery:
            return None
        self.successes = 0
        self.current += 1
        return self.current


CapReport = Callable[[int, int], None]
"""Called with (previous, new) when the effective cap moved."""


class Slots(Protocol):
    """The slot counter and effective cap of one limit key, behind a :class:`Limiter`.

    ``try_take(ticket)`` takes a slot now if one is free (True) or queues the
    caller under ``ticket`` (a number unique within the limiter) and returns
    False; the limiter then waits for a local ``give_back`` or ``poll_s``
    seconds (``None``: only a local ``give_back`` can free a slot) and asks
    again with the same ticket, or ``withdraw``s it. ``contended`` says that
    someone else (another process) waits for a slot, so idle sessions should
    not be kept. ``lower``/``success`` move the cap (AIMD, :class:`AdaptiveCap`)
    and call ``report(previous, new)`` when it moved, now or later.

    .. versionadded:: 0.3
    """

    @property
    def cap(self) -> AdaptiveCap: ...
    @property
    def poll_s(self) -> float | None: ...
    @property
    def contended(self) -> bool: ...
    async def try_take(self, ticket: int) -> bool: ...
    async def withdraw(self, ticket: int) -> None: ...
    async def give_back(self) -> None: ...
    def lower(self, opened_at: float, open_now: int | None, lingering: bool, report: CapReport) -> None: ...
    def success(self, report: CapReport) -> None: ...
    async def close(self) -> None: ...


class LocalSlots:
    """In-process slots: a counter and an :class:`AdaptiveCap` (the default)."""

    poll_s: float | None = None
    contended = False

    def __init__(self, limits: Limits) -> None:
        self.cap = AdaptiveCap.from_limits(limits)
        self.held = 0

    async def try_take(self, ticket: int) -> bool:
        if self.held < self.cap.current:
            self.held += 1
            return True
        return False

    async def withdraw(self, ticket: int) -> None:
        return None

    async def give_back(self) -> None:
        self.held -= 1

    def lower(self, opened_at: float, open_now: int | None, lingering: bool, report: CapReport) -> None:
        previous = self.cap.current
        new = self.cap.lower(opened_at, time.monotonic(), open_now, lingering=lingering)
        if new is not None:
            report(previous, new)

    def success(self, report: CapReport) -> None:
        previous = self.cap.current
        new = self.cap.success(time.monotonic())
        if new is not None:
            report(previous, new)

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class AdaptiveRate:
    """The effective pace of one destination with ``max_messages_per_minute``.

    ``lower(now)`` on a throttling reply inside a session (a rate limit): the
    pace halves (never below 1/64 of the configured one), at most once per
    ``max(1 s, two intervals)``, since replies to transactions already under
    way say nothing new. ``success()``: every ``recovery`` transactions in a
    row it gains a tenth of the configured pace, up to the configured pace.
    """

    configured: float
    current: float
    recovery: int
    successes: int = 0
    lowered_at: float = float("-inf")

    def lower(self, now: float) -> float | None:
        self.successes = 0
        if now - self.lowered_at < max(1.0, 120.0 / self.current):
            return None
        floor = self.configured / 64
        if self.current <= floor:
            return None
        self.current = max(floor, self.current / 2)
        self.lowered_at = now
        return self.current

    def success(self) -> float | None:
        if self.current >= self.configured:
            return None
        self.successes += 1
        if self.successes < self.recovery:
            return None
        self.successes = 0
        self.current = min(self.configured, self.current + self.configured / 10)
        return self.current


class Limiter:
    """Connection slots, the adaptive cap and pacing for one limit key.

    ``slots`` holds the slot counter and the cap: in-process by default, or
    shared by several processes (``redis_limiter.redis_limiter()``). ``logger`` is the
    application's, if it gave one; the limiter keeps who its events are about (its
    name), never a logger bound to the configuration of the moment.
    """

    def __init__(self, name: str, limits: Limits, logger: Logger | None = None,
                 slots: Slots | None = None) -> None:
        self.name = name
        self.limits = limits
        self.slots: Slots = slots if slots is not None else LocalSlots(limits)
        self.open = 0
        self.opening = 0  # of ``open``: connections still between connect and the end of AUTH
        self.cond = asyncio.Condition()
        self.context = LogContext(name, logger)
        self._pools: list[DestinationPool] = []
        self._not_before = 0.0
        self._next_send = 0.0
        rate = limits.max_messages_per_minute
        self.rate = AdaptiveRate(rate, rate, limits.cap_recovery) if rate is not None else None
        self._closed_at = float("-inf")
        self._tickets = 0
        self._raised = False  # the cap rose since the last wake-up: more than one waiter may go
        self.waiting = 0  # sends blocked in take()

    def wake(self) -> None:
        """Wake the waiters that what just changed (one session or one slot)
        lets go on: one, or all of them after the cap rose. Waking only one
        keeps a release from running every waiting send through the loop.
        Call with ``cond`` held."""
        if self._raised:
            self._raised = False
            self.cond.notify_all()
        else:
            self.cond.notify(1)

    @property
    def cap(self) -> AdaptiveCap:
        return self.slots.cap

    def register(self, pool: DestinationPool) -> None:
        self._pools.append(pool)

    async def take(self, pool: DestinationPool) -> bool:
        """Wait for a free slot and take it (True), or return False as soon as
        ``pool`` has an idle session to reuse instead. Waits out a hold-off a
        server asked for before taking a slot, never while holding one."""
        while (delay := self._not_before - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        async with self.cond:
            self._tickets += 1
            ticket, taken = self._tickets, False
            try:
                while True:
                    if pool.has_idle():
                        return False
                    if await self.slots.try_take(ticket):
                        self.open += 1
                        taken = True
                        return True
                    # Idle sessions of other pools under this limit hold slots
                    # that a waiting send needs: close one of them.
                    for other in self._pools:
                        if other is not pool and other.retire_one_idle():
                            break
                    poll_s = self.slots.poll_s
                    self.waiting += 1
                    try:
                        if poll_s is None:
                            await self.cond.wait()
                        else:  # another process may free a slot: ask again after poll_s
                            try:
                                async with asyncio.timeout(poll_s):
                                    await self.cond.wait()
                            except TimeoutError:
                                pass
                    except asyncio.CancelledError:
                        # A wake-up meant for this send must not be lost with it.
                        self.wake()
                        raise
                    finally:
                        self.waiting -= 1
            finally:
                if not taken:
                    await self.slots.withdraw(ticket)

    async def give_back(self, *, lingers: bool = True) -> None:
        """Free a slot. ``lingers``: the connection was established, so the
        server may count it for a moment after it closed (a refused one never
        was counted)."""
        if lingers:
            self._closed_at = time.monotonic()
        async with self.cond:
            self.open -= 1
            await self.slots.give_back()
            self.wake()

    def retire_idle(self) -> None:
        """Close every idle session under this limit in the background: someone
        elsewhere (another process) waits for the slots they hold."""
        for pool in self._pools:
            while pool.retire_one_idle():
                pass

    def keep_idle(self) -> bool:
        """Whether a released session may stay open for reuse: not above the
        cap, and nobody elsewhere waiting for a slot."""
        return self.open <= self.cap.current and not self.slots.contended

    async def close(self) -> None:
        """Let go of what the slots hold outside this process (a no-op in-process)."""
        await self.slots.close()

    async def pace(self) -> None:
        """Wait for this limit's next transaction turn (``max_messages_per_minute``,
        slower while the server rate-limits)."""
        if self.rate is None:
            return
        now = time.monotonic()
        at = max(now, self._next_send)
        self._next_send = at + 60.0 / self.rate.current
        if at > now:
            await asyncio.sleep(at - now)

    def hold_off(self, seconds: float) -> None:
        """No new connection for ``seconds``: the server named a wait."""
        self._not_before = max(self._not_before, time.monotonic() + seconds)

    def throttled(self, reply: Reply, opened_at: float, *, established: bool = False,
                  cause: LogContext | None = None) -> None:
        """The server throttled a connection opened at ``opened_at``
        (monotonic): lower the effective cap, and close idle sessions above it.

        A connection refused while opening (``established`` false) tells the
        level the server refused: the sessions already established, plus this
        one. Connections still opening are not counted: the server may not
        have counted them yet. A throttle inside an established session (a
        rate limit) tells no level. ``cause`` is the context of the send the
        reply came to: the move is logged with its ``message_id`` and ``send_id``."""
        context = self.context if cause is None else self.context.with_keys(**dict(cause.keys))

        def report(previous: int, new: int) -> None:
            emit(
                context, events.CAP_LOWERED, connections_cap=new, previous_cap=previous,
                configured_cap=self.cap.configured, connections_active=self.open, **reply_keys(reply),
            )
            surplus = self.open - new
            for pool in self._pools:
                while surplus > 0 and pool.retire_one_idle():
                    surplus -= 1

        lingering = time.monotonic() - self._closed_at < LINGER_S
        open_now = None if established else self.open - self.opening + 1
        self.slots.lower(opened_at, open_now, lingering, report)
        if established and self.rate is not None:  # a rate limit inside a session: slow down
            previous = self.rate.current
            if (pace := self.rate.lower(time.monotonic())) is not None:
                emit(context, events.RATE_LOWERED, messages_per_minute=round(pace, 3),
                     previous=round(previous, 3), configured=self.rate.configured, **reply_keys(reply))

    def succeeded(self) -> None:
        def report(previous: int, new: int) -> None:
            self._raised = True
            emit(
                self.context, events.CAP_RAISED, connections_cap=new, previous_cap=previous,
                configured_cap=self.cap.configured, connections_active=self.open, **reply_keys(None),
            )

        self.slots.success(report)
        if self.rate is not None:
            previous = self.rate.current
            if (pace := self.rate.success()) is not None:
                emit(self.context, events.RATE_RAISED, messages_per_minute=round(pace, 3),
                     previous=round(previous, 3), configured=self.rate.configured, **reply_keys(None))


async def _socket_closed() -> None:
    """Let the loop run the transport's close callback, so the socket is shut
    (its FIN sent) before the slot is free for a new connection; otherwise a
    server could see the new connection before the old one's end."""
    await asyncio.sleep(0)


@dataclass(frozen=True, slots=True, eq=False)
class Lease:
    """A connection lent to one send: the session, whether it was reused,
    when it was opened (monotonic seconds), and the :class:`Limiter` it counts
    against. Pacing, throttling and successes of the send go through that
    limiter, so one send has one source of connections and signals.

    ``release(reusable=...)`` gives it back (kept for reuse, or closed);
    releasing twice does nothing. As an async context manager it is released
    on exit, reusable unless the block raised.

    .. versionadded:: 0.4
    """

    session: Session
    reused: bool
    opened_at: float
    limiter: Limiter
    source: SessionSource = field(repr=False)
    _released: list[bool] = field(default_factory=lambda: [False], repr=False)

    async def release(self, *, reusable: bool) -> None:
        if self._released[0]:
            return
        self._released[0] = True
        await self.source.give_back(self.session, reusable=reusable)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.session.abort()  # cut short in the middle of something: fit for nothing else
        await self.release(reusable=exc_type is None)


@dataclass(frozen=True, slots=True)
class Refusal:
    """No connection: the reply or failure that kept one from opening (its
    slot already given back), when the opening began, and the limiter it was
    counted against.

    .. versionadded:: 0.4
    """

    evidence: Evidence
    opened_at: float
    limiter: Limiter


class SessionSource(Protocol):
    """Where a send takes its connections from: a :class:`DestinationPool`,
    or the one connection an smtplib-style caller holds.

    .. versionadded:: 0.4
    """

    async def lease(self) -> Lease | Refusal: ...
    async def give_back(self, session: Session, *, reusable: bool) -> None: ...


class DestinationPool:
    """Open, reuse and close sessions to one endpoint, under a :class:`Limiter`.

    ``acquire()`` gives an idle session if there is one, else opens a new one
    when the limiter gives a slot, else waits. ``release()`` keeps a healthy
    session for reuse (closed after ``idle_timeout`` unused) or closes it.
    """

    def __init__(self, endpoint: Endpoint, limits: Limits, logger: Logger | None = None,
                 limiter: Limiter | None = None) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.limiter = limiter if limiter is not None else Limiter(endpoint.destination, limits, logger)
        self.limiter.register(self)
        self._idle: list[Session] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.TimerHandle | None = None

    @property
    def cap(self) -> AdaptiveCap:
        return self.limiter.cap

    @property
    def active(self) -> int:
        """Connections open or being opened under this pool's limit (idle ones included)."""
        return self.limiter.open

    def has_idle(self) -> bool:
        return bool(self._idle)

    async def lease(self) -> Lease | Refusal:
        """An idle session if there is one, else a new one when the limiter
        gives a slot (waiting for one meanwhile), as a :class:`Lease`; or the
        :class:`Refusal` of the server or the network when it would not open."""
        while True:
            while self._idle:
                session = self._idle.pop()
                if session.in_step and self._fresh(session):
                    return Lease(session, True, session.opened_at, self.limiter, self)
                # Close a stale session before opening a new one, so the
                # server never sees more than the cap at once.
                await self._retire(session)
            if await self.limiter.take(self):
                break
        started = time.monotonic()
        self.limiter.opening += 1
        try:
            opened = await open_session(self.endpoint, opened_at=started)
        except BaseException:
            await self.limiter.give_back(lingers=False)
            raise
        finally:
            self.limiter.opening -= 1
        if not isinstance(opened, Session):
            await _socket_closed()
            await self.limiter.give_back(lingers=False)
            return Refusal(opened, started, self.limiter)
        return Lease(opened, False, started, self.limiter, self)

    async def acquire(self) -> tuple[Session | Evidence, bool, float]:
        """:meth:`lease` as a tuple (session or evidence, reused, opened at).

        .. deprecated:: 0.4
           Use :meth:`lease`, whose :class:`Lease` also names its limiter.
        """
        got = await self.lease()
        if isinstance(got, Refusal):
            return got.evidence, False, got.opened_at
        return got.session, got.reused, got.opened_at

    def _fresh(self, session: Session) -> bool:
        return time.monotonic() - session.last_used < self.limits.idle_timeout

    async def release(self, session: Session, *, reusable: bool) -> None:
        """Keep ``session`` for the next transaction, or close it and free its slot."""
        await self.give_back(session, reusable=reusable)

    async def give_back(self, session: Session, *, reusable: bool) -> None:
        """Keep ``session`` for the next transaction, or close it and free its slot
        (what :meth:`Lease.release` calls)."""
        keep = (
            reusable
            and session.in_step
            and session.transactions < self.limits.max_messages_per_connection
            and self.limiter.keep_idle()
            and self.limits.idle_timeout > 0
        )
        if not keep:
            await self._retire(session)
            return
        session.last_used = time.monotonic()
        async with self.limiter.cond:
            self._idle.append(session)
            self.limiter.wake()
            handed_over = self.limiter.waiting > 0
        self._schedule_reap()
        if handed_over:
            # Let the send just woken take the session and start its transaction
            # now: the server idles until it does, while the caller's own
            # bookkeeping (decisions, the log, the result) can wait a moment.
            await asyncio.sleep(0)

    async def _retire(self, session: Session) -> None:
        await session.quit()
        await _socket_closed()
        if session.aborted:
            # We cut the connection (a timeout): the server learns of it only
            # when it reads our FIN; give it that moment before the next connect.
            await asyncio.sleep(ABORT_GRACE_S)
        await self.limiter.give_back()

    def retire_one_idle(self) -> bool:
        """Close the oldest idle session in the background; False if none."""
        if not self._idle:
            return False
        session = self._idle.pop(0)
        task = asyncio.get_running_loop().create_task(self._retire(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return True

    def _schedule_reap(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(self.limits.idle_timeout, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        for s in [s for s in self._idle if not (s.in_step and self._fresh(s))]:
            self._idle.remove(s)
            self._idle.insert(0, s)
            self.retire_one_idle()
        if self._idle:
            self._schedule_reap()

    def throttled(self, reply: Reply, opened_at: float, *, established: bool = False,
                  cause: LogContext | None = None) -> None:
        self.limiter.throttled(reply, opened_at, established=established, cause=cause)

    def succeeded(self) -> None:
        self.limiter.succeeded()

    async def close(self) -> None:
        """QUIT every idle session and wait for closes under way."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        for session in idle:
            await self._retire(session)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
