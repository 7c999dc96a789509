"""The log schema: every decision event's name, level, keys and meaning, as data.

Every decision smtpretry takes is one event with a constant name and documented keys.
This module holds them and nothing else: :data:`SPECS` is the one table that the README's
event table, the emitter (``_logging.emit``) and the log readers (``smtpretry.logs``) all
follow; a test holds them together. It imports nothing of smtpretry's and no third-party
package, so reading a log needs only this.

How an event is written (``_logging.emit``): the context keys first (:data:`COMMON_KEYS`:
``destination`` always, then those of :attr:`EventSpec.context` the event carries), then
``schema_version``, then the event's own keys in the order of :attr:`EventSpec.keys`.
structlog adds ``event``; JSON lines add ``level`` and ``timestamp``.

Adding a key to an event keeps ``schema_version`` (readers ignore keys they do not know);
changing what a key means, or removing one, raises it.

``configure_logging``, ``get_logger``, ``hash_address``, ``HashRecipients`` and ``Logger``
live in ``_logging`` (the only structlog code) and are still importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from ._logging import HashRecipients, Logger, configure_logging, get_logger, hash_address

__all__ = [
    "BACKEND_LOST",
    "CAP_LOWERED",
    "CAP_RAISED",
    "COMMON_KEYS",
    "CONNECTION_LOST",
    "DESTINATION_RESUMED",
    "DESTINATION_SUSPENDED",
    "EVENTS",
    "EVENT_PREFIX",
    "EXPIRED",
    "KEYS",
    "LEASE_LOST",
    "MESSAGE_DELIVERED",
    "QUEUED",
    "RATE_LOWERED",
    "RATE_RAISED",
    "RECIPIENT_DEFERRED",
    "RECIPIENT_FAILED",
    "RETRY_SCHEDULED",
    "SCHEMA_VERSION",
    "SEND_COMPLETED",
    "MX_SKIPPED",
    "ROUTE_RESOLVED",
    "SPECS",
    "WRITEBACK_FAILED",
    "EventSpec",
    "HashRecipients",
    "K",
    "Key",
    "Level",
    "Logger",
    "configure_logging",
    "get_logger",
    "hash_address",
    "spec",
]

SCHEMA_VERSION = 1

EVENT_PREFIX = "smtpretry."
"""Every event's name starts so; a record whose ``event`` does not is not smtpretry's."""

MESSAGE_DELIVERED = "smtpretry.message_delivered"
RETRY_SCHEDULED = "smtpretry.retry_scheduled"
RECIPIENT_DEFERRED = "smtpretry.recipient_deferred"
RECIPIENT_FAILED = "smtpretry.recipient_failed"
CONNECTION_LOST = "smtpretry.connection_lost"
CAP_LOWERED = "smtpretry.cap_lowered"
CAP_RAISED = "smtpretry.cap_raised"
RATE_LOWERED = "smtpretry.rate_lowered"
RATE_RAISED = "smtpretry.rate_raised"
SEND_COMPLETED = "smtpretry.send_completed"
QUEUED = "smtpretry.message_queued"
EXPIRED = "smtpretry.message_expired"
WRITEBACK_FAILED = "smtpretry.writeback_failed"
LEASE_LOST = "smtpretry.lease_lost"
BACKEND_LOST = "smtpretry.backend_lost"
ROUTE_RESOLVED = "smtpretry.route_resolved"
MX_SKIPPED = "smtpretry.mx_skipped"
DESTINATION_SUSPENDED = "smtpretry.destination_suspended"
DESTINATION_RESUMED = "smtpretry.destination_resumed"

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Key:
    """One key of an event and what it means there."""

    name: str
    meaning: str


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event of the schema.

    ``keys`` are the event's own keys, in the order they are written; every one is
    written every time (``null`` when it does not apply). ``context`` names the context
    keys beyond ``destination`` that the event may carry, in the order they are written:
    ``message_id`` and ``send_id`` when a send wrote it, and so on.
    """

    name: str
    level: Level
    meaning: str
    keys: tuple[Key, ...]
    context: tuple[str, ...] = ()

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)


# -- the keys --------------------------------------------------------------------------------


