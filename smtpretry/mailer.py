"""The async API: :class:`Mailer` drives the pure core over leased connections.

``Mailer.send()`` runs its first attempt directly and retries under tenacity
(``_retrying.py``). Each attempt leases a connection (a
:class:`~smtpretry.limits.Lease`) from its source, the destination's pool by
default, and runs as many transactions as the recipients still pending need
(more than one when the server takes only so many recipients at a time): a
:class:`~smtpretry.transaction.TransactionState` driven by the transport. Every
reply is classified and read once for what it says about the destination
(``decide.signal``), which goes to the lease's limiter, and for each recipient
``decide()`` says what now. Recipients whose decision is final leave the send
with an :class:`Outcome`; the rest are retried after the backoff, and deferred
when the stop condition fires. Every decision is logged (``_logging.emit``, the
schema in ``events.py``).

Before it leases a connection, a send asks its queue (:meth:`Mailer.suspension`)
whether an operator suspended the destination (``smtpretry queue suspend``): if so,
every recipient is deferred to the end of the suspension at once, and nothing is
asked of the server. The smtplib facade's sends, the queue runner's resends and a
Router's sends go through :meth:`Mailer.deliver`, so they honour it too.
"""

from __future__ import annotations

import dataclasses
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from email.message import Message
from typing import TYPE_CHECKING, Any, Self, assert_never

from . import events
from ._logging import LogContext, Logger, classified_keys, emit, evidence_keys, reply_keys
from ._retrying import run_attempts
from ._time import iso
from .classify import RULES, Action, Category, Classification, Rule
from .config import Config
from .decide import (
    Attempt,
    Decision,
    Defer,
    Fail,
    Ok,
    RecipientState,
    Retry,
    Signal,
    classify_evidence,
    decide,
    give_up,
    signal,
    suspended,
)
from .endpoint import Endpoint, TLSMode
from .envelope import Envelope, build_envelope
from .errors import ConfigError, QueueError
from .limits import DestinationPool, Lease, Limiter, Refusal, SessionSource
from .policy import Limits, RetryPolicy
from .queue.base import Destination, Queue, Suspension, entry_from_result, open_queue
from .reply import Evidence, FailureKind, Phase, Reply, TransportFailure
from .result import Outcome, SendResult, Status
from .transaction import TransactionState
from .transport import Session, encode_data

if TYPE_CHECKING:
    from .runner import QueueRunStats

__all__ = ["SUSPENSION_CHECK_S", "Mailer"]

SUSPENSION_CHECK_S = 1.0
"""A Mailer reads its queue's suspensions at most this often (seconds): a suspension
made elsewhere takes effect within that long."""
BACKEND_LOST_EVERY_S = 30.0


