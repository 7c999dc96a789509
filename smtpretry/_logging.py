"""Writing the decision log: :func:`emit`, :func:`configure_logging`; the only structlog code.

:func:`emit` writes one event of the schema (``events.py``) for a :class:`LogContext`: the
application's logger if it gave one (``Mailer(logger=...)``), else the logger smtpretry
resolves *when the event is emitted*: structlog's, once the application (or
:func:`configure_logging`) configured structlog, else the standard ``logging`` logger
``"smtpretry"``. Nothing keeps a bound logger: a logger bound in a constructor outlives a
reconfiguration and writes to a closed file.

Importing smtpretry configures nothing and prints nothing: the ``"smtpretry"`` logger has
a ``NullHandler``, so it stays silent unless the application configures logging, and an
event nobody listens to costs a level check.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol, TextIO, cast

import structlog

from .classify import Classification
from .events import SCHEMA_VERSION, SPECS
from .reply import Evidence, Reply

__all__ = [
    "HASH_KEY_ENV",
    "LOGGER_NAME",
    "HashRecipients",
    "LogContext",
    "Logger",
    "classified_keys",
    "configure_logging",
    "emit",
    "evidence_keys",
    "get_logger",
    "hash_address",
    "configure_outputs",
    "json_writer",
    "reply_keys",
    "set_check",
]

LOGGER_NAME = "smtpretry"


class Logger(Protocol):
    """What smtpretry needs of a logger: a structlog bound logger fits."""

    def bind(self, **kw: Any) -> Logger: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


_STD = logging.getLogger(LOGGER_NAME)
_STD.addHandler(logging.NullHandler())

_STD_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_LEVELS: dict[str, tuple[str, int]] = {s.name: (s.level, _STD_LEVELS[s.level]) for s in SPECS}


@dataclass(frozen=True, slots=True)
class LogContext:
    """What an event is about, as data: ``destination``, then ``keys`` (``message_id``,
    ``send_id``, ...) in the order they are written, and the application's ``logger``
    (None: smtpretry's, resolved by :func:`emit` each time)."""

    destination: str
    logger: Logger | None = None
    keys: tuple[tuple[str, object], ...] = ()

    def with_keys(self, **keys: object) -> LogContext:
        """This context with more keys (a key it has already keeps its place)."""
        merged = dict(self.keys)
        merged.update(keys)
        return LogContext(self.destination, self.logger, tuple(merged.items()))


Check = Callable[[str, dict[str, Any]], None]
_check: Check | None = None


def set_check(check: Check | None) -> Check | None:
    """Have ``check(event, fields)`` see every event :func:`emit` writes, whoever listens
    (the test suite checks them against the schema); returns the check it replaces."""
    global _check
    previous, _check = _check, check
    return previous


def _fields(context: LogContext, keys: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"destination": context.destination}
    fields.update(context.keys)
    fields["schema_version"] = SCHEMA_VERSION
    fields.update(keys)
    return fields


def emit(context: LogContext, event: str, /, **keys: Any) -> None:
    """Write ``event`` (a name of ``events.py``) with its ``keys``, in the schema's order,
    after the context's keys and ``schema_version``."""
    level, std_level = _LEVELS[event]
    if _check is not None:
        _check(event, _fields(context, keys))
    logger = context.logger
    if logger is None:
        if not structlog.is_configured():
            # The default: stdlib logging, asked first, so an event nobody listens to
            # costs one call; the keys go as the record's ``extra``.
            if _STD.isEnabledFor(std_level):
                _STD.log(std_level, event, extra=_fields(context, keys))
            return
        logger = structlog.get_logger(LOGGER_NAME)
    getattr(logger, level)(event, **_fields(context, keys))


# -- key values ------------------------------------------------------------------------------


def evidence_keys(evidence: Evidence) -> dict[str, Any]:
    """``phase``, ``code``, ``enhanced``, ``text``, ``failure`` of a reply or a failure."""
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


def reply_keys(reply: Reply | None) -> dict[str, Any]:
    """``code``, ``enhanced``, ``text`` of a reply, all null without one."""
    if reply is None:
        return {"code": None, "enhanced": None, "text": None}
    return {"code": reply.code, "enhanced": str(reply.enhanced) if reply.enhanced else None,
            "text": reply.text}


def classified_keys(c: Classification) -> dict[str, Any]:
    """``category``, ``action``, ``reason`` of a classification."""
    return {"category": c.category.value, "action": c.action.value, "reason": c.reason}


# -- the loggers -----------------------------------------------------------------------------


class _StdlibLogger:
    """What :func:`get_logger` gives while structlog is not configured: a :class:`Logger`
    over the standard ``logging`` logger ``"smtpretry"``, asked for the level first."""

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        self._context = context or {}

    def bind(self, **kw: Any) -> Logger:
        return _StdlibLogger({**self._context, **kw})

    def _emit(self, level: int, event: str, kw: dict[str, Any]) -> None:
        if _STD.isEnabledFor(level):
            _STD.log(level, event, extra={**self._context, **kw})

    def info(self, event: str, **kw: Any) -> None:
        self._emit(logging.INFO, event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._emit(logging.WARNING, event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._emit(logging.ERROR, event, kw)


_QUIET = _StdlibLogger()


def get_logger(**bind: Any) -> Logger:
    """The logger smtpretry emits to at this moment, with ``bind`` bound: structlog's own
    when the application configured structlog, else one over the standard library logger
    ``"smtpretry"`` that stays silent by default. Keep it no longer than you use it: after
    a reconfiguration, ask again."""
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


def _drop(logger: Any, method: str, event_dict: Any) -> Any:
    raise structlog.DropEvent


Writer = Callable[[dict[str, Any]], None]
"""Writes one event (its dict, with ``level`` and ``timestamp``) somewhere, in some form."""


def json_writer(stream: IO[str]) -> Writer:
    """A :data:`Writer` of JSON lines to ``stream``, as :func:`configure_logging` writes them."""
    render = structlog.processors.JSONRenderer(sort_keys=False)

    def write(event_dict: dict[str, Any]) -> None:
        stream.write(str(render(None, "", event_dict)) + "\n")
        stream.flush()

    return write


class _Fanout:
    """The last processor when events go to several writers: each gets its own copy."""

    def __init__(self, writers: Sequence[Writer]) -> None:
        self.writers = tuple(writers)

    def __call__(self, logger: Any, method: str, event_dict: Any) -> Any:
        for write in self.writers:
            write(dict(event_dict))
        raise structlog.DropEvent


def configure_outputs(
    writers: Sequence[Writer], *, level: str = "info", hash_recipients: bool = False
) -> None:
    """Configure structlog to hand every event to each of ``writers``: what the command line
    does with ``--log-file`` (JSON lines to a file) and ``-v`` (lines for people on stderr, or
    JSON lines with ``--log-format json``) together. Like :func:`configure_logging`, which
    it is beside, it adds ``level`` and ``timestamp`` first and closes a file an earlier
    :func:`configure_logging` opened."""
    global _owned
    previous, _owned = _owned, None
    privacy: list[Any] = [HashRecipients()] if hash_recipients else []
    structlog.configure(
        processors=[
            *privacy,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _Fanout(writers),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level.lower()),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    if previous is not None:
        previous.close()


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
