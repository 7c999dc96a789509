"""The decision log: event names, keys, the emitters, and ``configure_logging()``.

Every decision smtpretry takes is one structlog event with a constant name and
documented keys (the README has the table). The names and the emitters live
here only, so the log readers and the writers share them.

Importing smtpretry configures nothing and prints nothing. While structlog has
not been configured, events go to the standard ``logging`` logger
``"smtpretry"`` (which has a ``NullHandler``, so it stays silent unless the
application configures logging). Once the application configures structlog, or
calls :func:`configure_logging`, events go through structlog's pipeline.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sys
from collections.abc import Iterable
from typing import IO, Any, Protocol, TextIO, cast

import structlog

from .classify import Classification
from .reply import Evidence, Reply

__all__ = [
    "BACKEND_LOST",
    "CAP_LOWERED",
    "CAP_RAISED",
    "CONNECTION_LOST",
    "EVENTS",
    "EXPIRED",
    "MESSAGE_DELIVERED",
    "QUEUED",
    "RATE_LOWERED",
    "RATE_RAISED",
    "RECIPIENT_DEFERRED",
    "RECIPIENT_FAILED",
    "RETRY_SCHEDULED",
    "SCHEMA_VERSION",
    "SEND_COMPLETED",
    "LEASE_LOST",
    "WRITEBACK_FAILED",
    "HashRecipients",
    "Logger",
    "configure_logging",
    "get_logger",
    "hash_address",
]

SCHEMA_VERSION = 1

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

EVENTS: tuple[str, ...] = (
    MESSAGE_DELIVERED,
    RETRY_SCHEDULED,
    RECIPIENT_DEFERRED,
    RECIPIENT_FAILED,
    CONNECTION_LOST,
    CAP_LOWERED,
    CAP_RAISED,
    RATE_LOWERED,
    RATE_RAISED,
    SEND_COMPLETED,
    QUEUED,
    EXPIRED,
    WRITEBACK_FAILED,
    LEASE_LOST,
    BACKEND_LOST,
)

LOGGER_NAME = "smtpretry"


class Logger(Protocol):
    """What smtpretry needs of a logger: a structlog bound logger fits."""

    def bind(self, **kw: Any) -> Logger: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

class _StdlibLogger:
    """The default while structlog is not configured: a :class:`Logger` over
    the standard ``logging`` logger ``"smtpretry"``. It asks for the level
    first, so an event nobody listens to costs one call (the send path's
    default), and hands the keys over as the record's ``extra``."""

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        self._context = context or {}

    def bind(self, **kw: Any) -> Logger:
        return _StdlibLogger({**self._context, **kw})

    def _emit(self, level: int, event: str, kw: dict[str, Any]) -> None:
        std = logging.getLogger(LOGGER_NAME)
        if std.isEnabledFor(level):
            std.log(level, event, extra={**self._context, **kw})

    def info(self, event: str, **kw: Any) -> None:
        self._emit(logging.INFO, event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._emit(logging.WARNING, event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._emit(logging.ERROR, event, kw)


_QUIET = _StdlibLogger()


def get_logger(**bind: Any) -> Logger:
    """The logger smtpretry emits to, with ``bind`` bound: structlog's own
    when the application configured structlog, else one over the standard
    library logger ``"smtpretry"`` that stays silent by default."""
    log: Logger = structlog.get_logger(LOGGER_NAME) if structlog.is_configured() else _QUIET
    return log.bind(**bind) if bind else log


def configure_logging(
    *, json: bool = True, file: str | os.PathLike[str] | IO[str] | None = None, level: str = "info",
    hash_recipients: bool = False,
) -> None:
    """Opt in to the decision log: configure structlog to write every event
    as one JSON line (or a readable console line with ``json=False``) to
    ``file`` (a path, opened for appending with mode 0600, or an open text
    stream), or to stderr when ``file`` is None.

    ``level`` is the least level written (``"debug"``, ``"info"``,
    ``"warning"``, ``"error"``), or ``"none"`` to write nothing at all. A file
    opened by an earlier call is closed. ``hash_recipients`` writes recipient
    addresses as keyed hashes (see :class:`HashRecipients`).

    This is the only code in smtpretry that calls ``structlog.configure()``;
    applications that configure structlog themselves need not call it.

    .. versionadded:: 0.1
    """
    global _owned
    previous, _owned = _owned, None
    stream: IO[str]
    if level == "none":
        structlog.configure(processors=[_drop], logger_factory=structlog.ReturnLoggerFactory())
    else:
        if file is None:
            stream = sys.stderr
        elif isinstance(file, (str, os.PathLike)):
            fd = os.open(os.fspath(file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            stream = _owned = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        else:
            stream = file
        _configure(stream, json=json, level=level, hash_recipients=hash_recipients)
    if previous is not None:
        previous.close()  # a file an earlier call opened: nothing writes to it any more


_owned: IO[str] | None = None


def _configure(stream: IO[str], *, json: bool, level: str, hash_recipients: bool) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    privacy: list[Any] = [HashRecipients()] if hash_recipients else []
    structlog.configure(
        processors=[
            *privacy,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level.lower()),
        logger_factory=structlog.WriteLoggerFactory(cast(TextIO, stream)),
        cache_logger_on_first_use=False,
    )


HASH_KEY_ENV = "SMTPRETRY_LOG_HASH_KEY"


def hash_address(address: str, key: bytes | None = None) -> str:
    """A recipient address as it appears in a privacy-preserving log:
    ``"h:"`` and 16 hex digits of HMAC-SHA256 over the lower-cased address.
    The key is ``SMTPRETRY_LOG_HASH_KEY`` from the environment (or empty):
    with the same key, ``smtpretry logs trace --recipient ADDR`` finds the
    address again; without it, the log does not reveal it."""
    if key is None:
        key = os.environ.get(HASH_KEY_ENV, "").encode()
    return "h:" + hmac.new(key, address.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class HashRecipients:
    """A structlog processor that replaces ``recipient`` and ``recipients``
    by :func:`hash_address` values. Add it to your own structlog pipeline, or
    pass ``hash_recipients=True`` to :func:`configure_logging`."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key if key is not None else os.environ.get(HASH_KEY_ENV, "").encode()

    def __call__(self, logger: Any, method: str, event_dict: Any) -> Any:
        if isinstance(event_dict.get("recipient"), str):
            event_dict["recipient"] = hash_address(event_dict["recipient"], self.key)
        if isinstance(event_dict.get("recipients"), list):
            event_dict["recipients"] = [hash_address(r, self.key) for r in event_dict["recipients"]]
        return event_dict


def _drop(logger: Any, method: str, event_dict: Any) -> Any:
    raise structlog.DropEvent


def _evidence(evidence: Evidence) -> dict[str, Any]:
    if isinstance(evidence, Reply):
        return {
            "phase": evidence.phase.value,
            "code": evidence.code,
            "enhanced": str(evidence.enhanced) if evidence.enhanced else None,
            "text": evidence.text,
            "failure": None,
        }
    return {
        "phase": evidence.phase.value,
        "code": None,
        "enhanced": None,
        "text": evidence.detail,
        "failure": evidence.kind.value,
    }


def _classified(c: Classification) -> dict[str, Any]:
    return {"category": c.category.value, "action": c.action.value, "reason": c.reason}


def message_delivered(
    log: Logger, *, recipients: Iterable[str], attempt: int, reply: Reply | None,
    connections_active: int, connections_cap: int, assumed: bool = False,
) -> None:
    log.info(
        MESSAGE_DELIVERED, schema_version=SCHEMA_VERSION, recipients=list(recipients),
        attempt=attempt, code=reply.code if reply else None,
        enhanced=str(reply.enhanced) if reply and reply.enhanced else None,
        text=reply.text if reply else None, assumed=assumed,
        connections_active=connections_active, connections_cap=connections_cap,
    )


def retry_scheduled(
    log: Logger, *, recipients: Iterable[str], attempt: int, delay_s: float,
    evidence: Evidence, c: Classification, connections_active: int, connections_cap: int,
) -> None:
    log.warning(
        RETRY_SCHEDULED, schema_version=SCHEMA_VERSION, recipients=list(recipients),
        attempt=attempt, delay_s=round(delay_s, 3), **_evidence(evidence), **_classified(c),
        connections_active=connections_active, connections_cap=connections_cap,
    )


def recipient_deferred(
    log: Logger, *, recipient: str, attempt: int, next_attempt_at: float,
    evidence: Evidence, c: Classification,
) -> None:
    log.warning(
        RECIPIENT_DEFERRED, schema_version=SCHEMA_VERSION, recipient=recipient, attempt=attempt,
        next_attempt_at=round(next_attempt_at, 3), **_evidence(evidence), **_classified(c),
    )


def recipient_failed(
    log: Logger, *, recipient: str, attempt: int, evidence: Evidence, c: Classification,
    expired: bool = False,
) -> None:
    log.error(
        RECIPIENT_FAILED, schema_version=SCHEMA_VERSION, recipient=recipient, attempt=attempt,
        expired=expired, **_evidence(evidence), **_classified(c),
    )


def connection_lost(
    log: Logger, *, recipients: Iterable[str], attempt: int, evidence: Evidence,
    possible_duplicate: bool,
) -> None:
    log.warning(
        CONNECTION_LOST, schema_version=SCHEMA_VERSION, recipients=list(recipients),
        attempt=attempt, possible_duplicate=possible_duplicate, **_evidence(evidence),
    )


def cap_changed(
    log: Logger, *, lowered: bool, connections_cap: int, previous_cap: int,
    connections_active: int, configured_cap: int, reply: Reply | None,
) -> None:
    (log.warning if lowered else log.info)(
        CAP_LOWERED if lowered else CAP_RAISED, schema_version=SCHEMA_VERSION,
        connections_cap=connections_cap, previous_cap=previous_cap,
        configured_cap=configured_cap, connections_active=connections_active,
        code=reply.code if reply else None,
        enhanced=str(reply.enhanced) if reply and reply.enhanced else None,
        text=reply.text if reply else None,
    )


def rate_changed(
    log: Logger, *, lowered: bool, messages_per_minute: float, previous: float, configured: float,
    reply: Reply | None,
) -> None:
    (log.warning if lowered else log.info)(
        RATE_LOWERED if lowered else RATE_RAISED, schema_version=SCHEMA_VERSION,
        messages_per_minute=round(messages_per_minute, 3), previous=round(previous, 3),
        configured=configured, code=reply.code if reply else None,
        enhanced=str(reply.enhanced) if reply and reply.enhanced else None,
        text=reply.text if reply else None,
    )


def send_completed(
    log: Logger, *, delivered: int, deferred: int, failed: int, attempts: int, duration_s: float,
) -> None:
    log.info(
        SEND_COMPLETED, schema_version=SCHEMA_VERSION, delivered=delivered, deferred=deferred,
        failed=failed, attempts=attempts, duration_s=round(duration_s, 3),
    )


# -- the deferred queue (smtpretry.queue) ----------------------------------------------------



def message_queued(
    log: Logger, *, queue_id: str, recipients: Iterable[str], next_attempt_at: float, queue: str,
) -> None:
    """Deferred recipients were written to the queue (``queue`` is its URL)."""
    log.info(
        QUEUED, schema_version=SCHEMA_VERSION, queue_id=queue_id, recipients=list(recipients),
        next_attempt_at=round(next_attempt_at, 3), queue=queue,
    )


def message_expired(
    log: Logger, *, queue_id: str, recipients: Iterable[str], created_at: float, expires_at: float,
) -> None:
    """Recipients left the queue undelivered: the message outlived ``max_lifetime``."""
    log.error(
        EXPIRED, schema_version=SCHEMA_VERSION, queue_id=queue_id, recipients=list(recipients),
        created_at=round(created_at, 3), expires_at=round(expires_at, 3),
    )


def writeback_failed(
    log: Logger, *, queue_id: str, recipients: Iterable[str], delivered: Iterable[str], error: str,
    queue: str,
) -> None:
    """A queue runner sent ``recipients`` of an entry and could not write the
    outcome back (``error``); ``delivered`` are those the server accepted. The
    mark written before the send stays, so the next attempt sends them again
    flagged ``possible_duplicate`` (at most once: takes them as delivered)."""
    log.error(
        WRITEBACK_FAILED, schema_version=SCHEMA_VERSION, queue_id=queue_id, recipients=list(recipients),
        delivered=list(delivered), error=error, queue=queue,
    )


# -- the shared backend (redis_limiter) -----------------------------------------------------


def lease_lost(log: Logger, *, leases: int, lease_s: float) -> None:
    """Slot leases ran out before this process renewed them (it stalled longer
    than ``lease_s``): for that moment the shared cap did not count them."""
    log.warning(LEASE_LOST, schema_version=SCHEMA_VERSION, leases=leases, lease_s=lease_s)


def backend_lost(log: Logger, *, backend: str, doing: str, error: str) -> None:
    """The shared backend did not answer while this process was ``doing``
    something it then skipped (a renewal, a give-back, a cap move)."""
    log.warning(BACKEND_LOST, schema_version=SCHEMA_VERSION, backend=backend, doing=doing,
                error=error)