class Mailer:
    """Send mail to one SMTP server (a relay or a provider's submission
    service), surviving throttling and temporary failures.

    Many concurrent :meth:`send` calls share one pool of connections, reused
    across messages and never more than ``limits.max_connections`` open at
    once (less while the server throttles)::

        async with Mailer("smtp.example.net", 587, username="app", password=pw) as mailer:
            result = await mailer.send(message)

    :param tls: ``"starttls"`` (default; refuses to go on without it),
        ``"implicit"`` (port 465) or ``"none"``
    :param timeout: seconds to wait for each server reply
    :param tls_context: to trust a private CA; certificates and host names are
        always verified unless this context says otherwise
    :param allow_plaintext_auth: allow a password over an unencrypted
        connection to a host that is not on loopback
    :param limiter: a :class:`~smtpretry.limits.Limiter` shared with other
        Mailers, so that their connections count against one cap; without one,
        a ``config`` with ``backend = "redis://..."`` gives a limiter shared
        through Redis by every process (``limits.redis.redis_limiter``)
    :param policy, limits: explicit settings; otherwise those ``config`` gives
        this host (see :func:`load_config`), else the defaults
    :param queue: where deferred recipients go: a :class:`~smtpretry.queue.Queue`
        or a URL for :func:`~smtpretry.queue.open_queue`
        (``"sqlite:///var/lib/app/queue.db"``); ``None`` keeps them only in
        the returned result
    :param logger: a structlog-style logger to emit decisions to; without one,
        each decision goes to the logger smtpretry resolves when it emits it
        (structlog's once configured, else the ``logging`` logger ``"smtpretry"``)
    :param rng, clock: randomness for the jitter and the wall clock (epoch
        seconds), for tests and simulations
    :param rules: the classification table (:data:`~smtpretry.RULES` by
        default); put your own rules in front of it to extend it
    :param name: the name this Mailer's destination has in the log and in
        queue listings, when not ``host:port`` (the router names the Mailer of
        an MX route by its limit key, such as ``mx:.google.com``)
    :raises ConfigError: for a bad port, TLS mode, limit or credentials

    .. versionadded:: 0.1
    .. versionchanged:: 0.5 ``rules`` and ``name``
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: TLSMode | str = TLSMode.STARTTLS,
        timeout: float = 60.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        allow_plaintext_auth: bool = False,
        policy: RetryPolicy | None = None,
        limits: Limits | None = None,
        config: Config | None = None,
        queue: Queue | str | None = None,
        limiter: Limiter | None = None,
        logger: Logger | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        rules: Sequence[Rule] = RULES,
        name: str | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self._name = name
        self.endpoint = Endpoint(
            host=host, port=port, tls=tls,  # type: ignore[arg-type]  # checked by Endpoint
            username=username, password=password, timeout=timeout, tls_context=tls_context,
            local_hostname=local_hostname, allow_plaintext_auth=allow_plaintext_auth,
        )
        settings = (config or Config()).settings_for(host, port)
        self.config = config
        self.policy = policy if policy is not None else settings.policy
        self.limits = limits if limits is not None else settings.limits
        self._logger = logger
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._pool: DestinationPool | None = None
        self._limiter = limiter
        self._limit_key = settings.limit_key
        self._owns_limiter = False
        # Deferred recipients go to this queue (a URL opens the backend it names);
        # without one, to the queue the configuration names, if any.
        if queue is None and config is not None and config.queue_url is not None:
            queue = config.queue_url
        self.queue: Queue | None = open_queue(queue) if isinstance(queue, str) else queue
        self._owns_queue = isinstance(queue, str)
        self.profile: str | None = None
        """The ``[profiles.NAME]`` this Mailer was made from (:meth:`from_profile`):
        queue entries record it, so the runner connects with that profile again."""
        self.suspension_check_s = SUSPENSION_CHECK_S
        """How often (seconds) :meth:`suspension` reads the queue's suspensions again;
        0 reads them at every send."""
        # The suspensions last read (from which source, when by the monotonic clock),
        # the one in force here at the last look, and when a failed read was last logged.
        self._suspensions: tuple[Queue, float, list[Suspension]] | None = None
        self._suspended: Suspension | None = None
        self._suspension_lost_at = -BACKEND_LOST_EVERY_S

    @classmethod
    def from_profile(cls, config: Config, name: str, **kwargs: Any) -> Mailer:
        """A Mailer for the ``[profiles.NAME]`` of ``config``, with the
        password read from the profile's ``password_env`` variable and the
        limits and policy of the matching destination. ``kwargs`` go to the
        constructor (``timeout`` replaces the profile's).

        :raises ConfigError: no such profile (said first), or its
            ``password_env`` variable is not set.
        """
        p = config.profile(name)
        if (problem := p.unset_secret()) is not None:
            raise ConfigError(f"{config.source}: {problem}")
        kwargs.setdefault("local_hostname", p.local_hostname)
        kwargs.setdefault("timeout", p.timeout)  # the caller's timeout wins over the profile's
        mailer = cls(
            p.host, p.port, username=p.username, password=p.password, tls=p.tls,
            allow_plaintext_auth=p.allow_plaintext_auth, config=config, **kwargs,
        )
        mailer.profile = name
        return mailer

    @property
    def destination(self) -> str:
        """``host:port`` (or the ``name`` given), the name this destination has in the log."""
        return self._name if self._name is not None else self.endpoint.destination

    @property
    def pool(self) -> DestinationPool:
        if self._pool is None:
            if self._limiter is None and self.config is not None and self.config.backend_url is not None:
                from .limits.redis import redis_limiter

                self._limiter = redis_limiter(
                    self.config.backend_url, self._limit_key, self.limits, self._logger
                )
                self._owns_limiter = True
            self._pool = DestinationPool(self.endpoint, self.limits, self._logger, self._limiter)
        return self._pool

    def _context(self) -> LogContext:
        """Who this Mailer's events are about; the logger is resolved when one is emitted."""
        return LogContext(self.destination, self._logger)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, sessions: SessionSource | None = None) -> Session | Evidence:
        """Open a session (or take an idle one), retrying what can be retried
        with the policy's backoff: a throttled or refused connection. Returns
        the session, or the reply or failure that ended the attempts.

        The smtplib facade uses this for ``connect()`` and ``login()``, where
        a caller holds one connection across calls.
        """
        source = sessions if sessions is not None else self.pool
        context = self._context()
        state = RecipientState("")
        got: Session | Evidence | None = None
        limiter = self.pool.limiter

        async def attempt() -> Retry | None:
            nonlocal got, state, limiter
            leased = await source.lease()
            limiter = leased.limiter
            if isinstance(leased, Lease):
                got = leased.session
                return None
            got = leased.evidence
            c = classify_evidence(got, self.rules)
            state = state.record(Attempt(got, c, len(state.history) + 1, self._clock()))
            said = observe(limiter, context, got, c, recipients=[], attempt=len(state.history),
                           opened_at=leased.opened_at, established=False)
            decision = decide(state, self.policy, now=self._clock(), rng=self._rng, said=said)
            return decision if isinstance(decision, Retry) else None

        def before_sleep(delay_s: float) -> None:
            last = state.last
            assert last is not None
            emit(
                context, events.RETRY_SCHEDULED, recipients=[], attempt=len(state.history),
                delay_s=round(delay_s, 3), **evidence_keys(last.evidence),
                **classified_keys(last.classification), connections_active=limiter.open,
                connections_cap=limiter.cap.current,
            )

        await run_attempts(self.policy, attempt, on_retry=before_sleep)
        assert got is not None
        return got

    async def close(self) -> None:
        """QUIT the idle connections. Sends still running keep theirs."""
        if self._pool is not None:
            await self._pool.close()
            if self._owns_limiter:
                await self._pool.limiter.close()  # give back the shared slots, stop renewing
        if self.queue is not None and self._owns_queue:
            await self.queue.close()  # opened from a URL: ours to close (it reopens on use)

    async def send(
        self,
        message: Message | bytes | str,
        /,
        *,
        sender: str | None = None,
        recipients: str | Iterable[str] | None = None,
    ) -> SendResult:
        """Send ``message`` to each recipient once, retrying what can be
        retried; return what happened to every recipient.

        ``message`` is an :class:`email.message.EmailMessage` or the bytes of
        one. Without ``sender`` and ``recipients`` the envelope comes from the
        headers as in :meth:`smtplib.SMTP.send_message` (Bcc is removed).

        Server replies are never raised: each recipient ends ``delivered``,
        ``deferred`` (retries ran out, or the server said come back later) or
        ``failed`` (a permanent reply, or a message too large).

        :raises MessageError: no sender or recipients, or an address with
            control characters, before anything is sent.
        """
        rcpts = [recipients] if isinstance(recipients, str) else (
            list(recipients) if recipients is not None else None
        )
        return await self.deliver(build_envelope(message, sender, rcpts))

    async def deliver(
        self, envelope: Envelope, /, *, states: Mapping[str, RecipientState] | None = None,
        enqueue: bool = True, sessions: SessionSource | None = None, suspensions: Queue | None = None,
    ) -> SendResult:
        """Send a checked :class:`Envelope` (see :func:`build_envelope`).

        ``states`` carries what is known of recipients from earlier sends (the
        queue runner passes each recipient's deferrals and first attempt time,
        which pick the deferral step and bound the lifetime).

        With a ``queue``, deferred recipients are written to it (merged into
        the message's entry) before this returns, and ``result.queue_id``
        names the entry; ``enqueue=False`` is for the queue runner, which
        updates the entry it holds itself.

        ``sessions`` replaces this Mailer's pool as the source of sessions
        (the smtplib facade passes the connection its caller holds).

        When the destination is suspended (:meth:`suspension`, read from
        ``suspensions``, else this Mailer's queue), every recipient is deferred
        to the end of the suspension at once, without a connection.

        :raises QueueError: the queue could not be written; its ``result`` is
            this send's :class:`SendResult` (the deferred recipients in it
            were not saved).

        .. versionchanged:: 0.5 ``suspensions``, and suspended destinations
        """
        run = _Run(self, envelope, states or {}, sessions)
        held = await self.suspension(suspensions)
        if held is not None:
            run.suspended(held)
        else:
            try:
                last = await run_attempts(self.policy, run.attempt, on_retry=run.before_sleep)
            except QueueError as exc:
                # The shared backend gave no connection slot (BackendError): nothing more can
                # be sent now. The error carries what was done, so that a caller who tries
                # again sends only what is still pending, never the recipients delivered.
                run.interrupted(exc)
                exc.result = run.finish()
                raise
            if isinstance(last, Retry):
                run.give_up()
        result = run.finish()
        if self.queue is not None and enqueue and result.deferred:
            entry = entry_from_result(
                self.queue_destination, envelope, result, states=states or {},
                max_lifetime=self.policy.max_lifetime, now=self._clock(),
            )
            try:
                queue_id = await self.queue.put(entry)
            except QueueError as exc:
                exc.result = result  # the caller still learns every recipient's outcome
                raise
            emit(
                run.context, events.QUEUED, queue_id=queue_id, recipients=list(result.deferred),
                next_attempt_at=round(entry.next_attempt_at, 3), queue=self.queue.url,
            )
            result = dataclasses.replace(result, queue_id=queue_id)
        return result

    async def suspension(self, source: Queue | None = None) -> Suspension | None:
        """The suspension in force for this destination, if any: one of
        ``source``'s (this Mailer's queue by default; None without either)
        that covers its ``host:port``, its host, its limit key (see
        :func:`smtpretry.queue.base.covers`) or its name in the log, the
        latest to end if several do.

        The suspensions are read at most every :attr:`suspension_check_s`
        seconds (:data:`SUSPENSION_CHECK_S`, 1, by default). The first time
        this Mailer meets a suspension it logs ``smtpretry.destination_suspended``,
        and ``destination_resumed`` when it finds it ended. A read that fails is logged as
        ``smtpretry.backend_lost`` (``doing``: ``read suspensions``, at most
        every 30 s) and the last answer stands: a queue that cannot be read
        stops no send.

        .. versionadded:: 0.5
        """
        source = source if source is not None else self.queue
        if source is None:
            return None
        found = await self._read_suspensions(source)
        now = self._clock()
        e = self.endpoint
        name = self.destination.lower()  # a router's MX route Mailer is named by its limit key
        covering = [s for s in found if s.until > now
                    and (s.covers(e.host, e.port, self._limit_key) or s.key.lower() == name)]
        held = max(covering, key=lambda s: s.until, default=None)
        previous, self._suspended = self._suspended, held
        if previous is not None and (held is None or held.key != previous.key):
            emit(LogContext(previous.key, self._logger), events.DESTINATION_RESUMED,
                 suspended_until=round(previous.until, 3), reason=previous.reason)
        if held is not None and held != previous:
            emit(LogContext(held.key, self._logger), events.DESTINATION_SUSPENDED,
                 suspended_until=round(held.until, 3), reason=held.reason)
        return held

    async def _read_suspensions(self, source: Queue) -> list[Suspension]:
        seen = self._suspensions
        # The monotonic clock paces the reads: an injected wall clock may stand still.
        tick = time.monotonic()
        if seen is not None and seen[0] is source and tick - seen[1] < self.suspension_check_s:
            return seen[2]
        try:
            found = await source.suspensions(now=self._clock())
        except QueueError as exc:
            found = seen[2] if seen is not None and seen[0] is source else []
            if tick - self._suspension_lost_at >= BACKEND_LOST_EVERY_S:
                self._suspension_lost_at = tick
                emit(self._context(), events.BACKEND_LOST, backend=source.url, doing="read suspensions",
                     error=f"{type(exc).__name__}: {exc}")
        self._suspensions = (source, tick, found)
        return found

    @property
    def queue_destination(self) -> Destination:
        """This Mailer's destination as queue entries record it (no credentials)."""
        return Destination(self.endpoint.host, self.endpoint.port, self.endpoint.tls.value, self.profile)

    async def run_queue(self, *, once: bool = False, **runner: Any) -> QueueRunStats:
        """Deliver this destination's due queue entries with this Mailer: all
        due now and then return (``once``), or until cancelled. ``runner`` goes
        to :class:`~smtpretry.queue.QueueRunner` (``lease_s``, ``concurrency``,
        ``on_expired``, ...).

        :raises QueueError: no queue, or the queue cannot be read or written.
        """
        from .runner import QueueRunner

        if self.queue is None:
            raise QueueError("run_queue: this Mailer has no queue (Mailer(..., queue=URL))")
        runner.setdefault("clock", self._clock)
        runner.setdefault("logger", self._logger)
        return await QueueRunner(
            self.queue, lambda _destination: self, destination=self.queue_destination.key,
            close_mailers=False, **runner,
        ).run(once=once)