class K:
    """The key names, one constant each, for the code that writes or reads them: ``K.CODE``
    is ``"code"``. :data:`COMMON_KEYS` and :data:`KEYS` say what each means."""

    EVENT: Final = "event"
    SCHEMA_VERSION: Final = "schema_version"
    DESTINATION: Final = "destination"
    MESSAGE_ID: Final = "message_id"
    SEND_ID: Final = "send_id"
    TIMESTAMP: Final = "timestamp"
    LEVEL: Final = "level"
    RECIPIENTS: Final = "recipients"
    RECIPIENT: Final = "recipient"
    ATTEMPT: Final = "attempt"
    PHASE: Final = "phase"
    CODE: Final = "code"
    ENHANCED: Final = "enhanced"
    TEXT: Final = "text"
    FAILURE: Final = "failure"
    CATEGORY: Final = "category"
    ACTION: Final = "action"
    REASON: Final = "reason"
    DELAY_S: Final = "delay_s"
    NEXT_ATTEMPT_AT: Final = "next_attempt_at"
    EXPIRED: Final = "expired"
    ASSUMED: Final = "assumed"
    POSSIBLE_DUPLICATE: Final = "possible_duplicate"
    CONNECTIONS_ACTIVE: Final = "connections_active"
    CONNECTIONS_CAP: Final = "connections_cap"
    PREVIOUS_CAP: Final = "previous_cap"
    CONFIGURED_CAP: Final = "configured_cap"
    MESSAGES_PER_MINUTE: Final = "messages_per_minute"
    PREVIOUS: Final = "previous"
    CONFIGURED: Final = "configured"
    DELIVERED: Final = "delivered"
    DEFERRED: Final = "deferred"
    FAILED: Final = "failed"
    ATTEMPTS: Final = "attempts"
    DURATION_S: Final = "duration_s"
    QUEUE_ID: Final = "queue_id"
    QUEUE: Final = "queue"
    CREATED_AT: Final = "created_at"
    EXPIRES_AT: Final = "expires_at"
    LEASES: Final = "leases"
    LEASE_S: Final = "lease_s"
    BACKEND: Final = "backend"
    DOING: Final = "doing"
    ERROR: Final = "error"
    DOMAIN: Final = "domain"
    ROUTE: Final = "route"
    MX_HOSTS: Final = "mx_hosts"
    LIMIT_KEY: Final = "limit_key"
    FROM_CACHE: Final = "from_cache"
    HOST: Final = "host"
    ADDRESS: Final = "address"
    SUSPENDED_UNTIL: Final = "suspended_until"


COMMON_KEYS: MappingProxyType[str, str] = MappingProxyType({
    K.EVENT: "the event's name, one of the table's",
    K.SCHEMA_VERSION: f"the schema the keys follow ({SCHEMA_VERSION})",
    K.DESTINATION: "`host:port` of the server; on the cap, rate, lease and backend events, the limit key "
                   "(a destination, or a shared rule such as `mx:.google.com`); on the suspension events, "
                   "what was suspended (`host:port`, a host for every port, or a limit key)",
    K.MESSAGE_ID: "the message's Message-ID, on the events about a message",
    K.SEND_ID: "one id per send (a `deliver()`/`send()` call, or one queue-runner resend), the same on "
               "every event of that send",
    K.TIMESTAMP: "when it was written (ISO 8601, UTC), in JSON lines",
    K.LEVEL: "`info`, `warning` or `error`, in JSON lines",
})
"""Keys that are not an event's own: ``event`` and ``schema_version`` on every event, the
context keys (``destination`` on every event, the others where :attr:`EventSpec.context`
says), and those JSON lines add."""

