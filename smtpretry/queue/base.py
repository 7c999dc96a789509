"""The deferred queue: what an entry holds, the :class:`Queue` protocol, and
:func:`open_queue`, which picks a backend from a URL.

A queue entry is one message to one destination with the recipients still
pending. Recipients of one message deferred at different times share one
entry: entries are keyed by destination, sender and message (its Message-ID,
or a hash of its bytes), and a second deferral merges into the first.

An operator acts on entries chosen by a :class:`Selection` (IDs or unique ID
prefixes, and filters: destination, recipient domain, age, sender, recipient),
holds them (a held entry is never claimed), and suspends a destination for a
while with a :class:`Suspension` kept in the queue's own store, so that every
process using the queue (every worker, with Redis) sees it.

Backends live in their own modules (``sqlite.py`` is the embedded default;
``redis.py`` is shared by several hosts) and only :func:`open_queue` names them, so
callers never change when one is added. Everything here is pure values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import urllib.parse
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from .._redis import redacted
from ..decide import RecipientState
from ..envelope import Envelope
from ..errors import QueueError
from ..reply import FailureKind
from ..result import Outcome, SendResult

__all__ = [
    "Destination",
    "PendingRecipient",
    "Queue",
    "QueueEntry",
    "QueueStats",
    "Selection",
    "Suspension",
    "covers",
    "default_queue_path",
    "entry_key",
    "entry_from_result",
    "in_force",
    "open_queue",
    "parse_destination",
    "pending_from_outcome",
    "selection_of",
]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where an entry goes: host, port and TLS mode, or the name of a
    configured profile. Credentials are never part of it: the runner's
    ``mailer_factory`` supplies them from the caller's configuration.

    An entry a :class:`~smtpretry.Router` wrote also names its ``route`` (the
    ``[routes]`` key). For an MX route there is no host to record: ``host``
    is the recipient ``domain``, ``port`` the route's ``mx_port``, and the
    domain's MX hosts are looked up again at each retry. ``provider`` is the
    limit key the recipients counted against when they were deferred (for
    listings: it may differ at the next retry).

    .. versionadded:: 0.2
    .. versionchanged:: 0.5 ``route``, ``domain`` and ``provider``
    """

    host: str
    port: int
    tls: str = "starttls"
    profile: str | None = None
    route: str | None = None
    domain: str | None = None
    provider: str | None = None

    @property
    def key(self) -> str:
        """The name entries are grouped and filtered by: ``host:port`` (as in the log)."""
        return f"{self.host}:{self.port}"

    @property
    def is_mx(self) -> bool:
        """An MX route's entry: resent by looking the domain's MX hosts up again."""
        return self.route is not None and self.domain is not None and self.profile is None

    def describe(self) -> str:
        if self.is_mx:
            return f"{self.domain} by MX (route {self.route}, {self.tls}, port {self.port})"
        base = f"{self.host}:{self.port} ({self.tls})"
        return f"{self.profile}: {base}" if self.profile else base


