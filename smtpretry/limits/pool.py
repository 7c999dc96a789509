"""Connections to one endpoint, lent to sends: :class:`DestinationPool`, the
:class:`Lease` contract and :class:`SessionSource`.

A send takes a connection with ``await source.lease()``: a :class:`Lease`
(the session, whether it was reused, when it was opened, and the limiter it
counts against) or a :class:`Refusal` carrying the evidence that kept one from
opening. Releasing a lease is idempotent. A :class:`DestinationPool` is the
source for one endpoint (host, address, port, TLS, credentials): it opens
sessions when its :class:`~smtpretry.limits.limiter.Limiter` gives a slot,
parks healthy ones there for reuse (the limiter owns the idle sessions and
the condition every waiting send waits on), and closes the spent ones.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from .._logging import LogContext, Logger
from ..endpoint import Endpoint
from ..policy import Limits
from ..reply import Evidence, Reply
from ..transport import Session, open_session
from .cap import AdaptiveCap
from .limiter import Limiter

__all__ = ["ABORT_GRACE_S", "DestinationPool", "Lease", "Refusal", "SessionSource"]

ABORT_GRACE_S = 0.02
"""Seconds a slot stays taken after we cut a connection, before it is reused."""


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


async def _socket_closed() -> None:
    """Let the loop run the transport's close callback, so the socket is shut
    (its FIN sent) before the slot is free for a new connection; otherwise a
    server could see the new connection before the old one's end."""
    await asyncio.sleep(0)


class DestinationPool:
    """Open, reuse and close sessions to one endpoint, under a :class:`Limiter`.

    :meth:`lease` gives an idle session if there is one, else opens a new one
    when the limiter gives a slot, else waits. :meth:`give_back` keeps a
    healthy session for reuse (closed after ``idle_timeout`` unused) or closes it.

    .. versionadded:: 0.1
    """

    def __init__(self, endpoint: Endpoint, limits: Limits, logger: Logger | None = None,
                 limiter: Limiter | None = None) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.limiter = limiter if limiter is not None else Limiter(endpoint.destination, limits, logger)
        self._reaper: asyncio.TimerHandle | None = None

    @property
    def cap(self) -> AdaptiveCap:
        return self.limiter.cap

    @property
    def active(self) -> int:
        """Connections open or being opened under this pool's limit (idle ones included)."""
        return self.limiter.open

    def has_idle(self) -> bool:
        return self.limiter.idle(self) > 0

    async def lease(self) -> Lease | Refusal:
        """An idle session if there is one, else a new one when the limiter
        gives a slot (waiting for one meanwhile), as a :class:`Lease`; or the
        :class:`Refusal` of the server or the network when it would not open."""
        while (session := await self.limiter.checkout(self)) is not None:
            if session.in_step and self._fresh(session):
                return Lease(session, True, session.opened_at, self.limiter, self)
            # Close a stale session before opening a new one, so the
            # server never sees more than the cap at once.
            await self.retire(session)
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
        """:meth:`give_back`.

        .. deprecated:: 0.4
           Release the :class:`Lease` instead.
        """
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
            await self.retire(session)
            return
        session.last_used = time.monotonic()
        handed_over = await self.limiter.park(self, session)
        self._schedule_reap()
        if handed_over:
            # Let the send just woken take the session and start its transaction
            # now: the server idles until it does, while the caller's own
            # bookkeeping (decisions, the log, the result) can wait a moment.
            await asyncio.sleep(0)

    async def retire(self, session: Session) -> None:
        """QUIT ``session`` (or cut it, when it is out of step) and give its slot back."""
        await session.quit()
        await _socket_closed()
        if session.aborted:
            # We cut the connection (a timeout): the server learns of it only
            # when it reads our FIN; give it that moment before the next connect.
            await asyncio.sleep(ABORT_GRACE_S)
        await self.limiter.give_back()

    def _schedule_reap(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(self.limits.idle_timeout, self._reap)

    def _reap(self) -> None:
        """Close the idle sessions that went stale (in the background)."""
        self._reaper = None
        if self.limiter.retire_idle_of(self, lambda s: not (s.in_step and self._fresh(s))):
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
        for session in self.limiter.unpark(self):
            await self.retire(session)
        await self.limiter.settle()