KEYS: MappingProxyType[str, str] = MappingProxyType({
    K.RECIPIENTS: "the recipients the event is about (hashed with `hash_recipients`)",
    K.RECIPIENT: "the one recipient the event is about (hashed with `hash_recipients`)",
    K.ATTEMPT: "connections tried within one send, from 1 (0 where none was tried: the queue runner's "
               "assumed deliveries, the deferrals of a suspended destination)",
    K.PHASE: "where the reply came: `resolution` (a DNS outcome of the router), `connect`, "
             "`greeting`, `ehlo`, `starttls`, `auth`, `mail`, `rcpt`, `data`, `data_end`, `rset`",
    K.CODE: "the server's reply code; null when there was no reply",
    K.ENHANCED: "the reply's RFC 3463 enhanced status code (`4.2.2`), or null",
    K.TEXT: "the reply's text, or what happened when there was no reply",
    K.FAILURE: "set instead of `code` when there was no reply: `refused`, `dns`, `timeout`, "
               "`disconnected`, `ambiguous`, `tls`, `protocol`, `auth`, `size`, `unsupported`, `backend`, "
               "`suspended` (the destination is suspended: nothing was asked of it)",
    K.CATEGORY: "what the reply means (`classify()`): `throttled`, `mailbox_full`, ...",
    K.ACTION: "what to do about it: `ok`, `retry`, `defer`, `fail`",
    K.REASON: "the rule that matched, e.g. `enhanced X.2.2`",
    K.DELAY_S: "seconds until the retry (float)",
    K.NEXT_ATTEMPT_AT: "when the recipient is due again (epoch seconds)",
    K.EXPIRED: "the message outlived `max_lifetime`",
    K.ASSUMED: "taken as delivered without a reply (at-most-once after a lost reply)",
    K.POSSIBLE_DUPLICATE: "lost after the final dot: the server may have the message (RFC 1047)",
    K.CONNECTIONS_ACTIVE: "connections open or opening under the destination's limit",
    K.CONNECTIONS_CAP: "the effective connection cap",
    K.PREVIOUS_CAP: "the cap before the change",
    K.CONFIGURED_CAP: "`max_connections` as configured",
    K.MESSAGES_PER_MINUTE: "the pace after the change",
    K.PREVIOUS: "the pace before the change",
    K.CONFIGURED: "`max_messages_per_minute` as configured",
    K.DELIVERED: "recipients delivered (a count)",
    K.DEFERRED: "recipients deferred (a count)",
    K.FAILED: "recipients failed (a count)",
    K.ATTEMPTS: "connections the send tried",
    K.DURATION_S: "seconds the send took",
    K.QUEUE_ID: "the queue entry (on `message_delivered`, only the queue runner's assumed deliveries "
                "carry it)",
    K.QUEUE: "the queue's URL, password hidden",
    K.CREATED_AT: "when the message was first queued (epoch seconds)",
    K.EXPIRES_AT: "when it expired (epoch seconds)",
    K.LEASES: "how many slot leases ran out",
    K.LEASE_S: "seconds a slot lease lasts",
    K.BACKEND: "the backend's URL, password hidden",
    K.DOING: "the step skipped: `renew leases`, `give back a slot`, `move the shared cap`, "
             "`withdraw a waiting ticket`, `read suspensions`",
    K.ERROR: "the error, as `Type: message`",
    K.DOMAIN: "a recipient domain, lower case and IDNA-encoded, as routes match it",
    K.ROUTE: "the `[routes]` key that matched (`default`, `domain:example.com`, ...), or `none`",
    K.MX_HOSTS: "the domain's MX hosts in the order they are tried (empty for a profile route or a "
                "lookup that failed)",
    K.LIMIT_KEY: "the limit the domain's connections count against: an `mx:` rule, a `domain:` rule, "
                 "the sorted MX host names, or a profile's `host:port`; null when the lookup failed",
    K.FROM_CACHE: "the DNS answer came from the cache, or from a lookup already under way",
    K.HOST: "an MX host's name",
    K.ADDRESS: "the IP address tried",
    K.SUSPENDED_UNTIL: "when the suspension ends (epoch seconds)",
})
"""What each key means, one word per concept across events. :class:`EventSpec` keys take
these meanings unless the event says more."""


def _keys(*names: str, **meanings: str) -> tuple[Key, ...]:
    """The keys ``names``, in order, with the shared meaning unless ``meanings`` gives one."""
    if not set(meanings) <= set(names):
        raise ValueError(f"meanings for keys the event does not have: {set(meanings) - set(names)}")
    return tuple(Key(n, meanings.get(n, KEYS[n])) for n in names)


