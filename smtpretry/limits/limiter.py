"""The in-process limiter of one limit key: slots, idle sessions, pacing.

A :class:`Limiter` owns everything the sends to one limit key (a destination,
or a group of MX hosts that share one limit) wait on, under its one condition
variable: the slots (held from connect to QUIT; idle connections kept for reuse
hold theirs, never a send waiting out a backoff), the idle sessions of every
pool that counts against it, and who waits. Throttling replies lower the
effective cap (``cap.AdaptiveCap``), sustained success raises it back; each
move is a logged decision. It also paces transactions
(``max_messages_per_minute``) and holds new connections off when a server named
a wait.

The slot counter and the cap sit behind :class:`~smtpretry.limits.slots.Slots`:
in-process by default, or shared by several processes through Redis
(``limits/redis.py``). Idle sessions, pacing and hold-offs stay in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Protocol

from .. import events
from .._logging import LogContext, Logger, emit, reply_keys
from ..policy import Limits
from ..reply import Reply
from .cap import AdaptiveCap, AdaptiveRate
from .slots import LocalSlots, Slots

if TYPE_CHECKING:
    from ..transport import Session

__all__ = ["LINGER_S", "Limiter", "Owner"]

LINGER_S = 2.0
"""Seconds a server may go on counting a connection we closed."""


class Owner(Hashable, Protocol):
    """What a limiter asks of a pool whose idle sessions it keeps: to close one
    of them (QUIT, then give its slot back)."""

    async def retire(self, session: Session) -> None: ...


class Limiter:
    """Connection slots, idle sessions, the adaptive cap and pacing for one limit key.

    ``slots`` holds the slot counter and the cap: in-process by default, or
    shared by several processes (``limits.redis.redis_limiter()``). ``logger`` is
    the application's, if it gave one; the limiter keeps who its events are about
    (its name), never a logger bound to the configuration of the moment.

    .. versionadded:: 0.1
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
        self._idle: dict[Owner, list[Session]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._not_before = 0.0
        self._next_send = 0.0
        rate = limits.max_messages_per_minute
        self.rate = AdaptiveRate(rate, rate, limits.cap_recovery) if rate is not None else None
        self._closed_at = float("-inf")
        self._tickets = 0
        self._raised = False  # the cap rose since the last wake-up: more than one waiter may go
        self.waiting = 0  # sends blocked in checkout()

    def _wake(self) -> None:
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

    # -- sessions and slots ------------------------------------------------------------------

    def idle(self, owner: Owner) -> int:
        """How many idle sessions of ``owner`` wait for reuse."""
        return len(self._idle.get(owner, ()))

    async def checkout(self, owner: Owner) -> Session | None:
        """An idle session of ``owner`` to reuse, or ``None`` once a slot was
        taken for a new connection (the caller opens it, and gives the slot
        back if it does not open). Waits for either; waits out a hold-off a
        server asked for before taking a slot, never while holding one."""
        parked = self._idle.get(owner)
        if parked:  # reuse needs no slot and no wait: no await between the look and the take
            return parked.pop()
        while (delay := self._not_before - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        async with self.cond:
            self._tickets += 1
            ticket, taken = self._tickets, False
            try:
                while True:
                    parked = self._idle.get(owner)
                    if parked:
                        return parked.pop()
                    if await self.slots.try_take(ticket):
                        self.open += 1
                        taken = True
                        return None
                    # Idle sessions of other pools under this limit hold slots
                    # that a waiting send needs: close one of them.
                    self._retire_one(besides=owner)
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
                        self._wake()
                        raise
                    finally:
                        self.waiting -= 1
            finally:
                if not taken:
                    await self.slots.withdraw(ticket)

    async def park(self, owner: Owner, session: Session) -> bool:
        """Keep ``session`` of ``owner`` for reuse and wake a waiting send.
        True when a send was waiting (it may take the session now)."""
        async with self.cond:
            self._idle.setdefault(owner, []).append(session)
            self._wake()
            return self.waiting > 0

    def unpark(self, owner: Owner) -> list[Session]:
        """Take every idle session of ``owner`` back, oldest first."""
        return self._idle.pop(owner, [])

    def retire_idle_of(self, owner: Owner, stale: Callable[[Session], bool]) -> int:
        """Close, in the background, the idle sessions of ``owner`` that are
        ``stale``; return how many stay idle."""
        parked = self._idle.get(owner, [])
        for session in [s for s in parked if stale(s)]:
            parked.remove(session)
            self._retire_in_background(owner, session)
        return len(parked)

    async def give_back(self, *, lingers: bool = True) -> None:
        """Free a slot. ``lingers``: the connection was established, so the
        server may count it for a moment after it closed (a refused one never
        was counted)."""
        if lingers:
            self._closed_at = time.monotonic()
        async with self.cond:
            self.open -= 1
            await self.slots.give_back()
            self._wake()

    def _retire_one(self, *, besides: Owner | None = None) -> bool:
        """Close the oldest idle session of a pool other than ``besides``, in the
        background; False if there is none."""
        for owner, parked in self._idle.items():
            if owner != besides and parked:
                self._retire_in_background(owner, parked.pop(0))
                return True
        return False

    def _retire_in_background(self, owner: Owner, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(owner.retire(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def retire_idle(self) -> None:
        """Close every idle session under this limit in the background: someone
        elsewhere (another process) waits for the slots they hold."""
        while self._retire_one():
            pass

    def keep_idle(self) -> bool:
        """Whether a released session may stay open for reuse: not above the
        cap, and nobody elsewhere waiting for a slot."""
        return self.open <= self.cap.current and not self.slots.contended

    async def settle(self) -> None:
        """Wait for the closes under way in the background."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def close(self) -> None:
        """Let go of what the slots hold outside this process (a no-op in-process)."""
        await self.settle()
        await self.slots.close()

    # -- pacing and what the server said --------------------------------------------------------

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
            while surplus > 0 and self._retire_one():
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