def observe(
    limiter: Limiter, context: LogContext, ev: Evidence, c: Classification, *,
    recipients: list[str], attempt: int, opened_at: float, established: bool = True,
    said: Signal | None = None,
) -> Signal:
    """Act on what a reply says about the destination rather than the
    recipient (:func:`~smtpretry.decide.signal`, computed here unless given):
    a lost connection is logged, throttling lowers the cap, a named wait holds
    off new connections. Returns the signal."""
    said = said if said is not None else signal(ev, c)
    if said.lost:
        emit(
            context, events.CONNECTION_LOST, recipients=recipients, attempt=attempt,
            possible_duplicate=said.possible_duplicate, **evidence_keys(ev),
        )
    if said.throttled and isinstance(ev, Reply):
        limiter.throttled(ev, opened_at, established=established, cause=context)
    if said.hold_off_s is not None:
        limiter.hold_off(said.hold_off_s)
    return said


class _Run:
    """The state of one ``send()``: each recipient's history and outcome."""

    def __init__(
        self, mailer: Mailer, envelope: Envelope, known: Mapping[str, RecipientState],
        sessions: SessionSource | None = None,
    ) -> None:
        self.mailer = mailer
        self.sessions: SessionSource = sessions if sessions is not None else mailer.pool
        self.limiter: Limiter = mailer.pool.limiter
        """The limiter of the latest connection: its cap and pace are this send's."""
        self.envelope = envelope
        self.data = encode_data(envelope.data, keep_line_endings=envelope.keep_line_endings)
        # One id per send: the events of this deliver() call, told apart from an earlier or
        # later send of the same message (a queue resend, a reused Message-ID).
        self.context = mailer._context().with_keys(
            message_id=envelope.message_id, send_id=_send_id()
        )
        self.states = {r: known.get(r) or RecipientState(r) for r in envelope.recipients}
        self.outcomes: dict[str, Outcome] = {}
        self.retries: dict[str, Retry] = {}
        self.duplicates: set[str] = set()
        self.attempts = 0
        self.started = time.monotonic()

    @property
    def pending(self) -> list[str]:
        return [r for r in self.envelope.recipients if r not in self.outcomes]

    # -- one attempt: one connection, as many transactions as it takes --------

    async def attempt(self) -> Retry | None:
        self.attempts += 1
        self.retries.clear()
        stale_allowance = 2
        while True:
            leased = await self.sessions.lease()
            self.limiter = leased.limiter
            if isinstance(leased, Refusal):
                self.settle({r: leased.evidence for r in self.pending}, leased.opened_at, established=False)
                return self.retry()
            lease, reused, reusable = leased, leased.reused, True
            try:
                todo = self.pending
                while todo:
                    try:
                        evidence, reusable, completed = await self._transaction(lease.session, todo)
                    except BaseException:
                        # Cut short (the send was cancelled): the session is in the
                        # middle of a command, fit neither for reuse nor for QUIT.
                        reusable = False
                        lease.session.abort()
                        raise
                    if reused and stale_allowance and _stale(evidence.values()):
                        # The server closed this idle connection meanwhile: not
                        # an attempt, just a dead socket. Take another session.
                        stale_allowance -= 1
                        break
                    reused = False
                    if completed and reusable and _all_accepted(evidence.values()):
                        # Nothing is left for this session to do: hand it back
                        # before deciding and logging, so that a send waiting
                        # for it starts its transaction meanwhile.
                        await lease.release(reusable=True)
                        self.settle(evidence, lease.opened_at)
                        lease.limiter.succeeded()
                        return self.retry()
                    self.settle(evidence, lease.opened_at)
                    if completed:
                        lease.limiter.succeeded()
                    # Recipients the server had no room for go in the next transaction on
                    # this connection, but only after one that delivered: a server that
                    # takes nobody would otherwise be asked again and again.
                    again = reusable and completed
                    todo = [r for r, d in self.retries.items() if d.delay_s == 0] if again else []
                    for r in todo:
                        del self.retries[r]
                else:
                    return self.retry()
            finally:
                await lease.release(reusable=reusable)

    async def _transaction(self, session: Session, todo: list[str]) -> tuple[dict[str, Evidence], bool, bool]:
        env = self.envelope
        limit = session.size_limit
        # Options given with the envelope (the smtplib facade's) go as given, SIZE included:
        # then the server, not this check, judges the size.
        if env.mail_options is None and limit is not None and len(self.data) > limit:
            too_large = TransportFailure(
                FailureKind.SIZE, Phase.MAIL, f"message of {len(self.data)} bytes, server limit {limit}"
            )
            return {r: too_large for r in todo}, True, False
        smtputf8 = env.smtputf8
        refused: dict[str, Evidence] = {}
        if smtputf8 and not session.supports("smtputf8"):
            # RFC 6531: without SMTPUTF8 a non-ASCII address cannot be named. If the
            # sender is ASCII, the ASCII recipients still go, in a plain transaction.
            unsupported = TransportFailure(
                FailureKind.UNSUPPORTED, Phase.MAIL,
                "non-ASCII address, and the server does not offer SMTPUTF8 (RFC 6531)",
            )
            needs = todo if not env.sender.isascii() else [r for r in todo if not r.isascii()]
            refused = {r: unsupported for r in needs}
            todo = [r for r in todo if r not in refused]
            smtputf8 = False
            if not todo:
                return refused, True, False
        encoding = "utf-8" if smtputf8 else "ascii"
        if env.mail_options is not None:
            given = env.mail_options if smtputf8 or not env.smtputf8 else [
                o for o in env.mail_options if o.upper() != "SMTPUTF8"  # the plain transaction above
            ]
            options = [o.encode(encoding) for o in given]
        else:
            options = [b"SIZE=%d" % len(self.data)] if limit is not None else []
            if env.eightbit and session.supports("8bitmime"):
                options.append(b"BODY=8BITMIME")
            if smtputf8:
                options.append(b"SMTPUTF8")
        state = TransactionState(
            sender=env.sender, recipients=todo, data=self.data, mail_options=options,
            rcpt_options=[o.encode(encoding) for o in env.rcpt_options], encoding=encoding,
            pipelining=session.pipelining, reset=session.needs_reset, verbs=session.verbs,
        )
        await self.limiter.pace()
        tr = await session.run(state)
        return {**refused, **tr.evidence}, tr.reusable and session.in_step, tr.completed

    # -- decisions -----------------------------------------------------------

    def settle(self, evidence: dict[str, Evidence], opened_at: float, *, established: bool = True) -> None:
        """Record and decide each recipient's evidence; log each decision."""
        now = self.mailer._clock()
        delivered: list[str] = []
        assumed: list[str] = []
        read: dict[Evidence, tuple[Classification, Signal]] = {}
        for rcpt, ev in evidence.items():
            if ev not in read:  # one reply shared by many recipients is read once
                c = classify_evidence(ev, self.mailer.rules)
                recipients = [r for r, e in evidence.items() if e == ev]
                read[ev] = c, observe(self.limiter, self.context, ev, c, recipients=recipients,
                                      attempt=self.attempts, opened_at=opened_at, established=established)
            c, said = read[ev]
            state = self.states[rcpt].record(Attempt(ev, c, self.attempts, now))
            self.states[rcpt] = state
            if said.possible_duplicate:
                self.duplicates.add(rcpt)
            decision: Decision = decide(state, self.mailer.policy, now=now, rng=self.mailer._rng, said=said)
            match decision:
                case Ok(assumed=was_assumed):
                    self._end(rcpt, Status.DELIVERED)
                    (assumed if was_assumed else delivered).append(rcpt)
                case Fail(expired=expired):
                    self._end(rcpt, Status.FAILED, expired=expired)
                    emit(self.context, events.RECIPIENT_FAILED, recipient=rcpt, attempt=self.attempts,
                         expired=expired, **evidence_keys(ev), **classified_keys(c))
                case Defer(next_attempt_at=at):
                    self._end(rcpt, Status.DEFERRED, next_attempt_at=at)
                    emit(self.context, events.RECIPIENT_DEFERRED, recipient=rcpt, attempt=self.attempts,
                         next_attempt_at=round(at, 3), **evidence_keys(ev), **classified_keys(c))
                case Retry():
                    self.retries[rcpt] = decision
                case _:
                    assert_never(decision)
        for group, was_assumed in ((delivered, False), (assumed, True)):
            if group:
                final = evidence[group[0]]
                emit(
                    self.context, events.MESSAGE_DELIVERED, recipients=group, attempt=self.attempts,
                    **reply_keys(final if isinstance(final, Reply) else None), assumed=was_assumed,
                    connections_active=self.limiter.open, connections_cap=self.limiter.cap.current,
                )

    def _end(self, rcpt: str, status: Status, *, next_attempt_at: float | None = None,
             expired: bool = False) -> None:
        state = self.states[rcpt]
        last = state.history[-1]
        self.outcomes[rcpt] = Outcome(
            recipient=rcpt, status=status, classification=last.classification,
            history=state.history, next_attempt_at=next_attempt_at,
            possible_duplicate=rcpt in self.duplicates, expired=expired,
        )

    def retry(self) -> Retry | None:
        """The attempt's verdict for tenacity: wait as long as the longest
        pending recipient needs, or stop when none is pending."""
        if not self.retries:
            return None
        return Retry(max(d.delay_s for d in self.retries.values()))

    def before_sleep(self, delay: float) -> None:
        groups: dict[Evidence, list[str]] = {}
        for rcpt in self.retries:
            last = self.states[rcpt].last
            assert last is not None
            groups.setdefault(last.evidence, []).append(rcpt)
        for ev, rcpts in groups.items():
            emit(
                self.context, events.RETRY_SCHEDULED, recipients=rcpts, attempt=self.attempts,
                delay_s=round(delay, 3), **evidence_keys(ev),
                **classified_keys(classify_evidence(ev, self.mailer.rules)),
                connections_active=self.limiter.open, connections_cap=self.limiter.cap.current,
            )

    def suspended(self, s: Suspension) -> None:
        """The destination is suspended: every recipient is deferred to the end of
        the suspension (or fails as expired past ``max_lifetime``), nothing sent."""
        until = iso(s.until)
        stop = TransportFailure(
            FailureKind.SUSPENDED, Phase.CONNECT,
            f"not connected: {s.key} is suspended until {until}" + (f" ({s.reason})" if s.reason else ""),
        )
        c = Classification(Category.SUSPENDED, Action.DEFER, f"{s.key} suspended until {until}")
        now = self.mailer._clock()
        for rcpt in self.pending:
            state = self.states[rcpt] = self.states[rcpt].record(Attempt(stop, c, 0, now))
            verdict = suspended(state, self.mailer.policy, until=s.until, now=now)
            if isinstance(verdict, Defer):
                self._end(rcpt, Status.DEFERRED, next_attempt_at=verdict.next_attempt_at)
                emit(self.context, events.RECIPIENT_DEFERRED, recipient=rcpt, attempt=0,
                     next_attempt_at=round(verdict.next_attempt_at, 3), **evidence_keys(stop),
                     **classified_keys(c))
            else:
                self._end(rcpt, Status.FAILED, expired=True)
                emit(self.context, events.RECIPIENT_FAILED, recipient=rcpt, attempt=0, expired=True,
                     **evidence_keys(stop), **classified_keys(c))

    def interrupted(self, exc: BaseException) -> None:
        """The send cannot go on (no slot from the shared backend): every
        recipient still pending gets that as its evidence and is deferred."""
        stop = TransportFailure(FailureKind.BACKEND, Phase.CONNECT, str(exc))
        now = self.mailer._clock()
        for rcpt in self.pending:
            self.states[rcpt] = self.states[rcpt].record(
                Attempt(stop, classify_evidence(stop, self.mailer.rules), max(self.attempts, 1), now)
            )
        self.give_up()

    def give_up(self) -> None:
        """Retries ran out: defer every recipient still pending."""
        now = self.mailer._clock()
        for rcpt in self.pending:
            state = self.states[rcpt]
            last = state.last
            assert last is not None
            verdict = give_up(state, self.mailer.policy, now=now)
            if isinstance(verdict, Defer):
                self._end(rcpt, Status.DEFERRED, next_attempt_at=verdict.next_attempt_at)
                emit(self.context, events.RECIPIENT_DEFERRED, recipient=rcpt, attempt=self.attempts,
                     next_attempt_at=round(verdict.next_attempt_at, 3), **evidence_keys(last.evidence),
                     **classified_keys(last.classification))
            else:
                self._end(rcpt, Status.FAILED, expired=True)
                emit(self.context, events.RECIPIENT_FAILED, recipient=rcpt, attempt=self.attempts,
                     expired=True, **evidence_keys(last.evidence), **classified_keys(last.classification))

    def finish(self) -> SendResult:
        result = SendResult(
            self.envelope.message_id, {r: self.outcomes[r] for r in self.envelope.recipients}
        )
        emit(
            self.context, events.SEND_COMPLETED, delivered=len(result.delivered),
            deferred=len(result.deferred), failed=len(result.failed), attempts=self.attempts,
            duration_s=round(time.monotonic() - self.started, 3),
        )
        return result


def _send_id() -> str:
    """12 hex digits, new for every send. From the ``random`` module, which is
    reseeded in a forked child: a system call per send (``os.urandom``) cost more
    than the rest of naming it, and the id needs to be unique, not secret."""
    return f"{random.getrandbits(48):012x}"


def _all_accepted(evidence: Iterable[Evidence]) -> bool:
    """Every recipient's evidence is a 2xx reply: the message went to all of them."""
    return all(isinstance(e, Reply) and 200 <= e.code < 300 for e in evidence)


def _stale(evidence: Iterable[Evidence]) -> bool:
    """Every recipient's evidence says the connection was already dead when
    the transaction began (RSET or MAIL found it closed)."""
    items = list(evidence)
    return bool(items) and all(
        isinstance(e, TransportFailure)
        and e.kind is FailureKind.DISCONNECTED
        and e.phase in (Phase.RSET, Phase.MAIL)
        for e in items
    )