@dataclass(frozen=True, slots=True)
class PendingRecipient:
    """One recipient still to deliver, with what the server said last.

    ``code``/``enhanced``/``text``/``phase`` are the last reply (``failure``
    is the transport failure kind when there was no reply); ``category`` and
    ``action`` its classification. ``deferrals`` counts the deferrals so far
    (it picks the next step of ``RetryPolicy.defer_schedule``);
    ``first_attempt_at`` and ``next_attempt_at`` are epoch seconds.

    ``possible_duplicate`` says the server may already hold a copy for this
    recipient: an earlier attempt lost its connection after the final dot, or
    a runner began sending it and its outcome was never written back (the
    write-back failed, or the runner was killed). The next send of it is
    flagged ``possible_duplicate`` under at-least-once; under at-most-once it
    is taken as delivered instead.

    .. versionadded:: 0.2
    .. versionchanged:: 0.4 ``possible_duplicate``
    """

    address: str
    next_attempt_at: float
    deferrals: int = 0
    first_attempt_at: float | None = None
    code: int | None = None
    enhanced: str | None = None
    text: str = ""
    phase: str | None = None
    failure: str | None = None
    category: str | None = None
    action: str | None = None
    possible_duplicate: bool = False

    def state(self) -> RecipientState:
        """The :class:`RecipientState` to hand back to ``Mailer.deliver(states=...)``."""
        return RecipientState(self.address, (), self.deferrals, self.first_attempt_at)

    def last_reply(self) -> str:
        """One line: ``"422 4.2.2 Mailbox over quota (mailbox_full/defer)"``."""
        said = f"{self.code} {self.text}".strip() if self.code is not None else (
            f"{self.failure}: {self.text}".strip(": ") if self.failure else self.text
        )
        verdict = f" ({self.category}/{self.action})" if self.category else ""
        return f"{said}{verdict}"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    """One message waiting in the queue for one destination.

    ``data`` is the message bytes (stored encrypted by the backend; ``None``
    when the entry was listed without its body). ``next_attempt_at`` is the
    earliest of the recipients' (never later than ``expires_at``);
    ``expires_at`` is ``created_at`` plus ``RetryPolicy.max_lifetime``.
    ``owner`` and ``lease_until`` tell which runner holds it, until when.
    ``interrupted`` is set on an entry :meth:`Queue.claim` returns when its
    previous lease ran out instead of ending in an update or a release: the
    runner that held it stopped (killed, or stalled past its lease) and may
    have been sending it. ``held`` says an operator put it on hold
    (:meth:`Queue.hold`): it is never claimed, so never sent, until released.
    Times are epoch seconds.

    .. versionadded:: 0.2
    .. versionchanged:: 0.5 ``held``
    """

    id: str = ""
    key: str
    destination: Destination
    sender: str
    message_id: str | None
    recipients: tuple[PendingRecipient, ...]
    attempts: int = 0
    created_at: float
    next_attempt_at: float
    expires_at: float
    owner: str | None = None
    lease_until: float = 0.0
    data: bytes | None = None
    interrupted: bool = False
    held: bool = False

    def envelope(self) -> Envelope:
        """The envelope to send again: the pending recipients due at any time.

        :raises QueueError: the entry was read without its message bytes.
        """
        return self.envelope_for([r.address for r in self.recipients])

    def envelope_for(self, recipients: Sequence[str]) -> Envelope:
        if self.data is None:
            raise QueueError(f"queue entry {self.id}: read without its message")
        return Envelope(
            sender=self.sender,
            recipients=tuple(recipients),
            data=self.data,
            message_id=self.message_id,
            smtputf8=not all(a.isascii() for a in (self.sender, *recipients)),
            eightbit=not self.data.isascii(),
        )

    def restricted(self, addresses: Collection[str]) -> QueueEntry:
        """This entry with only the recipients in ``addresses``."""
        return dataclasses.replace(
            self, recipients=tuple(r for r in self.recipients if r.address in addresses)
        )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for ``smtpretry queue stats``: entries and recipients, how
    many entries are due now, leased by a runner, past their lifetime, or
    held, and the oldest entry's ``created_at`` and the next
    ``next_attempt_at`` of an entry not held.

    .. versionchanged:: 0.5 ``held``
    """

    entries: int
    recipients: int
    due: int
    leased: int
    expired: int
    oldest_created_at: float | None
    next_attempt_at: float | None
    held: int = 0


_HOST_PORT = re.compile(r"[^:\s]+:\d{1,5}")


def _host(name: str) -> str:
    return name.strip().lower().rstrip(".")


def covers(key: str, host: str, port: int, limit_key: str | None = None) -> bool:
    """Whether ``key``, a destination as an operator names it, covers sending
    to ``host`` on ``port`` (whose limit key, if known, is ``limit_key``):

    - ``host:port``, as the log writes a destination: that port of that host;
    - ``host``: every port of that host;
    - a limit key (``mx:.google.com``): the destinations counted under it, and,
      for an ``mx:`` key, every host ending with its suffix (as the
      configuration's ``[destinations."mx:..."]`` rule matches them);
    - anything else (``domain:example.com``): the destinations whose limit key it is.

    Host names compare without regard to case or a trailing dot. Pure.

    .. versionadded:: 0.5
    """
    key = key.strip()
    if limit_key is not None and key.lower() == limit_key.lower():
        return True
    wanted = key.lower()
    name = _host(host)
    if wanted.startswith("mx:"):
        suffix = wanted[3:].rstrip(".")
        suffix = suffix if suffix.startswith(".") else "." + suffix
        return name.endswith(suffix) or name == suffix[1:]
    if ":" in wanted:
        if _HOST_PORT.fullmatch(wanted) is None:
            return False  # a limit key of another kind (domain:...): matched above, or not at all
        h, _, p = wanted.rpartition(":")
        return _host(h) == name and int(p) == port
    return _host(wanted) == name


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """Which entries an operator's command acts on: every condition given must hold.

    - ``ids``: entry ids, each in full or a unique prefix of one (an id that
      names no entry, or a prefix that names several, is a :class:`QueueError`);
      empty: any entry;
    - ``destination``: as :func:`covers` reads it: ``host:port`` as the log
      writes it, a host for every port, or a limit key (``mx:.suffix``; a
      router's entry matches the provider it was deferred under);
    - ``domain``: a pending recipient's domain (``example.com``);
    - ``recipient``, ``sender``: a pending recipient's address, the envelope
      sender (addresses compare without regard to case);
    - ``created_before``: created at or before this instant (epoch seconds;
      the CLI's ``--older-than`` is ``now`` minus it);
    - ``held``: only held entries (True) or only those not held (False).

    :meth:`matches` applies the filters to one entry; the backends resolve
    ``ids`` against what they hold (:func:`~smtpretry.queue.entry.resolve_ids`).

    .. versionadded:: 0.5
    """

    ids: tuple[str, ...] = ()
    destination: str | None = None
    domain: str | None = None
    recipient: str | None = None
    sender: str | None = None
    created_before: float | None = None
    held: bool | None = None

    def matches(self, entry: QueueEntry) -> bool:
        """Whether ``entry`` passes the filters (``ids`` aside)."""
        d = entry.destination
        # A router's entry also names the provider (limit key) it was deferred under.
        if self.destination is not None and not covers(self.destination, d.host, d.port, d.provider):
            return False
        if self.sender is not None and entry.sender.lower() != self.sender.strip().lower():
            return False
        if self.created_before is not None and entry.created_at > self.created_before:
            return False
        if self.held is not None and entry.held != self.held:
            return False
        if self.recipient is not None:
            wanted = self.recipient.strip().lower()
            if not any(r.address.lower() == wanted for r in entry.recipients):
                return False
        if self.domain is not None:
            domain = _host(self.domain.lstrip("@"))
            if not any(_host(r.address.rpartition("@")[2]) == domain for r in entry.recipients):
                return False
        return True

    @property
    def filtered(self) -> bool:
        """Whether any filter beyond ``ids`` is given."""
        return any(v is not None for v in (self.destination, self.domain, self.recipient, self.sender,
                                           self.created_before, self.held))


def selection_of(target: str | Selection | None) -> Selection:
    """What a ``retry``/``delete``/``hold`` target means: one entry id (or a
    unique prefix), a :class:`Selection`, or ``None`` for every entry."""
    if target is None:
        return Selection()
    if isinstance(target, str):
        return Selection(ids=(target,))
    return target


@dataclass(frozen=True, slots=True)
class Suspension:
    """A destination an operator suspended until ``until`` (epoch seconds):
    its recipients are deferred until then without connecting.

    ``key`` names what is suspended as :func:`covers` reads it: ``host:port``
    (as the log writes a destination), a host (every port), or a limit key
    such as ``mx:.google.com``. ``reason`` is the operator's note (``queue
    suspend --reason``); ``created_at`` when it was made.

    .. versionadded:: 0.5
    """

    key: str
    until: float
    reason: str = ""
    created_at: float = 0.0

    def covers(self, host: str, port: int, limit_key: str | None = None) -> bool:
        """Whether this suspension covers sending to ``host:port`` (see :func:`covers`)."""
        return covers(self.key, host, port, limit_key)


def parse_destination(text: str) -> str:
    """A destination as an operator types it (``--destination``, ``queue suspend``), checked
    and normalised: ``host:port`` as the log writes it, a host (every port), or a limit
    key (``mx:.google.com``, ``domain:example.com``); lower case, no trailing dot.

    :raises ValueError: with what is expected.
    """
    value = text.strip().lower()
    expected = ("expected host:port as the log writes it (smtp.example.net:25), a host for every "
                "port, or a limit key such as mx:.google.com")
    if value.startswith(("mx:", "domain:")):
        rest = value.partition(":")[2].strip(".")
        if not rest or any(c in rest for c in " @/,"):
            raise ValueError(f"{text!r}: {expected}")
        return value.rstrip(".")
    host, sep, port = value.rpartition(":")
    if sep and not value.startswith("["):
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: port {port!r}: expected 1..65535")
        value = f"{_host(host)}:{int(port)}"
        host = _host(host)
    else:
        host = value = _host(value)
    if not host or any(c in host for c in " @/,:"):
        raise ValueError(f"{text!r}: {expected}")
    return value


def in_force(suspensions: Iterable[Suspension], now: float) -> list[Suspension]:
    """The suspensions not yet ended at ``now``, by key."""
    return sorted((s for s in suspensions if s.until > now), key=lambda s: s.key)


@runtime_checkable
class Queue(Protocol):
    """A durable store of deferred messages, shared by senders and runners.

    Every method is a coroutine and may raise :class:`QueueError` (a corrupt
    or locked store, a missing entry). A write has reached durable storage
    when its coroutine returns. Times are epoch seconds from the caller's
    clock; leases are how long (seconds) a claim holds an entry.

    .. versionadded:: 0.2
    """

    @property
    def url(self) -> str:
        """Where the queue lives, as a URL (no secrets)."""
        ...

    async def put(self, entry: QueueEntry, /) -> str:
        """Store ``entry`` (its ``id``, ``attempts`` and lease are ignored), or
        merge it into the entry with the same ``key``: its recipients replace
        those of the same address, the others are kept. Returns the entry id."""
        ...

    async def claim(
        self, *, owner: str, now: float, lease_s: float, limit: int, destination: str | None = None
    ) -> list[QueueEntry]:
        """Lease up to ``limit`` entries due at ``now`` (``next_attempt_at <= now``
        and not leased by anyone), earliest first, to ``owner`` until
        ``now + lease_s``; with ``destination`` (a ``Destination.key``) only
        entries for it. The entries come with their message bytes, and with
        ``interrupted`` set where the previous lease ran out unreleased."""
        ...

    async def renew(self, ids: Collection[str], /, *, owner: str, now: float, lease_s: float) -> set[str]:
        """Extend ``owner``'s leases on ``ids`` to ``now + lease_s``; return the
        ids still held (a lease that ran out may have been claimed by another)."""
        ...

    async def release(self, ids: Collection[str], /, *, owner: str) -> None:
        """Give up ``owner``'s leases on ``ids`` without changing them."""
        ...

    async def mark_sending(self, entry_id: str, /, *, owner: str, recipients: Collection[str]) -> bool:
        """Record, before sending, that ``owner`` is about to send ``recipients``
        of the entry: they are flagged ``possible_duplicate`` until an
        :meth:`update` records what the send did. So a send whose outcome
        cannot be written back (a full disk, a lost backend, a killed runner)
        is known on the next claim. The write is small: it never rewrites the
        message. Returns ``False``, changing nothing, when ``owner`` no longer
        holds the entry's lease (it ran out and may have gone to another
        runner), or the entry is gone: then it must not be sent.

        .. versionadded:: 0.4
        """
        ...

    async def update(
        self, entry_id: str, /, *, owner: str, remove: Collection[str],
        defer: Sequence[PendingRecipient], now: float,
    ) -> QueueEntry | None:
        """Record a delivery attempt: drop the recipients in ``remove``
        (delivered or failed), replace the ones in ``defer`` (only those still
        in the entry), count the attempt, recompute ``next_attempt_at``, and
        release ``owner``'s lease. Deletes the entry when nothing is pending and
        returns ``None``; else returns the entry (without its message).
        Recipients merged in meanwhile by a ``put`` are left as they are."""
        ...

    async def get(self, entry_id: str, /) -> QueueEntry:
        """The entry with its message bytes; :class:`QueueError` if there is none."""
        ...

    async def entries(
        self, *, limit: int | None = None, selection: Selection | None = None
    ) -> list[QueueEntry]:
        """Entries without their message bytes, by ``next_attempt_at``; with
        ``selection``, only those it selects (:class:`QueueError` for an id
        that names no entry, or a prefix that names several).

        .. versionchanged:: 0.5 ``selection``
        """
        ...

    async def retry(self, target: str | Selection | None, /, *, now: float) -> int:
        """Make one entry (an id or a unique prefix), the entries a
        :class:`Selection` selects, or every entry (``None``), and their
        recipients, due at ``now``; returns how many entries changed. Held
        entries are left as they are (release them first); leases are kept.
        :class:`QueueError` for an id that names no entry.

        .. versionchanged:: 0.5 a :class:`Selection`; held entries are left alone
        """
        ...

    async def delete(self, target: str | Selection, /) -> int:
        """Remove one entry (an id or a unique prefix) or the entries a
        :class:`Selection` selects; returns how many went. :class:`QueueError`
        for an id that names no entry. ``delete(Selection(created_before=t))``
        purges what is older than ``t``.

        .. versionchanged:: 0.5 a :class:`Selection`, and the count
        """
        ...

    async def hold(self, target: str | Selection, /, *, held: bool = True) -> int:
        """Put entries on hold (``held=False``: release them from hold). A held
        entry is never claimed, so never sent, not even after :meth:`retry`,
        until it is released; a ``put`` that merges into it keeps it held.
        Returns how many entries changed.

        .. versionadded:: 0.5
        """
        ...

    async def stats(self, *, now: float, selection: Selection | None = None) -> QueueStats:
        """Counts over every entry, or over those ``selection`` selects.

        .. versionchanged:: 0.5 ``selection``
        """
        ...

    async def suspend(self, suspension: Suspension, /) -> None:
        """Store ``suspension`` (replacing one of the same key) where every
        process using this queue reads it. Suspensions that have ended are
        dropped meanwhile.

        .. versionadded:: 0.5
        """
        ...

    async def resume(self, key: str, /) -> Suspension | None:
        """Lift the suspension of ``key``; returns the one lifted (it may have
        ended already), or ``None`` when there was none.

        .. versionadded:: 0.5
        """
        ...

    async def suspensions(self, *, now: float) -> list[Suspension]:
        """The suspensions in force at ``now`` (``until > now``), by key.

        .. versionadded:: 0.5
        """
        ...

    async def close(self) -> None:
        ...


# -- building entries from what a send did ---------------------------------------------------


def entry_key(destination: Destination, envelope: Envelope) -> str:
    """The merge key: the same message from the same sender to the same
    destination (by Message-ID, else by a hash of its bytes)."""
    message = envelope.message_id or "sha256:" + hashlib.sha256(envelope.data).hexdigest()
    parts = [destination.key, destination.profile or "", envelope.sender, message]
    if destination.route is not None:  # a Router's entry (keys of the others stay as they were)
        parts += [destination.route, destination.domain or ""]
    raw = "\0".join(parts)
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


def pending_from_outcome(outcome: Outcome, prior: RecipientState | None) -> PendingRecipient:
    """A deferred recipient's :class:`Outcome` as a queue record: one more
    deferral than ``prior`` had (not for a suspended destination's: the
    server deferred nothing, so the deferral schedule does not move on), and
    the first attempt time carried over."""
    assert outcome.next_attempt_at is not None, "only deferred outcomes go to the queue"
    first = prior.first_attempt_at if prior is not None else None
    if first is None and outcome.history:
        first = outcome.history[0].attempted_at
    reply, failure = outcome.reply, outcome.failure
    c = outcome.classification
    counted = 0 if failure is not None and failure.kind is FailureKind.SUSPENDED else 1
    return PendingRecipient(
        address=outcome.recipient,
        next_attempt_at=outcome.next_attempt_at,
        deferrals=(prior.deferrals if prior is not None else 0) + counted,
        first_attempt_at=first,
        code=reply.code if reply else None,
        enhanced=str(reply.enhanced) if reply and reply.enhanced else None,
        text=reply.text if reply else (failure.detail if failure else ""),
        phase=reply.phase.value if reply else (failure.phase.value if failure else None),
        failure=failure.kind.value if failure else None,
        category=c.category.value,
        action=c.action.value,
        possible_duplicate=outcome.possible_duplicate,
    )


def entry_from_result(
    destination: Destination, envelope: Envelope, result: SendResult, *,
    states: Mapping[str, RecipientState], max_lifetime: float, now: float,
) -> QueueEntry:
    """The queue entry for the deferred recipients of ``result``."""
    recipients = tuple(
        pending_from_outcome(o, states.get(r)) for r, o in result.deferred.items()
    )
    firsts = [r.first_attempt_at for r in recipients if r.first_attempt_at is not None]
    created = min([now, *firsts])
    expires = created + max_lifetime
    return QueueEntry(
        key=entry_key(destination, envelope),
        destination=destination,
        sender=envelope.sender,
        message_id=envelope.message_id,
        recipients=recipients,
        created_at=created,
        next_attempt_at=min(min(r.next_attempt_at for r in recipients), expires),
        expires_at=expires,
        data=envelope.data,
    )


# -- URLs --------------------------------------------------------------------------------------


def default_queue_path() -> Path:
    """``$XDG_STATE_HOME/smtpretry/queue.db``, else ``~/.local/state/smtpretry/queue.db``."""
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "smtpretry" / "queue.db"


def open_queue(url: str | os.PathLike[str] | None = None, /, *, create: bool = True) -> Queue:
    """The queue a URL names. Nothing is opened until the first call.

    - ``sqlite:///var/lib/app/queue.db`` (an absolute path after ``sqlite://``),
      ``sqlite:relative/queue.db``, or a plain file path: the embedded SQLite
      queue; ``?busy_timeout=SECONDS`` sets how long to wait for a lock;
    - ``redis://[user:password@]host:port/db`` (or ``rediss://``): the Redis
      queue shared by several hosts (``queue/redis.py``; the ``redis`` extra,
      and ``SMTPRETRY_QUEUE_KEY`` is required);
    - ``None``: SQLite at :func:`default_queue_path`.

    With ``create=False`` an SQLite queue whose file does not exist is not
    created (nor its directory or key): its first call raises
    :class:`QueueError` ``no queue at PATH``. A Redis queue has no file.

    :raises QueueError: an unknown scheme, a URL without a path, or a Redis
        URL without the redis extra or without ``SMTPRETRY_QUEUE_KEY``.

    .. versionadded:: 0.2
    .. versionchanged:: 0.5 ``create``
    """
    if url is None:
        from .sqlite import SQLiteQueue

        return SQLiteQueue(default_queue_path(), create=create)
    text = os.fspath(url)
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        from .sqlite import SQLiteQueue

        return SQLiteQueue(Path(parts.path if scheme == "file" else text).expanduser(), create=create)
    if scheme == "sqlite":
        if parts.netloc not in ("", "localhost"):
            raise QueueError(
                f"queue URL {text!r}: expected sqlite:///absolute/path.db or sqlite:relative/path.db"
            )
        path = urllib.parse.unquote(parts.path)
        if not path or path == "/":
            raise QueueError(f"queue URL {text!r}: no database path")
        query = urllib.parse.parse_qs(parts.query)
        timeout = 5.0
        if "busy_timeout" in query:
            try:
                timeout = float(query["busy_timeout"][-1])
            except ValueError:
                raise QueueError(f"queue URL {text!r}: busy_timeout: expected seconds") from None
        from .sqlite import SQLiteQueue

        return SQLiteQueue(Path(path).expanduser(), busy_timeout=timeout, create=create)
    if scheme in ("redis", "rediss"):
        if not parts.hostname and not parts.path.strip("/"):
            raise QueueError(f"queue URL {redacted(text)!r}: expected redis://host:port/db")
        try:
            from .redis import RedisQueue
        except ImportError:
            raise QueueError(
                f"queue URL {redacted(text)!r}: the Redis backend needs the redis extra "
                "(pip install 'smtpretry[redis]')"
            ) from None
        return RedisQueue(text)
    raise QueueError(f"queue URL {redacted(text)!r}: unknown scheme {scheme!r} (expected sqlite)")
