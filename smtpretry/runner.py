"""The queue runner: deliver due entries with the same engine as a send.

A :class:`QueueRunner` claims due entries with a lease (owner id and
``lease_until``), resends each entry's due recipients through
``Mailer.deliver()`` (so classification, retries, caps and the decision log
are the ones a first send gets), and writes the outcome back: delivered and
failed recipients leave the entry, deferred ones get their new
``next_attempt_at``, and the entry goes when nothing is pending.

Leases are short (30 s by default) and renewed while a send runs, so two
runners never send the same entry at once, and a runner killed outright
(SIGKILL, power loss) loses nothing: its entries are due again when their
lease runs out. What such a runner had in flight may be sent twice, which is
the at-least-once guarantee. Under ``Delivery.AT_MOST_ONCE`` (the policy of
the entry's Mailer) it is never sent again: an entry whose lease ran out
unreleased (``QueueEntry.interrupted``) has its due recipients taken as
delivered (``message_delivered`` with ``assumed=True``), as the engine does
after a lost final reply, and a runner stopped while sending leaves such
entries leased rather than due at once.

The runner sits above the queue (``queue/`` is storage): it uses only the
:class:`~smtpretry.queue.Queue` protocol and ``Mailer.deliver()``.

Credentials are never in the queue: ``mailer_factory(destination)`` builds
the :class:`~smtpretry.Mailer` for an entry's destination from the caller's
configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import events
from .events import Logger
from .policy import Delivery
from .queue.base import Destination, Queue, QueueEntry, open_queue, pending_from_outcome

if TYPE_CHECKING:
    from .mailer import Mailer

__all__ = ["QueueRunStats", "QueueRunner"]


@dataclass(slots=True)
class QueueRunStats:
    """What a run did: entries attempted, and recipients delivered, deferred
    again, failed, expired (failed for age) and possibly duplicated (a
    connection lost after the final dot).

    .. versionadded:: 0.2
    """

    entries: int = 0
    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    expired: int = 0
    possible_duplicates: int = 0


def default_owner() -> str:
    """``host:pid:random``: unique per runner, readable in ``queue list``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class QueueRunner:
    """Deliver the queue's due entries.

    :param queue: a :class:`Queue`, or a URL for :func:`open_queue`
    :param mailer_factory: builds the Mailer for an entry's :class:`Destination`
        (called once per destination in a run; the Mailers are closed at the
        end of the run unless ``close_mailers=False``)
    :param concurrency: entries sent at once, at most (each Mailer's
        ``Limits`` still caps the connections per destination)
    :param lease_s: seconds a claim holds an entry; renewed every third of it
        while the entry is being sent
    :param poll_interval_s: seconds between looks at the queue when nothing is due
    :param destination: only entries for this ``Destination.key`` (``host:port``)
    :param owner: the lease owner id (default: host, pid and a random part)
    :param on_expired: called with an entry restricted to the recipients that
        expired (past ``expires_at``, or failed as expired); may be a coroutine
        function. Use it to send a bounce.
    :param on_progress: called with the running totals after each entry
    :param clock: epoch seconds
    :param logger: a structlog-style logger for the ``message_expired`` event

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        queue: Queue | str | None,
        mailer_factory: Callable[[Destination], Mailer],
        *,
        concurrency: int = 10,
        lease_s: float = 30.0,
        poll_interval_s: float = 1.0,
        destination: str | None = None,
        owner: str | None = None,
        on_expired: Callable[[QueueEntry], Awaitable[object] | object] | None = None,
        on_progress: Callable[[QueueRunStats], object] | None = None,
        clock: Callable[[], float] = time.time,
        logger: Logger | None = None,
        close_mailers: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency: expected an integer >= 1")
        if lease_s <= 0 or poll_interval_s <= 0:
            raise ValueError("lease_s and poll_interval_s: expected seconds > 0")
        self.queue = queue if queue is not None and not isinstance(queue, str) else open_queue(queue)
        self._factory = mailer_factory
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self.destination = destination
        self.owner = owner or default_owner()
        self._on_expired = on_expired
        self._on_progress = on_progress
        self._clock = clock
        self._logger = logger
        self._close_mailers = close_mailers
        self._mailers: dict[Destination, Mailer] = {}
        self._held: set[str] = set()
        self._at_most_once_sending: set[str] = set()  # held entries a send under at-most-once began

    def _log(self, entry: QueueEntry) -> Logger:
        base = self._logger if self._logger is not None else events.get_logger()
        return base.bind(destination=entry.destination.key, message_id=entry.message_id)

    async def run(self, *, once: bool = False) -> QueueRunStats:
        """Deliver due entries. With ``once``, every entry due when it is
        claimed is attempted at most once, and the run returns when nothing
        more is due; else it polls until cancelled.

        :raises QueueError: the queue cannot be read or written (the entries
            held are left to their leases).
        """
        stats = QueueRunStats()
        seen: set[str] = set()
        tasks: set[asyncio.Task[None]] = set()
        renewer = asyncio.create_task(self._renew_forever())
        try:
            while True:
                free = self.concurrency - len(tasks)
                if free > 0:
                    batch = await self.queue.claim(
                        owner=self.owner, now=self._clock(), lease_s=self.lease_s, limit=free,
                        destination=self.destination,
                    )
                    if once:
                        # An entry deferred again within this run may already be due
                        # by the runner's clock: leave it for the next run.
                        again = [e.id for e in batch if e.id in seen]
                        if again:
                            await self.queue.release(again, owner=self.owner)
                        batch = [e for e in batch if e.id not in seen]
                    for entry in batch:
                        if once:
                            seen.add(entry.id)
                        self._held.add(entry.id)
                        tasks.add(asyncio.create_task(self._process(entry, stats)))
                    free -= len(batch)
                if not tasks:
                    if once:
                        return stats
                    await asyncio.sleep(self.poll_interval_s)
                    continue
                done, _ = await asyncio.wait(
                    tasks, timeout=None if once or free == 0 else self.poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    tasks.discard(task)
                    task.result()  # a queue that cannot be written stops the run
        finally:
            # An at-most-once send cut short may have reached the server: its entry
            # stays leased and comes back interrupted, never to be sent again.
            unfinished = list(self._held - self._at_most_once_sending)
            renewer.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(renewer, *tasks, return_exceptions=True)
            if unfinished:
                # Cancelled (Ctrl-C) or stopped by an error: due again at once, not
                # after the lease. A send cut short may have reached the server.
                with contextlib.suppress(Exception):
                    await self.queue.release(unfinished, owner=self.owner)
            self._held.clear()
            self._at_most_once_sending.clear()
            if self._close_mailers:
                for mailer in self._mailers.values():
                    await mailer.close()
                self._mailers.clear()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if self._held:
                # A lease lost meanwhile (the process stalled longer than lease_s)
                # may have gone to another runner; the update after the send
                # still applies, so the worst case is one duplicate copy.
                await self.queue.renew(
                    list(self._held), owner=self.owner, now=self._clock(), lease_s=self.lease_s
                )

    def _mailer(self, destination: Destination) -> Mailer:
        mailer = self._mailers.get(destination)
        if mailer is None:
            mailer = self._mailers[destination] = self._factory(destination)
        return mailer

    async def _process(self, entry: QueueEntry, stats: QueueRunStats) -> None:
        try:
            await self._attempt(entry, stats)
        finally:
            self._held.discard(entry.id)
            self._at_most_once_sending.discard(entry.id)
        stats.entries += 1
        if self._on_progress is not None:
            self._on_progress(stats)

    async def _attempt(self, entry: QueueEntry, stats: QueueRunStats) -> None:
        now = self._clock()
        everyone = [r.address for r in entry.recipients]
        if now >= entry.expires_at:
            await self.queue.update(entry.id, owner=self.owner, remove=everyone, defer=(), now=now)
            stats.expired += len(everyone)
            await self._expired(entry)
            return
        due = {r.address: r.state() for r in entry.recipients if r.next_attempt_at <= now}
        if not due:
            await self.queue.release([entry.id], owner=self.owner)
            return
        mailer = self._mailer(entry.destination)
        if mailer.policy.delivery is Delivery.AT_MOST_ONCE:
            if entry.interrupted:
                await self._assume_sent(entry, list(due), mailer, stats)
                return
            self._at_most_once_sending.add(entry.id)
        result = await mailer.deliver(entry.envelope_for(list(due)), states=due, enqueue=False)
        deferred = [pending_from_outcome(o, due[r]) for r, o in result.deferred.items()]
        await self.queue.update(
            entry.id, owner=self.owner, remove=[*result.delivered, *result.failed], defer=deferred,
            now=self._clock(),
        )
        expired = [r for r, o in result.failed.items() if o.expired]
        stats.delivered += len(result.delivered)
        stats.deferred += len(deferred)
        stats.failed += len(result.failed) - len(expired)
        stats.expired += len(expired)
        stats.possible_duplicates += len(result.possible_duplicates)
        if expired:
            await self._expired(entry.restricted(expired))

    async def _assume_sent(self, entry: QueueEntry, due: list[str], mailer: Mailer,
                           stats: QueueRunStats) -> None:
        """At most once: the runner that held ``entry`` stopped while it may
        have been sending it, so its due recipients are never sent again."""
        await self.queue.update(entry.id, owner=self.owner, remove=due, defer=(), now=self._clock())
        stats.delivered += len(due)
        events.message_delivered(
            self._log(entry).bind(queue_id=entry.id), recipients=due, attempt=0, reply=None,
            assumed=True, connections_active=mailer.pool.active, connections_cap=mailer.pool.cap.current,
        )

    async def _expired(self, entry: QueueEntry) -> None:
        events.message_expired(
            self._log(entry), queue_id=entry.id, recipients=[r.address for r in entry.recipients],
            created_at=entry.created_at, expires_at=entry.expires_at,
        )
        if self._on_expired is not None:
            outcome = self._on_expired(entry)
            if inspect.isawaitable(outcome):
                await outcome
