"""The queue runner: deliver due entries with the same engine as a send.

A :class:`QueueRunner` claims due entries with a lease (owner id and
``lease_until``), resends each entry's due recipients through
``Mailer.deliver()`` (so classification, retries, caps and the decision log
are the ones a first send gets), and writes the outcome back: delivered and
failed recipients leave the entry, deferred ones get their new
``next_attempt_at``, and the entry goes when nothing is pending.

It sits above the queue (``queue/`` is storage) and uses only the
:class:`~smtpretry.queue.Queue` protocol and ``Mailer.deliver()``.

Leases are short (30 s by default) and renewed while a send runs, so two
runners never send the same entry at once. Before it sends, the runner marks
the recipients it is about to send (``Queue.mark_sending``: they are flagged
``possible_duplicate`` in the store), and the update after the send clears
the mark by recording the outcome. So whatever stops a runner between the two
(SIGKILL, power loss, Ctrl-C, a write-back that fails on a full disk or a lost
backend), the next claim knows which recipients the server may hold a copy
for. Under at-least-once (the default) they are sent again, flagged
``possible_duplicate`` in the result. Under ``Delivery.AT_MOST_ONCE`` (the
policy of the entry's Mailer) they are never sent again: they are taken as
delivered (``message_delivered`` with ``assumed=True``), as the engine does
after a lost final reply. If the mark cannot be written, nothing is sent,
so an entry whose lease ran out with nothing marked (``interrupted``) was not
being sent, and is sent as any other. (What runners older than 0.4 held, as
they marked nothing, is marked when the queue is migrated or the entry met.)

A runner that cannot write an entry back after a send logs
``smtpretry.writeback_failed``, claims nothing more, lets the sends in flight
finish (and write back, if they can), and raises the :class:`QueueError`, whose
``result`` is that send's :class:`~smtpretry.SendResult`.

Credentials are never in the queue: ``mailer_factory(destination)`` builds
the :class:`~smtpretry.Mailer` for an entry's destination from the caller's
configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from . import events
from ._logging import LogContext, Logger, emit, reply_keys
from .errors import QueueError
from .policy import Delivery
from .queue.base import Destination, Queue, QueueEntry, open_queue, pending_from_outcome
from .result import SendResult

if TYPE_CHECKING:
    from .decide import RecipientState
    from .envelope import Envelope
    from .limits import DestinationPool
    from .policy import RetryPolicy

__all__ = ["QueueRunStats", "QueueRunner", "Resender"]


class Resender(Protocol):
    """What the runner needs of what ``mailer_factory`` returns: a
    :class:`~smtpretry.Mailer`, or a :class:`~smtpretry.router.RoutedResend`
    for a Router's MX route entry.

    .. versionadded:: 0.5
    """

    @property
    def policy(self) -> RetryPolicy: ...
    @property
    def pool(self) -> DestinationPool: ...
    async def deliver(self, envelope: Envelope, /, *, states: Mapping[str, RecipientState] | None = ...,
                      enqueue: bool = ..., suspensions: Queue | None = ...) -> SendResult: ...
    async def close(self) -> None: ...


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
    :param logger: a structlog-style logger for the runner's own events
        (``message_expired``, ``writeback_failed``, an assumed ``message_delivered``)

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        queue: Queue | str | None,
        mailer_factory: Callable[[Destination], Resender],
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
        self._mailers: dict[Destination, Resender] = {}
        self._held: set[str] = set()
        self.stats = QueueRunStats()
        """The totals of the run in progress, or of the last one: what a run stopped
        from outside (cancelled, Ctrl-C) had done by then."""

    @property
    def in_flight(self) -> int:
        """Entries claimed and being sent right now."""
        return len(self._held)

    def _context(self, entry: QueueEntry) -> LogContext:
        return LogContext(entry.destination.key, self._logger, (("message_id", entry.message_id),))

    async def run(self, *, once: bool = False) -> QueueRunStats:
        """Deliver due entries. With ``once``, every entry due when it is
        claimed is attempted at most once, and the run returns when nothing
        more is due; else it polls until cancelled.

        :raises QueueError: the queue cannot be read or written. The run then
            claims nothing more and lets the sends in flight finish first. When
            it was the write-back after a send that failed, ``result`` is that
            send's :class:`~smtpretry.SendResult`, and the recipients it sent
            are flagged in the queue as possible duplicates (see the module's
            docstring).
        """
        stats = self.stats = QueueRunStats()
        seen: set[str] = set()
        tasks: set[asyncio.Task[None]] = set()
        failure: QueueError | None = None
        renewer = asyncio.create_task(self._renew_forever())
        try:
            while True:
                free = self.concurrency - len(tasks)
                if free > 0 and failure is None:
                    try:
                        batch = await self._claim(free, seen if once else None)
                    except QueueError as exc:
                        failure, batch = _first(failure, exc), []
                    for entry in batch:
                        self._held.add(entry.id)
                        tasks.add(asyncio.create_task(self._process(entry, stats)))
                    free -= len(batch)
                if not tasks:
                    if failure is not None:
                        raise failure
                    if once:
                        return stats
                    await asyncio.sleep(self.poll_interval_s)
                    continue
                done, _ = await asyncio.wait(
                    tasks, timeout=None if once or free == 0 or failure else self.poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    tasks.discard(task)
                    try:
                        task.result()
                    except QueueError as exc:
                        # Stop claiming; the sends in flight finish and write back if they can.
                        failure = _first(failure, exc)
        finally:
            # Cancelled (Ctrl-C), or stopped by an error that is not the queue's: the
            # entries still held are due again at once, not after the lease. What a
            # send cut short had begun is marked, so the next claim knows it.
            unfinished = list(self._held)
            renewer.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(renewer, *tasks, return_exceptions=True)
            if unfinished:
                with contextlib.suppress(Exception):
                    await self.queue.release(unfinished, owner=self.owner)
            self._held.clear()
            if self._close_mailers:
                for mailer in self._mailers.values():
                    await mailer.close()
                self._mailers.clear()

    async def _claim(self, free: int, seen: set[str] | None) -> list[QueueEntry]:
        batch = await self.queue.claim(
            owner=self.owner, now=self._clock(), lease_s=self.lease_s, limit=free,
            destination=self.destination,
        )
        if seen is None:
            return batch
        # Once: an entry deferred again within this run may already be due by the
        # runner's clock; leave it for the next run.
        again = [e.id for e in batch if e.id in seen]
        if again:
            await self.queue.release(again, owner=self.owner)
        batch = [e for e in batch if e.id not in seen]
        seen.update(e.id for e in batch)
        return batch

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if self._held:
                # A lease lost meanwhile (the process stalled longer than lease_s)
                # may have gone to another runner; the update after the send
                # still applies, so the worst case is one duplicate copy, flagged.
                # A renewal that fails (a full disk, a lost backend) is tried
                # again at the next tick.
                with contextlib.suppress(QueueError):
                    await self.queue.renew(
                        list(self._held), owner=self.owner, now=self._clock(), lease_s=self.lease_s
                    )

    def _mailer(self, destination: Destination) -> Resender:
        mailer = self._mailers.get(destination)
        if mailer is None:
            mailer = self._mailers[destination] = self._factory(destination)
        return mailer

    async def _process(self, entry: QueueEntry, stats: QueueRunStats) -> None:
        try:
            await self._attempt(entry, stats)
        finally:
            self._held.discard(entry.id)
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
        records = [r for r in entry.recipients if r.next_attempt_at <= now]
        if not records:
            await self.queue.release([entry.id], owner=self.owner)
            return
        try:
            mailer = self._mailer(entry.destination)
        except BaseException:
            # No Mailer for it (a profile the configuration lacks, an unset password):
            # nothing was sent, so the entry is given back at once, not after its lease.
            with contextlib.suppress(Exception):
                await self.queue.release([entry.id], owner=self.owner)
            raise
        # Recipients the server may already hold a copy for: a send of them began
        # and its outcome was never written back, or a reply was lost after the dot.
        flagged = {r.address for r in records if r.possible_duplicate}
        taken: list[str] = []
        if mailer.policy.delivery is Delivery.AT_MOST_ONCE:
            taken = [r.address for r in records if r.address in flagged]
        send = [r.address for r in records if r.address not in taken]
        if not send:
            await self.queue.update(entry.id, owner=self.owner, remove=taken, defer=(), now=self._clock())
            self._assumed(entry, taken, mailer, stats)
            return
        try:
            held = await self.queue.mark_sending(entry.id, owner=self.owner, recipients=send)
        except QueueError as exc:
            with contextlib.suppress(Exception):
                await self.queue.release([entry.id], owner=self.owner)
            raise _explained(exc, f"before sending queue entry {entry.id}: nothing was sent", None) from exc
        if not held:
            return  # the lease ran out and the entry may be another runner's now: not ours to send
        due = {r.address: r.state() for r in records if r.address in send}
        stopped: QueueError | None = None
        try:
            # The queue's suspensions stand for every Mailer the runner drives, with a queue
            # of its own or none: a suspended destination's recipients are deferred unsent.
            sent = await mailer.deliver(entry.envelope_for(send), states=due, enqueue=False,
                                        suspensions=self.queue)
        except QueueError as exc:
            # The send could not go on (the shared backend gave no connection slot);
            # what it did is on the error: write that back, then stop.
            if exc.result is None:
                raise
            sent, stopped = exc.result, exc
        result = _flagged(sent, flagged)
        deferred = [pending_from_outcome(o, due[r]) for r, o in result.deferred.items()]
        try:
            await self.queue.update(
                entry.id, owner=self.owner, remove=[*taken, *result.delivered, *result.failed],
                defer=deferred, now=self._clock(),
            )
        except QueueError as exc:
            # The mark written before the send stays: the next claim sends these
            # again flagged possible_duplicate (at most once: takes them as delivered).
            emit(
                self._context(entry), events.WRITEBACK_FAILED, queue_id=entry.id, recipients=send,
                delivered=result.delivered, error=f"{type(exc).__name__}: {exc}", queue=self.queue.url,
            )
            raise _explained(
                exc,
                f"the outcome of sending queue entry {entry.id} was not written back; its "
                f"{len(send)} recipient(s) stay marked as possible duplicates for the next attempt",
                result,
            ) from exc
        if taken:
            self._assumed(entry, taken, mailer, stats)
        expired = [r for r, o in result.failed.items() if o.expired]
        stats.delivered += len(result.delivered)
        stats.deferred += len(deferred)
        stats.failed += len(result.failed) - len(expired)
        stats.expired += len(expired)
        stats.possible_duplicates += len(result.possible_duplicates)
        if expired:
            await self._expired(entry.restricted(expired))
        if stopped is not None:
            raise _explained(
                stopped, f"while sending queue entry {entry.id}; what it did is written back", result
            ) from stopped

    def _assumed(self, entry: QueueEntry, taken: list[str], mailer: Resender, stats: QueueRunStats) -> None:
        """At most once: a send of ``taken`` began and its outcome is unknown, so
        they are never sent again (``update`` has removed them)."""
        stats.delivered += len(taken)
        emit(
            self._context(entry).with_keys(queue_id=entry.id), events.MESSAGE_DELIVERED, recipients=taken,
            attempt=0, **reply_keys(None), assumed=True, connections_active=mailer.pool.active,
            connections_cap=mailer.pool.cap.current,
        )

    async def _expired(self, entry: QueueEntry) -> None:
        emit(
            self._context(entry), events.EXPIRED, queue_id=entry.id,
            recipients=[r.address for r in entry.recipients], created_at=round(entry.created_at, 3),
            expires_at=round(entry.expires_at, 3),
        )
        if self._on_expired is not None:
            outcome = self._on_expired(entry)
            if inspect.isawaitable(outcome):
                await outcome


def _flagged(result: SendResult, addresses: Collection[str]) -> SendResult:
    """``result`` with the recipients in ``addresses`` flagged ``possible_duplicate``."""
    if not addresses:
        return result
    return dataclasses.replace(result, outcomes={
        r: dataclasses.replace(o, possible_duplicate=True) if r in addresses else o
        for r, o in result.outcomes.items()
    })


def _first(failure: QueueError | None, exc: QueueError) -> QueueError:
    """The error a stopped run raises: the first one after a send (it carries that
    send's result), else the first one."""
    if failure is None or (failure.result is None and exc.result is not None):
        return exc
    return failure


def _explained(exc: QueueError, context: str, result: SendResult | None) -> QueueError:
    """``exc`` (a :class:`QueueError` or a :class:`BackendError`) again, saying
    what the runner was doing, with the send's result."""
    return type(exc)(f"{exc} ({context})", result)