_EVIDENCE = (K.PHASE, K.CODE, K.ENHANCED, K.TEXT, K.FAILURE)
_CLASSIFIED = (K.CATEGORY, K.ACTION, K.REASON)
_CAUSE = {"code": "the code of the reply that caused it", "enhanced": "its enhanced status code, or null",
          "text": "its text"}
_NO_CAUSE = {"code": "null: successes caused it, not a reply", "enhanced": "null", "text": "null"}
_SEND = (K.MESSAGE_ID, K.SEND_ID)

SPECS: tuple[EventSpec, ...] = (
    EventSpec(
        MESSAGE_DELIVERED, "info",
        "the server accepted the message for these recipients (a 2xx reply to the final dot), "
        "or it is assumed to have (`assumed`)",
        _keys(K.RECIPIENTS, K.ATTEMPT, K.CODE, K.ENHANCED, K.TEXT, K.ASSUMED, K.CONNECTIONS_ACTIVE,
              K.CONNECTIONS_CAP, code="the code of the final reply; null when assumed"),
        context=(*_SEND, K.QUEUE_ID),
    ),
    EventSpec(
        RETRY_SCHEDULED, "warning",
        "these recipients are tried again on a new connection after `delay_s`",
        _keys(K.RECIPIENTS, K.ATTEMPT, K.DELAY_S, *_EVIDENCE, *_CLASSIFIED, K.CONNECTIONS_ACTIVE,
              K.CONNECTIONS_CAP,
              recipients="the recipients tried again; empty for the facade's `connect()` and the "
                         "EHLO `sendmail()` sends first, which send no message"),
        context=_SEND,
    ),
    EventSpec(
        RECIPIENT_DEFERRED, "warning",
        "this recipient comes back later, at `next_attempt_at`: a full mailbox, greylisting, "
        "retries that ran out",
        _keys(K.RECIPIENT, K.ATTEMPT, K.NEXT_ATTEMPT_AT, *_EVIDENCE, *_CLASSIFIED),
        context=_SEND,
    ),
    EventSpec(
        RECIPIENT_FAILED, "error",
        "this recipient is never tried again",
        _keys(K.RECIPIENT, K.ATTEMPT, K.EXPIRED, *_EVIDENCE, *_CLASSIFIED),
        context=_SEND,
    ),
    EventSpec(
        CONNECTION_LOST, "warning",
        "the connection was dropped, timed out or answered garbage",
        _keys(K.RECIPIENTS, K.ATTEMPT, K.POSSIBLE_DUPLICATE, *_EVIDENCE,
              code="null: there was no reply", enhanced="null"),
        context=_SEND,
    ),
    EventSpec(
        CAP_LOWERED, "warning",
        "the server throttled: fewer connections at once from now on",
        _keys(K.CONNECTIONS_CAP, K.PREVIOUS_CAP, K.CONFIGURED_CAP, K.CONNECTIONS_ACTIVE, K.CODE,
              K.ENHANCED, K.TEXT, connections_cap="the new effective cap", **_CAUSE),
        context=_SEND,
    ),
    EventSpec(
        CAP_RAISED, "info",
        "`cap_recovery` successes in a row: one more connection at once",
        _keys(K.CONNECTIONS_CAP, K.PREVIOUS_CAP, K.CONFIGURED_CAP, K.CONNECTIONS_ACTIVE, K.CODE,
              K.ENHANCED, K.TEXT, connections_cap="the new effective cap", **_NO_CAUSE),
    ),
    EventSpec(
        RATE_LOWERED, "warning",
        "a rate limit inside a session: the pace (`max_messages_per_minute`) halves",
        _keys(K.MESSAGES_PER_MINUTE, K.PREVIOUS, K.CONFIGURED, K.CODE, K.ENHANCED, K.TEXT, **_CAUSE),
        context=_SEND,
    ),
    EventSpec(
        RATE_RAISED, "info",
        "`cap_recovery` successes: the pace climbs back by a tenth of the configured pace",
        _keys(K.MESSAGES_PER_MINUTE, K.PREVIOUS, K.CONFIGURED, K.CODE, K.ENHANCED, K.TEXT, **_NO_CAUSE),
    ),
    EventSpec(
        SEND_COMPLETED, "info",
        "a send ended: how many of its recipients were delivered, deferred and failed",
        _keys(K.DELIVERED, K.DEFERRED, K.FAILED, K.ATTEMPTS, K.DURATION_S),
        context=_SEND,
    ),
    EventSpec(
        QUEUED, "info",
        "deferred recipients were written to the queue",
        _keys(K.QUEUE_ID, K.RECIPIENTS, K.NEXT_ATTEMPT_AT, K.QUEUE),
        context=_SEND,
    ),
    EventSpec(
        EXPIRED, "error",
        "recipients left the queue undelivered: the message outlived `max_lifetime`",
        _keys(K.QUEUE_ID, K.RECIPIENTS, K.CREATED_AT, K.EXPIRES_AT),
        context=(K.MESSAGE_ID,),
    ),
    EventSpec(
        WRITEBACK_FAILED, "error",
        "a queue runner sent these recipients of an entry and could not write the outcome back to "
        "the queue: they stay marked, and the next attempt sends them again flagged "
        "`possible_duplicate` (at most once: takes them as delivered)",
        _keys(K.QUEUE_ID, K.RECIPIENTS, K.DELIVERED, K.ERROR, K.QUEUE,
              recipients="what the runner sent, marked before the send",
              delivered="those of them the server accepted"),
        context=(K.MESSAGE_ID,),
    ),
    EventSpec(
        LEASE_LOST, "warning",
        "with a shared Redis backend, slot leases ran out before this process renewed them (it "
        "stalled longer than the lease), so for a moment the shared cap did not count them",
        _keys(K.LEASES, K.LEASE_S),
    ),
    EventSpec(
        BACKEND_LOST, "warning",
        "the shared backend did not answer and this step was skipped; at most one every 30 s per limit",
        _keys(K.BACKEND, K.DOING, K.ERROR),
    ),
    EventSpec(
        ROUTE_RESOLVED, "info",
        "the router chose where a domain's recipients go; `destination` is the limit key (the "
        "domain when the lookup failed)",
        _keys(K.DOMAIN, K.ROUTE, K.MX_HOSTS, K.LIMIT_KEY, K.FROM_CACHE, K.RECIPIENTS),
    ),
    EventSpec(
        MX_SKIPPED, "warning",
        "an MX address would not take a connection, so the next one is tried; `destination` is the "
        "limit key",
        _keys(K.DOMAIN, K.HOST, K.ADDRESS, K.REASON, *_EVIDENCE,
              reason="why: `refused`, `timeout`, `disconnected` (reset before the greeting), "
                     "`greeting` (a 421 greeting that is not throttling)"),
    ),
    EventSpec(
        DESTINATION_SUSPENDED, "warning",
        "a send met a suspension (`smtpretry queue suspend`) stored in its queue: until it ends, the "
        "recipients of this destination are deferred to `suspended_until` at once, without connecting "
        "(logged once per process and suspension)",
        _keys(K.SUSPENDED_UNTIL, K.REASON,
              reason="the operator's note (`queue suspend --reason`), empty without one"),
    ),
    EventSpec(
        DESTINATION_RESUMED, "info",
        "the suspension this process had met ended (it ran out, or `smtpretry queue resume` lifted it): "
        "sends connect again",
        _keys(K.SUSPENDED_UNTIL, K.REASON,
              suspended_until="when the suspension was to end", reason="the operator's note, as suspended"),
    ),
)
"""Every event smtpretry writes, in the README's order."""

EVENTS: tuple[str, ...] = tuple(s.name for s in SPECS)

_BY_NAME: MappingProxyType[str, EventSpec] = MappingProxyType({s.name: s for s in SPECS})


def spec(name: str) -> EventSpec:
    """The :class:`EventSpec` of the event ``name``.

    :raises KeyError: not an event of this schema.
    """
    return _BY_NAME[name]


_FORWARDED = frozenset({"HashRecipients", "Logger", "configure_logging", "get_logger", "hash_address"})


def __getattr__(name: str) -> Any:
    # The logging side lives in _logging (structlog); these names were always importable
    # from here. Imported on first use, so reading the schema never imports structlog.
    if name in _FORWARDED:
        from . import _logging

        return getattr(_logging, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
