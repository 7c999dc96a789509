"""``SMTP`` and ``SMTP_SSL``: the smtplib drop-in.

``compat.SMTP`` is :class:`smtplib.SMTP`, subclassed. smtplib's own code runs
unchanged over a socket of its own, as smtplib runs it (``_get_socket``,
``putcmd``, ``getreply`` and its reply parser, ``ehlo`` and its
``esmtp_features`` parser, ``starttls``'s ``wrap_socket``, ``login``,
``auth``, ``send_message``, the debug output), so every method sends what
smtplib sends, when smtplib sends it, and returns the server's own reply. This
module translates between that socket and the engine:

- the socket smtplib holds (:class:`_Socket`) is a connection the engine can
  lease (:class:`_Connection`, a :class:`~smtpretry.transport.Session`):
  counted against the destination's cap from connect to close, never written
  to by a process other than the one that opened it, and out of step (never
  used for a transaction) while a reply is unread;
- ``connect()`` opens it through the engine (``Mailer.connect``), so a 421
  greeting is retried with the policy's backoff; a refused connection or a
  name that does not resolve raises at once, as smtplib's does;
- ``sendmail()`` (and ``send_message()``, smtplib's own, which ends in it)
  hands the envelope to ``Mailer.deliver`` with the caller's connection as
  its source of sessions: a 421 or a lost connection backs off, reconnects and
  replays the caller's set-up (each recorded step through smtplib's own
  method: EHLO, STARTTLS with the caller's context, ``login()`` or the
  caller's ``auth()`` mechanism and object), and only the recipients still
  pending go again. Its transaction runs over smtplib's own ``putcmd()``,
  ``send()`` and ``getreply()``; when the server offers PIPELINING (RFC 2920),
  MAIL, the RCPTs and DATA go in one write. The outcome becomes smtplib's
  return value or exception in one place (:func:`smtplib_error`).
- with ``reuse_connections = true``, ``quit()`` keeps a healthy connection
  for the next ``SMTP`` object that sets up exactly the same session (host,
  port, source address, EHLO name, the same TLS context object, the same
  ``login()`` credentials; never one a custom ``auth()`` authenticated), and
  until a command needs the wire such an object answers ``connect()``,
  ``ehlo()``, ``starttls()`` and ``login()`` from what the server said to
  that same set-up.

The engine runs in the caller's thread, on an event loop of that thread
(``_hub.run_here``), over the blocking socket; what threads share (limiters,
kept connections, the queue) lives on the hub's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import functools
import hashlib
import hmac
import logging
import logging.handlers
import os
import re
import select
import smtplib
import socket
import ssl
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from . import _hub
from .config import active_config
from .endpoint import Endpoint, TLSMode, is_loopback
from .envelope import Envelope, _message_id
from .errors import (
    BackendError,
    ConfigError,
    MessageError,
    QueueError,
    SMTPBackendError,
    SMTPConfigError,
    SMTPQueueError,
)
from .limits import Lease, Refusal
from .reply import Evidence, FailureKind, Phase, Reply, TransportFailure
from .result import SendResult, Status
from .transaction import Command, Transaction, TransactionState, Verbs
from .transport import Session, _unresolvable

if TYPE_CHECKING:
    from _typeshed import SizedBuffer

__all__ = ["SMTP", "SMTPHandler", "SMTP_SSL", "smtplib_error"]

_Reply = tuple[int, bytes]
_BASE = smtplib.SMTP  # captured: a test may put this module's SMTP in smtplib's place
_MAXLINE: int = getattr(smtplib, "_MAXLINE", 8192)
_FIX_EOLS = re.compile(r"(?:\r\n|\n|\r(?!\n))")  # smtplib's _fix_eols
_SECRET = os.urandom(32)  # passwords are compared as keyed hashes, never kept in shared state


def _spelling() -> tuple[str, str, str, str]:
    """How this Python's smtplib writes MAIL, RCPT, RSET and DATA ("mail FROM:<s>",
    or "mail from:<s>" from 3.13 on): asked of smtplib itself, once."""
    said: list[str] = []
    probe = _BASE(local_hostname="localhost")  # no host: nothing connects
    probe.putcmd = lambda cmd, args="": said.append(f"{cmd} {args}" if args else cmd)  # type: ignore[method-assign]
    probe.getreply = lambda: (250, b"")  # type: ignore[method-assign]
    probe.mail("s")
    probe.rcpt("r")
    probe.rset()
    with contextlib.suppress(smtplib.SMTPDataError):
        probe.data(b"")  # raises once DATA has been put: 250 is not 354
    mail, rcpt, rset, data = said
    return mail[: -len("<s>")], rcpt[: -len("<r>")], rset, data


_MAIL, _RCPT, _RSET, _DATA = _spelling()
_VERBS = Verbs(mail=_MAIL.encode(), rcpt=_RCPT.encode(), data=_DATA.encode(), rset=_RSET.encode())
_MAIL_CMD, _MAIL_ARG = _MAIL.split(" ", 1)
_RCPT_CMD, _RCPT_ARG = _RCPT.split(" ", 1)

SLOT_WAIT_S = 60.0
"""How long ``connect()`` waits for a connection slot under the destination's
cap when the ``SMTP`` object has no timeout, before ``SMTPConnectError``."""

_DEFAULT_TRUST = "default"
_default_context: ssl.SSLContext | None = None
_default_lock = threading.Lock()


def _default_tls() -> ssl.SSLContext:
    """``ssl.create_default_context()``, made once and never handed out: the
    context ``starttls()`` uses when given none. Connections verified with it
    all have the same trust, so they may be lent to one another."""
    global _default_context
    with _default_lock:
        if _default_context is None:
            _default_context = ssl.create_default_context()
        return _default_context


def _trust(context: ssl.SSLContext | None) -> Hashable:
    """What two TLS set-ups must share for a connection to be lent: the very
    context object (the key keeps it alive), or smtpretry's own default."""
    if context is None:
        return None
    return _DEFAULT_TRUST if context is _default_context else context


def _timeout(timeout: object) -> float:
    return float(timeout) if isinstance(timeout, (int, float)) and timeout else 60.0


def _port_number(port: object) -> int:
    if isinstance(port, int):
        return port
    try:
        return socket.getservbyname(str(port), "tcp")
    except OSError:
        raise socket.gaierror(socket.EAI_SERVICE, "Servname not supported for ai_socktype") from None


def _ends_reply(line: bytes, limit: int) -> bool:
    """Whether smtplib's ``getreply()`` stops after ``line``: not a continuation, a
    code that is not a number, or a line too long."""
    if len(line) >= limit or line[3:4] != b"-":
        return True
    try:
        int(line[:3])
    except ValueError:
        return True
    return False


def _reply_of(lines: Sequence[bytes]) -> _Reply:
    """``getreply()``'s result for raw lines (the code of the last line)."""
    try:
        code = int(lines[-1][:3]) if lines else -1
    except ValueError:
        code = -1
    return code, b"\n".join(line[4:].strip(b" \t\r\n") for line in lines)


@functools.lru_cache(maxsize=512)
def _reply(code: int, text: str, phase: Phase) -> Reply:
    # Replies are frozen values, and servers repeat the same few on every message.
    return Reply.build(code, text, phase)


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# -- the connection: smtplib's socket as the engine's Session -----------------------------------


class _Slot:
    """A connection's slot under the destination's cap, given back once: when the
    caller drops the connection, or (finalizer) when it is collected unclosed.
    A connection that goes into a kept pool takes its slot there."""

    __slots__ = ("dest", "pid", "taken")

    def __init__(self, dest: _hub.Destination) -> None:
        self.dest = dest
        self.pid = _hub.PID
        self.taken = True

    def free(self, lingers: bool = True) -> None:
        if self.taken and self.pid == _hub.PID:
            self.taken = False
            _hub.submit(self.dest.free(lingers=lingers))

    def handed_over(self) -> None:
        self.taken = False

    def take(self) -> None:
        """Held again (a kept connection lent to a caller)."""
        self.taken = True
        self.pid = _hub.PID


class _Connection(Session):
    """One connection of the facade, as the engine's :class:`Session`: a
    blocking socket (smtplib's own, or its TLS wrap), read and written in the
    thread of the ``SMTP`` object holding it, by smtplib's code.

    It is *in step* when no reply waits unread (none owed to a command put by
    hand, none buffered, none arrived) and it was opened by this process;
    only then does it carry a transaction or go back to a pool.
    """

    def __init__(self, sock: socket.socket, endpoint: Endpoint, dest: _hub.Destination,
                 opened_at: float) -> None:
        # Not Session.__init__: there is no aiosmtplib client here; every part of
        # Session the Mailer and the pools use is defined below.
        self.sock = sock
        self.endpoint = endpoint
        self.opened_at = opened_at
        self.transactions = 0
        self.last_used = time.monotonic()
        self.needs_reset = False
        self.aborted = False
        self.verbs = _VERBS
        self.features: dict[str, str] = {}
        """The extensions of the last EHLO, as smtplib parsed them for its caller."""
        self.buffer = bytearray()  # read, not yet returned by readline()
        self.owed = 0  # replies to what was written, not read yet
        self.holder: SMTP | None = None  # whose smtplib code drives a transaction on it
        self.pid = _hub.PID
        self.closed = False
        self.slot = _Slot(dest)
        weakref.finalize(self, self.slot.free)

    # -- I/O, for _Socket ------------------------------------------------------------------

    def ours(self) -> bool:
        return self.pid == _hub.PID

    def sendall(self, data: bytes, replies: int = 1) -> None:
        if self.closed or self.pid != _hub.PID:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        self.owed += replies
        self.sock.sendall(data)

    def readline(self, limit: int) -> bytes:
        """``BufferedReader.readline(limit)`` over the socket."""
        if self.closed or self.pid != _hub.PID:
            return b""
        buffer = self.buffer
        end = buffer.find(b"\n", 0, limit)
        while end < 0 and len(buffer) < limit:
            chunk = self.sock.recv(8192)
            if not chunk:  # the end of the stream: what is left, then b""
                line = bytes(buffer)
                buffer.clear()
                if line:
                    self.owed = max(0, self.owed - 1)
                return line
            buffer += chunk
            end = buffer.find(b"\n", 0, limit)
        size = end + 1 if end >= 0 else limit
        line = bytes(buffer[:size])
        del buffer[:size]
        if self.owed and _ends_reply(line, limit):
            self.owed -= 1
        return line

    def read_reply(self, limit: int) -> list[bytes]:
        """A whole reply, read ahead (a greeting the engine judges before smtplib's
        ``getreply()`` reads it from the buffer); its lines."""
        lines: list[bytes] = []
        while True:
            line = self.readline(limit)
            lines.append(line)
            if not line or _ends_reply(line, limit):
                break
        self.buffer[:0] = b"".join(lines)
        self.owed += 1  # still to be read by getreply()
        return lines

    # -- Session, for the Mailer and the pools ----------------------------------------------

    @property
    def connected(self) -> bool:
        return not self.closed and self.pid == _hub.PID

    @property
    def in_step(self) -> bool:
        if self.closed or self.pid != _hub.PID or self.owed or self.buffer:
            return False
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable  # a reply nobody asked for, or the server hung up

    @property
    def pipelining(self) -> bool:
        return self.endpoint.pipelining and "pipelining" in self.features

    @property
    def size_limit(self) -> int | None:
        value = self.features.get("size", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.features

    @property
    def extensions(self) -> dict[str, str]:
        return dict(self.features)

    @property
    def encrypted(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    async def run(self, state: TransactionState) -> Transaction:
        """The transaction, through the holder's own ``putcmd()``, ``send()`` and
        ``getreply()`` (blocking: this runs on the holder's thread's loop)."""
        self.transactions += 1
        self.last_used = time.monotonic()
        holder = self.holder
        if holder is None or not self.connected:
            while commands := state.commands():
                state.receive(TransportFailure(FailureKind.DISCONNECTED, commands[0].phase, "not connected"))
            return state.result()
        tr = holder._transact(self, state)
        self.needs_reset = tr.needs_reset
        if not tr.reusable:
            self.abort()  # (a reply nobody asked for: the Mailer asks in_step, and gives it back closed)
        return tr

    async def quit(self) -> None:
        """QUIT (a kept connection the pool retires, on the hub's loop: the blocking
        socket is used from a worker thread) and close; errors on the way out are of
        no interest. One out of step gets no QUIT: its reply could not be paired."""
        if self.in_step:
            await asyncio.to_thread(self._quit)
        self.close()

    def _quit(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.settimeout(min(self.endpoint.timeout, 5.0))
            self.sock.sendall(b"quit\r\n")  # smtplib's spelling
            self.sock.recv(1024)

    def close(self) -> None:
        if not self.closed and self.ours():  # a forked child leaves its parent's sockets alone
            with contextlib.suppress(OSError):
                self.sock.close()
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.connected or self.aborted
        self.close()

    def _abort(self) -> None:
        self.abort()

    def drop(self) -> None:
        """The holder lets go (smtplib's ``close()``): closed, and its slot given back."""
        lingers = self.connected
        self.close()
        self.slot.free(lingers)


class _File:
    """``makefile("rb")`` of a :class:`_Socket`."""

    __slots__ = ("_sock",)

    def __init__(self, sock: _Socket) -> None:
        self._sock = sock

    def readline(self, limit: int = -1) -> bytes:
        sock = self._sock
        conn = sock.conn
        if conn is not None and sock.heard is None and not sock.answers:  # the way every reply comes
            return conn.readline(limit if limit > 0 else _MAXLINE + 1)
        return sock.readline(limit)

    def close(self) -> None:
        return None


class _Socket:
    """What smtplib's code holds as ``sock``: ``sendall()``, ``makefile()``,
    ``close()`` over a :class:`_Connection`, with the socket's own errors.

    With no connection yet while the caller's session is only remembered
    (reuse): a step answered from memory (:meth:`answer`) swallows its command
    and serves the remembered lines, and any other command first makes the
    connection real (``SMTP._materialize``).
    """

    def __init__(self, owner: SMTP, conn: _Connection | None, *, virtual: bool = False) -> None:
        self._owner = weakref.ref(owner)
        self.conn = conn
        self.virtual = virtual
        self.answers: deque[bytes] = deque()
        self.swallow = 0
        self.heard: list[bytes] | None = None
        self.tainted = False  # a command put by hand: the connection is not lent afterwards

    def answer(self, lines: Sequence[bytes]) -> None:
        """The next command goes nowhere; ``lines`` are its reply (remembered)."""
        self.swallow += 1
        self.answers.extend(lines)

    def _live(self) -> _Connection:
        conn = self.conn
        if conn is None and self.virtual:
            owner = self._owner()
            if owner is not None:
                owner._materialize()  # raises what the connection or the replayed set-up raised
            conn = self.conn
        if conn is None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        return conn

    # -- what smtplib calls --------------------------------------------------------------

    def sendall(self, data: bytes) -> None:
        if self.swallow:
            self.swallow -= 1
            return
        conn = self.conn if self.conn is not None else self._live()
        if not self.tainted:
            owner = self._owner()
            if owner is None or not owner._safe:
                self.tainted = True
        conn.sendall(data)

    def makefile(self, mode: str = "rb") -> _File:
        return _File(self)

    def readline(self, limit: int = -1) -> bytes:
        conn = self.conn
        if conn is not None and self.heard is None and not self.answers:
            return conn.readline(limit if limit > 0 else _MAXLINE + 1)
        if self.answers:
            line = self.answers.popleft()
        elif self.conn is None and not self.virtual:
            line = b""  # closed: the end of the stream
        else:
            line = self._live().readline(limit if limit > 0 else _MAXLINE + 1)
        if self.heard is not None:
            self.heard.append(line)
        return line

    def close(self) -> None:
        self.virtual = False
        self.answers.clear()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.drop()

    def detach(self) -> _Connection | None:
        conn, self.conn = self.conn, None
        return conn

    # -- what callers may reach for ------------------------------------------------------

    def _sock(self) -> socket.socket:
        conn = self.conn
        if conn is None or not conn.connected:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return conn.sock

    def getpeername(self) -> Any:
        return self._sock().getpeername()

    def getsockname(self) -> Any:
        return self._sock().getsockname()

    def fileno(self) -> int:
        return self._sock().fileno()

    def __getattr__(self, name: str) -> Any:
        # Anything else a caller reaches for (settimeout, getpeercert, cipher, ...): the socket's.
        conn = self.__dict__.get("conn")
        if name.startswith("__") or conn is None or not conn.connected:
            raise AttributeError(name)
        return getattr(conn.sock, name)


# -- the caller's set-up, recorded so that a reconnect can do it again -------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    """One step of the caller's session set-up. ``key`` says what makes two set-ups the
    same (no secret in it); ``again`` does the step once more on a new connection, through
    smtplib's own method, raising what it raises; ``private`` (a custom ``auth()``): a
    connection set up with it is never lent."""

    key: Hashable
    again: Callable[[SMTP], object]
    private: bool = False


def _password_key(user: str, password: str) -> bytes:
    secret = f"{user}\0{password}".encode("utf-8", "surrogateescape")
    return hmac.new(_SECRET, secret, hashlib.sha256).digest()


@contextlib.contextmanager
def _listening(sock: object) -> Iterator[list[bytes]]:
    """The reply lines read meanwhile (for what servers said)."""
    heard: list[bytes] = []
    if not isinstance(sock, _Socket):
        yield heard
        return
    sock.heard = heard
    try:
        yield heard
    finally:
        sock.heard = None


# -- smtplib's exceptions from the engine's evidence -------------------------------------------

_ORDER = {phase: i for i, phase in enumerate(
    (Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.STARTTLS, Phase.AUTH, Phase.RSET, Phase.MAIL,
     Phase.RCPT, Phase.DATA, Phase.DATA_END)
)}


def _final(result: SendResult) -> Evidence | None:
    """What decides the exception for a send nobody got: the evidence furthest into
    the transaction (DATA before RCPT before MAIL: smtplib stops at the first)."""
    evidence = [o.history[-1].evidence for o in result.outcomes.values() if o.history]
    return max(evidence, key=lambda e: _ORDER.get(e.phase, 0)) if evidence else None


def smtplib_error(
    ev: Evidence | None, *, sender: str = "", refused: dict[str, _Reply] | None = None
) -> smtplib.SMTPException:
    """The exception smtplib raises for what a send (or the set-up a send
    replayed) ended with: the one place the engine's evidence becomes
    smtplib's classes, attributes and texts, most specific first. Only
    ``smtplib.SMTPException`` subclasses come out: a reconnect that was
    refused or failed its handshake inside ``sendmail()`` is a lost connection
    to the caller, as it would be with smtplib.

    .. versionadded:: 0.5
    """
    refused = refused if refused is not None else {}
    if ev is None:
        return smtplib.SMTPRecipientsRefused(refused)
    if isinstance(ev, TransportFailure):
        if ev.kind is FailureKind.UNSUPPORTED:
            return smtplib.SMTPNotSupportedError(ev.detail)
        if ev.kind is FailureKind.AUTH:
            return smtplib.SMTPException(ev.detail)
        if ev.kind is FailureKind.TLS:
            return smtplib.SMTPServerDisconnected(f"reconnecting: TLS failed: {ev.detail}")
        if ev.kind in (FailureKind.REFUSED, FailureKind.TIMEOUT, FailureKind.DNS):
            return smtplib.SMTPServerDisconnected(f"reconnecting: {ev}")
        return smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {ev}")
    code, text = ev.code, _bytes(ev.text)
    match ev.phase:
        case Phase.MAIL:
            return smtplib.SMTPSenderRefused(code, text, sender)
        case Phase.RCPT:
            return smtplib.SMTPRecipientsRefused(refused)
        case Phase.DATA | Phase.DATA_END:
            return smtplib.SMTPDataError(code, text)
        case Phase.AUTH:
            return smtplib.SMTPAuthenticationError(code, text)
        case Phase.GREETING | Phase.CONNECT:
            return smtplib.SMTPConnectError(code, text)
        case Phase.EHLO:
            return smtplib.SMTPHeloError(code, text)
        case _:
            return smtplib.SMTPResponseException(code, text)


def refused_error(result: SendResult, sender: str) -> smtplib.SMTPException:
    """The exception smtplib raises when no recipient of ``result`` got the
    message: :func:`smtplib_error` of the evidence that ended the send, with
    every recipient that did not get it as refused (kept for the callers of
    0.4; :func:`smtplib_error` is the one mapping).

    .. deprecated:: 0.5 use :func:`smtplib_error`
    """
    refused = {r: (o.code if o.code is not None else -1, _bytes(o.text))
               for r, o in result.outcomes.items() if o.status is not Status.DELIVERED}
    return smtplib_error(_final(result), sender=sender, refused=refused)


def _twin(exc: Exception) -> Exception:
    """smtpretry's own trouble as an :class:`smtplib.SMTPException` (the
    ``errors.py`` twins keep the class and ``.result``); others unchanged."""
    if isinstance(exc, smtplib.SMTPException):
        return exc
    if isinstance(exc, BackendError):
        return SMTPBackendError(str(exc), exc.result)
    if isinstance(exc, QueueError):
        return SMTPQueueError(str(exc), exc.result)
    if isinstance(exc, ConfigError):
        return SMTPConfigError(str(exc))
    return exc


def _check_line(cmd: str, args: str) -> str:
    """smtplib's ``putcmd()`` check, with its error: a newline may not be sent."""
    s = f"{cmd} {args}" if args else cmd
    if "\r" in s or "\n" in s:
        s = s.replace("\n", "\\n").replace("\r", "\\r")
        raise ValueError(f"command and arguments contain prohibited newline characters: {s}")
    return s


# An ASCII dot-atom address (RFC 5322 section 3.4.1): smtplib's quoteaddr() gives it back
# in angle brackets, and the parse it runs to find that out is the dearest part of a send.
_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_PLAIN_ADDRESS = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}")


def _quoteaddr(addr: str) -> str:
    """``smtplib.quoteaddr(addr)``, without its parse for a plain address."""
    if type(addr) is str and _PLAIN_ADDRESS.fullmatch(addr):
        return f"<{addr}>"
    return smtplib.quoteaddr(addr)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_ENDS_PATH = re.compile(r"[<>\s]")
_SUSPECT = re.compile(r'[\x00-\x20\x7f<>"\s]')


def _address(quoted: str, role: str) -> str:
    """The address in ``quoted`` (what smtplib's ``quoteaddr()`` made of the
    caller's string: a display name dropped), checked itself: control characters,
    ``<``, ``>`` or white space outside quotes would end the path and pass the
    rest as ESMTP parameters."""
    inner = quoted[1:-1] if quoted.startswith("<") and quoted.endswith(">") else quoted
    if _SUSPECT.search(inner) is None:  # the usual address: nothing to look at twice
        return inner
    if _CONTROL.search(inner):
        raise MessageError(f"{role}: control characters (CR, LF, NUL...) in address {inner!r}")
    if _ENDS_PATH.search(_QUOTED.sub("", inner) if '"' in inner else inner):
        raise MessageError(f"{role}: '<', '>' or white space in address {inner!r}")
    return inner


# -- the sources of sessions for the engine ------------------------------------------------------


def _evidence_of(exc: BaseException, phase: Phase) -> Evidence:
    """What smtplib's code raised while a connection was opened or set up, as evidence."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return Reply.build(exc.smtp_code, _text(exc.smtp_error), phase)
    if isinstance(exc, ssl.SSLError):
        return TransportFailure(FailureKind.TLS, phase, str(exc))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransportFailure(FailureKind.DISCONNECTED, phase, str(exc))
    if isinstance(exc, smtplib.SMTPException):
        kind = FailureKind.AUTH if phase is Phase.AUTH else FailureKind.PROTOCOL
        return TransportFailure(kind, phase, str(exc))
    if isinstance(exc, TimeoutError):
        return TransportFailure(FailureKind.TIMEOUT, phase, str(exc) or "timed out")
    if isinstance(exc, socket.gaierror):
        why = exc.strerror or str(exc)
        return TransportFailure(FailureKind.DNS, phase, f"the host name does not resolve ({why})")
    if phase is Phase.CONNECT:
        return TransportFailure(FailureKind.REFUSED, phase, str(exc))
    return TransportFailure(FailureKind.DISCONNECTED, phase, str(exc))


class _Opening:
    """The session source of ``connect()`` (and of a remembered connection made
    real): a slot under the destination's cap (or a kept connection set up as
    asked), then a connection whose greeting is read ahead. A 421 greeting is a
    :class:`Refusal`, retried by ``Mailer.connect`` with the policy's backoff;
    any other greeting is left for smtplib's code to read and judge; a socket
    error is raised at once, as smtplib raises it."""

    def __init__(self, owner: SMTP, host: str, port: int, setup: Hashable | None) -> None:
        self.owner = owner
        self.host, self.port = host, port
        self.setup = setup
        self.kept = False
        self.greeting: list[bytes] = []

    async def lease(self) -> Lease | Refusal:
        owner = self.owner
        dest = owner._dest
        assert dest is not None
        kept = owner._slot(self.setup)
        limiter = dest.limits.as_limiter()
        if kept is not None:
            self.kept = True  # set up exactly as asked already
            assert isinstance(kept, _Connection)
            kept.slot.take()
            return Lease(kept, True, kept.opened_at, limiter, self)
        started = time.monotonic()
        try:
            conn = owner._open(self.host, self.port, started)
        except BaseException:
            _hub.run(dest.free(lingers=False))
            raise
        self.greeting = conn.read_reply(_MAXLINE + 1)
        code, text = _reply_of(self.greeting)
        if code == 421:
            conn.close()
            conn.slot.free(lingers=False)
            return Refusal(Reply.build(421, _text(text), Phase.GREETING), started, limiter)
        return Lease(conn, False, started, limiter, self)

    async def give_back(self, session: Session, *, reusable: bool) -> None:
        if isinstance(session, _Connection):
            session.drop()


class _Held:
    """The session source of one ``sendmail()``: the connection the caller
    holds while it is in step; else a kept one set up the same way (reuse);
    else a new one under the cap, on which the caller's set-up is replayed
    through smtplib's own methods."""

    def __init__(self, owner: SMTP, sock: _Socket, setup: Hashable | None) -> None:
        self.owner = owner
        self.sock = sock
        self.setup = setup

    def _lent(self, conn: _Connection, reused: bool, opened_at: float) -> Lease:
        owner = self.owner
        conn.holder = owner
        conn.features = owner.esmtp_features  # smtplib's parser (ehlo() makes a new dict each time)
        dest = owner._dest
        assert dest is not None
        return Lease(conn, reused, opened_at, dest.limits.as_limiter(), self)

    async def lease(self) -> Lease | Refusal:
        owner, sock = self.owner, self.sock
        dest = owner._dest
        assert dest is not None
        limiter = dest.limits.as_limiter()
        held = sock.conn
        if held is not None:
            if held.in_step:
                return self._lent(held, True, held.opened_at)
            sock.detach()
            held.drop()
        sock.virtual = False
        owner.sock, owner.file = sock, None  # type: ignore[assignment]  # what the set-up below runs on
        try:
            kept = owner._slot(self.setup)
        except smtplib.SMTPConnectError as exc:
            return Refusal(_evidence_of(exc, Phase.CONNECT), time.monotonic(), limiter)
        if kept is not None:
            assert isinstance(kept, _Connection)
            kept.slot.take()
            sock.conn = kept
            return self._lent(kept, True, kept.opened_at)
        started = time.monotonic()
        endpoint = owner._endpoint
        assert endpoint is not None
        try:
            conn = owner._open(endpoint.connect_to, endpoint.port, started)
        except OSError as exc:
            _hub.run(dest.free(lingers=False))
            return Refusal(_evidence_of(exc, Phase.CONNECT), started, limiter)
        sock.conn = conn
        stop = owner._replay_evidence()
        if stop is not None:
            if sock.conn is conn:  # (smtplib's code may have closed it already)
                sock.detach()
                conn.drop()
            return Refusal(stop, started, limiter)
        return self._lent(conn, False, started)

    async def give_back(self, session: Session, *, reusable: bool) -> None:
        if reusable and session.connected:
            return  # the caller holds it still
        if self.sock.conn is session:
            self.sock.detach()
        if isinstance(session, _Connection):
            session.drop()


# -- SMTP ---------------------------------------------------------------------------------------


class SMTP(smtplib.SMTP):
    """:class:`smtplib.SMTP` with smtpretry inside every send.

    smtplib's own class with the socket swapped: the same constructor,
    methods, attributes, replies and exceptions. Differences on purpose: a
    421 or a lost connection inside :meth:`sendmail`/:meth:`send_message` is
    retried (backoff, a reconnect that replays EHLO, STARTTLS and login or
    ``auth()``), and a 421 greeting is retried at connect; deferred recipients
    are not "refused" when a queue holds them (:attr:`last_result` has every
    outcome); TLS certificates are verified by default; AUTH is not sent in
    clear to a host that is not on loopback; a 503 reply to AUTH is a failure;
    connections are lent between objects only with ``reuse_connections``
    (see the README).

    .. versionadded:: 0.1
    """

    _implicit_tls = False
    context: ssl.SSLContext | None = None

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: Any = None,
    ) -> None:
        self.last_result: SendResult | None = None
        """What the last ``sendmail()``/``send_message()`` did to each recipient (smtpretry's own)."""
        self._steps: list[_Step] = []
        self._private = False  # a step is a custom auth(): the connection is never lent
        self._connect_key: Hashable = None
        self._dest: _hub.Destination | None = None
        self._endpoint: Endpoint | None = None
        self._safe = 0
        self._quiet = False
        self._replaying = False
        self._in_login = 0
        self._encrypted = False
        self._replay_phase = Phase.GREETING
        super().__init__(host, port, local_hostname, timeout, source_address)

    def _print_debug(self, *args: Any) -> None:
        if not self._quiet:  # a step answered from memory sends nothing, so prints nothing
            super()._print_debug(*args)  # type: ignore[misc]

    @contextlib.contextmanager
    def _safe_commands(self) -> Iterator[None]:
        """Commands that leave the session as it was (or set it up as recorded): a
        connection that carried only these may be lent."""
        self._safe += 1
        try:
            yield
        finally:
            self._safe -= 1

    # -- connection ---------------------------------------------------------------------------

    def connect(self, host: str = "localhost", port: int = 0, source_address: Any = None) -> _Reply:
        """smtplib's ``connect()``: the connection is opened under the
        destination's cap, and a 421 greeting is retried with the policy's
        backoff before its reply is returned."""
        old, self.sock, self.file = self.sock, None, None
        if old is not None:
            old.close()  # smtplib leaves it to the collector; here it also holds a slot
        try:
            return super().connect(host, port, source_address)
        except BaseException:
            self.close()
            raise

    def _tls_name(self, host: str) -> str:
        """The name a certificate must carry: smtplib's ``_host`` (the constructor's host), else ``host``."""
        name = getattr(self, "_host", "")
        return name if isinstance(name, str) and name else host

    def _get_socket(self, host: str, port: int, timeout: float) -> _Socket:
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        port = _port_number(port)
        self._steps = []
        self._private = False
        self._encrypted = self._implicit_tls
        self._connect_key = ("connect", host, port, self.source_address,
                             _trust(self.context) if self._implicit_tls else None)
        try:
            dest = self._dest = _hub.destination(host, port)
            self._endpoint = Endpoint(
                host=self._tls_name(host), port=port, address=host,
                tls=TLSMode.IMPLICIT if self._implicit_tls else TLSMode.NONE, timeout=_timeout(timeout),
                tls_context=self.context, source_address=cast("tuple[str, int] | None", self.source_address),
                allow_plaintext_auth=True, local_hostname="localhost",
            )
        except ConfigError as exc:
            raise _twin(exc) from None
        if dest.config.reuse_connections:
            greeting = _hub.recall(self._connect_key)
            if isinstance(greeting, list):
                sock = _Socket(self, None, virtual=True)
                sock.answers.extend(greeting)
                return sock
        opening = _Opening(self, host, port, None)
        got = self._engine(dest.mailer.connect(sessions=opening))
        if isinstance(got, _Connection):
            if dest.config.reuse_connections and _reply_of(opening.greeting)[0] == 220:
                _hub.remember(self._connect_key, opening.greeting)
            return _Socket(self, got)
        # A 421 greeting to the last attempt: smtplib's code reads it (and SMTP() raises SMTPConnectError).
        sock = _Socket(self, None)
        sock.answers.extend(opening.greeting)
        return sock

    def _slot(self, setup: Hashable | None) -> Session | None:
        """A slot under the destination's cap (None), or a kept connection set up as
        ``setup``; waited for at most the object's timeout (``SLOT_WAIT_S`` without one).

        :raises smtplib.SMTPConnectError: none came in time (a program holding as
            many connections as the cap allows, and asking for one more, would
            otherwise wait forever).
        """
        dest = self._dest
        assert dest is not None
        wait = self.timeout if isinstance(self.timeout, (int, float)) and self.timeout else SLOT_WAIT_S
        try:
            return _hub.run(asyncio.wait_for(dest.slot(setup), wait))
        except TimeoutError:
            cap = dest.limiter.cap
            raise smtplib.SMTPConnectError(
                421, f"smtpretry: no connection slot to {dest.mailer.destination} came within {wait:g} s: "
                     f"{dest.limiter.open} connections are open, max_connections is {cap.current}".encode()
            ) from None

    def _open(self, host: str, port: int, opened_at: float) -> _Connection:
        """A new connection, as smtplib opens one (its own ``_get_socket``, and
        for ``SMTP_SSL`` its ``wrap_socket``); raises the socket's own errors. A
        name under ``.invalid`` raises the ``gaierror`` its lookup would, without
        asking DNS (RFC 6761 6.4)."""
        if host.lower().rstrip(".").rsplit(".", 1)[-1] == "invalid" and (why := _unresolvable(host)):
            raise socket.gaierror(socket.EAI_NONAME, why)
        raw: socket.socket = _BASE._get_socket(self, host, port, self.timeout)  # type: ignore[attr-defined]
        if self._implicit_tls:
            assert self.context is not None
            try:
                raw = self.context.wrap_socket(raw, server_hostname=self._tls_name(host))
            except BaseException:
                raw.close()
                raise
        dest, endpoint = self._dest, self._endpoint
        assert dest is not None and endpoint is not None
        return _Connection(raw, endpoint, dest, opened_at)

    def _engine(self, coro: Any) -> Any:
        """The engine, on this thread's own loop; smtpretry's own errors as smtplib's."""
        try:
            return _hub.run_here(coro)
        except (QueueError, ConfigError) as exc:
            raise _twin(exc) from exc

    def _setup(self, *more: Hashable) -> tuple[Hashable, ...]:
        return (self._connect_key, *(s.key for s in self._steps), *more)

    def _materialize(self) -> None:
        """A remembered connection is needed for real: take a kept one set up the
        same way, or open one (under the cap, a 421 greeting retried) and replay
        the set-up so far; raises what smtplib would have raised."""
        sock, dest, endpoint = self.sock, self._dest, self._endpoint
        assert isinstance(sock, _Socket) and dest is not None and endpoint is not None
        sock.virtual = False
        private = self._private
        opening = _Opening(self, endpoint.connect_to, endpoint.port, None if private else self._setup())
        got = self._engine(dest.mailer.connect(sessions=opening))
        if not isinstance(got, _Connection):
            raise smtplib_error(got)
        sock.conn = got
        if not opening.kept:
            with self._safe_commands():
                self._replay()

    def _replay(self) -> None:
        """The caller's set-up again on the connection the socket now holds, its
        greeting read ahead: each step through smtplib's own method. A replayed
        set-up ends as sendmail() begins, with EHLO (or HELO) done."""
        saved = self.helo_resp, self.ehlo_resp, self.esmtp_features, self.does_esmtp
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.file = None
        self._encrypted = self._implicit_tls
        self._replaying = True
        quiet, self._quiet = self._quiet, False
        try:
            self._replay_phase = Phase.GREETING
            code, msg = self.getreply()
            if code != 220:
                raise smtplib.SMTPConnectError(code, msg)
            for step in self._steps:
                step.again(self)
            if self.helo_resp is None and self.ehlo_resp is None:
                self._replay_phase = Phase.EHLO
                code, msg = self.ehlo()
                if code == 421:
                    raise smtplib.SMTPHeloError(code, msg)
                if not (200 <= code <= 299):
                    code, msg = self.helo()
                    if not (200 <= code <= 299):
                        raise smtplib.SMTPHeloError(code, msg)
        except BaseException:
            self.helo_resp, self.ehlo_resp, self.esmtp_features, self.does_esmtp = saved
            raise
        finally:
            self._replaying = False
            self._quiet = quiet

    def _replay_evidence(self) -> Evidence | None:
        """:meth:`_replay` for the engine: what stopped it, as evidence."""
        try:
            with self._safe_commands():
                self._replay()
        except (smtplib.SMTPException, OSError) as exc:
            return _evidence_of(exc, self._replay_phase)
        return None

    def _done(self, key: Hashable, again: Callable[[SMTP], object], answer: object,
              private: bool = False) -> None:
        """A set-up step succeeded: record it (and what the server said to it)."""
        if self._replaying:
            return
        self._steps.append(_Step(key, again, private))
        self._private = self._private or private
        sock, dest = self.sock, self._dest
        if (not private and answer is not None and isinstance(sock, _Socket) and not sock.virtual
                and dest is not None and dest.config.reuse_connections):
            _hub.remember(self._setup(), answer)

    def _recall(self, key: Hashable) -> object | None:
        """What the server said to this very step of this very set-up, when the
        connection is only remembered; None (after making it real) when not known."""
        sock = self.sock
        if self._replaying or not isinstance(sock, _Socket) or not sock.virtual:
            return None
        answer = _hub.recall(self._setup(key))
        if answer is None:
            self._materialize()
        return answer

    def _answer(self, answer: object) -> None:
        sock = self.sock
        if isinstance(answer, list) and isinstance(sock, _Socket):
            sock.answer(answer)
            self._quiet = True

    def _keepable(self) -> bool:
        sock, dest = self.sock, self._dest
        if not isinstance(sock, _Socket) or dest is None or not dest.config.reuse_connections:
            return False
        conn = sock.conn
        return (conn is not None and conn.in_step and not sock.tainted and not sock.answers
                and not self._private)

    def _keep(self, sock: _Socket) -> _Reply:
        conn = sock.detach()
        dest = self._dest
        if conn is not None and dest is not None:
            conn.holder = None
            conn.slot.handed_over()
            _hub.submit(dest.keep(self._setup(), conn))
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.close()
        return 221, b"2.0.0 Bye"

    def quit(self) -> _Reply:
        """smtplib's ``quit()``; with ``reuse_connections`` a healthy connection is
        kept instead (no QUIT goes) for the next object set up the same way."""
        sock = self.sock
        if isinstance(sock, _Socket) and (sock.virtual or self._keepable()):
            return self._keep(sock)
        with self._safe_commands():
            return super().quit()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        sock = self.sock
        if isinstance(sock, _Socket) and (sock.virtual or self._keepable()):
            self._keep(sock)
            return
        with self._safe_commands():
            super().__exit__(exc_type, exc, tb)

    # -- the set-up steps, recorded ---------------------------------------------------------

    def helo(self, name: str = "") -> _Reply:
        return self._hello(("helo", name or self.local_hostname), lambda: super(SMTP, self).helo(name),
                           lambda s: s._again(s.helo(name)))

    def ehlo(self, name: str = "") -> _Reply:
        return self._hello(("ehlo", self.ehlo_msg, name or self.local_hostname),
                           lambda: super(SMTP, self).ehlo(name), lambda s: s._again(s.ehlo(name)))

    def _hello(self, key: Hashable, say: Callable[[], _Reply], again: Callable[[SMTP], object]) -> _Reply:
        """HELO or EHLO as smtplib sends it (``say``), answered from what the server
        said to this set-up when the connection is only remembered; recorded, to be
        replayed (``again``) on a new connection, when the server says 250."""
        with self._safe_commands():
            self._answer(self._recall(key))
            try:
                with _listening(self.sock) as heard:
                    code, msg = say()
            finally:
                self._quiet = False
        if code == 250:
            self._replay_phase = Phase.EHLO
            self._done(key, again, list(heard))
        return code, msg

    def _again(self, reply: _Reply) -> None:
        if reply[0] != 250:
            raise smtplib.SMTPHeloError(*reply)

    if sys.version_info >= (3, 12):

        def starttls(self, *, context: ssl.SSLContext | None = None) -> _Reply:
            """smtplib's ``starttls()``; without a context the certificate and host
            name are verified (``ssl.create_default_context()``)."""
            return self._starttls(None, None, context)

    else:

        def starttls(  # type: ignore[override]
            self, keyfile: str | None = None, certfile: str | None = None,
            context: ssl.SSLContext | None = None,
        ) -> _Reply:
            """smtplib's ``starttls()``; without a context the certificate and host
            name are verified (``ssl.create_default_context()``)."""
            return self._starttls(keyfile, certfile, context)

    def _starttls(self, keyfile: str | None, certfile: str | None,
                  context: ssl.SSLContext | None) -> _Reply:
        with self._safe_commands():
            self.ehlo_or_helo_if_needed()
            if not self.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server.")
            ctx = context
            if ctx is None:
                if keyfile is not None or certfile is not None:
                    ctx = ssl.create_default_context()
                    if certfile is not None:
                        ctx.load_cert_chain(certfile, keyfile)
                else:
                    ctx = _default_tls()
            key = ("starttls", _trust(ctx))
            self._answer(self._recall(key))
            try:
                with _listening(self.sock) as heard:
                    (resp, reply) = self.docmd("STARTTLS")
            finally:
                self._quiet = False
            if resp != 220:
                # RFC 3207: 501 Syntax error (no parameters allowed), 454 TLS not available
                raise smtplib.SMTPResponseException(resp, reply)
            if context is not None and keyfile is not None:
                raise ValueError("context and keyfile arguments are mutually exclusive")
            if context is not None and certfile is not None:
                raise ValueError("context and certfile arguments are mutually exclusive")
            if keyfile is not None or certfile is not None:
                warnings.warn("keyfile and certfile are deprecated, use a custom context instead",
                              DeprecationWarning, 3)
            sock = self.sock
            if not isinstance(sock, _Socket):
                raise smtplib.SMTPServerDisconnected("please run connect() first")
            self._replay_phase = Phase.STARTTLS
            conn = sock.conn
            if conn is not None:  # (answered from memory, the connection made real replays it)
                conn.sock = ctx.wrap_socket(conn.sock, server_hostname=self._tls_name(
                    self._endpoint.host if self._endpoint is not None else ""))
                conn.buffer.clear()  # as smtplib drops its file: nothing read before TLS counts
            self._encrypted = True
            self.file = None
            # RFC 3207: the client MUST discard any knowledge obtained from the server.
            self.helo_resp = None
            self.ehlo_resp = None
            self.esmtp_features = {}
            self.does_esmtp = False
        self._done(key, lambda s: s.starttls(context=ctx), list(heard))
        return (resp, reply)

    def _plaintext_check(self) -> None:
        endpoint = self._endpoint
        if (endpoint is not None and not self._encrypted and not is_loopback(endpoint.connect_to)
                and not active_config().allow_plaintext_auth):
            raise smtplib.SMTPNotSupportedError(
                f"smtpretry: refusing to send AUTH in clear to {endpoint.connect_to}; call starttls() first, "
                "or smtpretry.configure(allow_plaintext_auth=True)"
            )

    def login(self, user: str, password: str, *, initial_response_ok: bool = True) -> _Reply:
        """smtplib's ``login()``. Refuses (``SMTPNotSupportedError``) to send
        a password in clear to a host that is not on loopback, unless
        ``smtpretry.configure(allow_plaintext_auth=True)``."""
        key = ("login", user, _password_key(user, password), initial_response_ok)

        def again(s: SMTP) -> object:
            return s.login(user, password, initial_response_ok=initial_response_ok)

        with self._safe_commands():
            self.ehlo_or_helo_if_needed()
            self._plaintext_check()
            answer = self._recall(key)
            if isinstance(answer, tuple):
                if not self.has_extn("auth"):
                    raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
                self.user, self.password = user, password
                self._done(key, again, None)
                return cast(_Reply, answer)
            self._replay_phase = Phase.AUTH
            self._in_login += 1
            try:
                code, resp = super().login(user, password, initial_response_ok=initial_response_ok)
            finally:
                self._in_login -= 1
        self._done(key, again, (code, resp))
        return code, resp

    def auth(self, mechanism: str, authobject: Callable[..., Any], *,
             initial_response_ok: bool = True) -> _Reply:
        """smtplib's ``auth()``, but a 503 is a failure (it says "already
        authenticated": as whom is not known). Called by the caller, the
        exchange is replayed on a reconnect with the same mechanism and object,
        and its connection is never lent."""
        custom = not self._in_login and not self._replaying
        if custom:
            self._plaintext_check()
            self._replay_phase = Phase.AUTH
        code, resp = super().auth(mechanism, authobject, initial_response_ok=initial_response_ok)
        if code == 503:
            raise smtplib.SMTPAuthenticationError(code, resp)
        if custom:
            self._done(("auth", mechanism.upper()),
                       lambda s: s.auth(mechanism, authobject, initial_response_ok=initial_response_ok),
                       None, private=True)
        return code, resp

    # -- commands that leave the session as it is -------------------------------------------

    def noop(self) -> _Reply:
        with self._safe_commands():
            return super().noop()

    def rset(self) -> _Reply:
        with self._safe_commands():
            return super().rset()

    def verify(self, address: str) -> _Reply:
        with self._safe_commands():
            return super().verify(address)

    vrfy = verify

    def expn(self, address: str) -> _Reply:
        with self._safe_commands():
            return super().expn(address)

    def help(self, args: str = "") -> bytes:
        with self._safe_commands():
            return super().help(args)

    # -- sending ------------------------------------------------------------------------------

    def sendmail(self, from_addr: str, to_addrs: str | Sequence[str], msg: SizedBuffer | str,
                 mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = ()) -> dict[str, _Reply]:
        """smtplib's ``sendmail()`` with the engine inside: each recipient gets
        the message once, a 421 or a lost connection is retried (the set-up
        replayed, only the pending recipients named again, ``mail_options`` and
        ``rcpt_options`` kept). Returns the refused recipients as smtplib does
        (deferred ones too when no queue holds them); raises what smtplib raises
        when nobody got the message.
        """
        self._ready()
        msg = _FIX_EOLS.sub("\r\n", msg).encode("ascii") if isinstance(msg, str) else bytes(msg)
        if isinstance(to_addrs, str):
            to_addrs = [to_addrs]
        if not to_addrs:  # smtplib sends MAIL, then RSET, and raises: nothing for the engine to do
            return super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)
        options: list[str] = []
        rcpt_opts: list[str] = []
        if self.does_esmtp:
            if self.has_extn("size"):
                options.append(f"size={len(msg)}")
            options.extend(mail_options)
            rcpt_opts = list(rcpt_options)
        smtputf8 = any(o.lower() == "smtputf8" for o in options)
        if smtputf8 and not self.has_extn("smtputf8"):
            raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
        encoding = "utf-8" if smtputf8 else self.command_encoding
        optionlist = "".join(" " + o for o in options)
        rcptlist = "".join(" " + o for o in rcpt_opts)
        # What smtplib's putcmd() would refuse or fail to encode, before anything is sent.
        quoted = _quoteaddr(from_addr)
        _check_line(_MAIL_CMD, f"{_MAIL_ARG}{quoted}{optionlist}").encode(encoding)
        sender = _address(quoted, "sender")
        named: list[tuple[str, str]] = []
        for r in to_addrs:
            quoted = _quoteaddr(r)
            _check_line(_RCPT_CMD, f"{_RCPT_ARG}{quoted}{rcptlist}").encode(encoding)
            named.append((r, _address(quoted, "recipient")))
        envelope = Envelope(
            sender=sender, recipients=tuple(a for _, a in named), data=msg, message_id=_message_id(msg),
            smtputf8=smtputf8, eightbit=False, mail_options=tuple(options), rcpt_options=tuple(rcpt_opts),
            keep_line_endings=True,
        )
        if smtputf8:
            self.command_encoding = "utf-8"  # as smtplib's mail() sets it, for what follows
        return self._deliver(envelope, from_addr, named)

    def _ready(self) -> None:
        """sendmail()'s ``ehlo_or_helo_if_needed()``, part of the send: a 421 to that
        EHLO (a server over its connection limit says so there) or a connection lost
        under it is retried as the engine retries, on a new connection."""
        if self.helo_resp is not None or self.ehlo_resp is not None:
            return
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        try:
            code, msg = self.ehlo()
            if 200 <= code <= 299:
                return
            if code != 421:
                code, msg = self.helo()
                if not (200 <= code <= 299):
                    raise smtplib.SMTPHeloError(code, msg)
                return
        except smtplib.SMTPServerDisconnected:
            pass
        dest = self._dest
        if dest is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        sock = self.sock if isinstance(self.sock, _Socket) else _Socket(self, None)
        private = self._private
        setup = self._setup() if dest.config.reuse_connections and not private else None
        got = self._engine(dest.mailer.connect(sessions=_Held(self, sock, setup)))
        if not isinstance(got, Session):
            raise smtplib_error(got)

    def _transact(self, conn: _Connection, state: TransactionState) -> Transaction:
        """Drive one transaction over smtplib's own ``putcmd()``, ``send()`` and
        ``getreply()`` on ``conn`` (the engine's; smtplib's ``data()`` prints
        ``data:`` lines too). When the server offers PIPELINING (RFC 2920), MAIL,
        the RCPTs and DATA go in one write, their replies read in turn."""
        self._safe += 1  # the engine's commands leave the session fit to lend
        try:
            return self._drive(conn, state)
        finally:
            self._safe -= 1

    def _drive(self, conn: _Connection, state: TransactionState) -> Transaction:
        while commands := state.commands():
            first = commands[0]
            try:
                if self.debuglevel <= 0:  # the bytes send() and putcmd() would write
                    conn.sendall(first.wire if len(commands) == 1 else b"".join(c.wire for c in commands),
                                 replies=len(commands))
                elif len(commands) > 1:  # RFC 2920: one write, each command printed as smtplib prints it
                    for c in commands:
                        self._print_debug("send:", repr(_text(c.wire)))
                    conn.sendall(b"".join(c.wire for c in commands), replies=len(commands))
                elif first.phase is Phase.DATA_END:
                    self.send(first.wire)  # and what they print
                else:
                    cmd, _, args = _text(first.line).partition(" ")
                    self.putcmd(cmd, args)
            except (OSError, smtplib.SMTPServerDisconnected) as exc:
                phase = Phase.DATA if first.phase is Phase.DATA_END else first.phase
                state.receive(TransportFailure(FailureKind.DISCONNECTED, phase, str(exc)))
                continue
            for c in commands:
                state.receive(self._reply_to(c))
                if state.done:
                    break
        return state.result()

    def _reply_to(self, command: Command) -> Evidence:
        try:
            code, msg = self.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            return TransportFailure(FailureKind.DISCONNECTED, command.phase, str(exc))
        except smtplib.SMTPResponseException as exc:  # "Line too long."
            return TransportFailure(FailureKind.PROTOCOL, command.phase, _text(exc.smtp_error))
        if self.debuglevel > 0 and command.phase in (Phase.DATA, Phase.DATA_END):
            self._print_debug("data:", (code, msg))
        if code < 0:
            return TransportFailure(FailureKind.PROTOCOL, command.phase, f"not a reply: {_text(msg)!r}")
        return _reply(code, _text(msg), command.phase)

    def _deliver(self, envelope: Envelope, from_addr: str,
                 named: list[tuple[str, str]]) -> dict[str, _Reply]:
        sock, dest = self.sock, self._dest
        if not isinstance(sock, _Socket) or dest is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        private = self._private
        setup = self._setup() if dest.config.reuse_connections and not private else None
        mailer = dest.mailer
        result: SendResult = self._engine(mailer.deliver(envelope, sessions=_Held(self, sock, setup)))
        self.last_result = result
        conn = sock.conn
        if conn is None or not conn.connected:
            if self.sock is sock:
                self.close()  # as smtplib closes after a 421 or a lost connection
        elif not result.delivered:
            self._rset()  # as smtplib resets after a refusal
            conn.needs_reset = False
        held = mailer.queue is not None
        refused: dict[str, _Reply] = {}
        kept_any = False
        for given, address in named:
            o = result.outcomes[address]
            if o.status is Status.FAILED or (o.status is Status.DEFERRED and not held):
                refused[given] = (o.code if o.code is not None else -1, _bytes(o.text))
            else:
                kept_any = True
        if not kept_any:
            raise smtplib_error(_final(result), sender=from_addr, refused=refused)
        return refused

    def _rset(self) -> None:
        with self._safe_commands(), contextlib.suppress(smtplib.SMTPServerDisconnected):
            self.rset()


class SMTP_SSL(SMTP):  # noqa: N801 - smtplib's name
    """:class:`smtplib.SMTP_SSL`: TLS from the first byte (port 465). Without
    a context, the certificate and host name are verified
    (``ssl.create_default_context()``, a new one for each object, as smtplib
    makes one; pass one context to several objects to let them share
    connections under ``reuse_connections``)."""

    default_port = smtplib.SMTP_SSL_PORT
    _implicit_tls = True

    if sys.version_info >= (3, 12):

        def __init__(
            self,
            host: str = "",
            port: int = 0,
            local_hostname: str | None = None,
            *,
            timeout: float = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
            source_address: Any = None,
            context: ssl.SSLContext | None = None,
        ) -> None:
            self.context = context if context is not None else ssl.create_default_context()
            super().__init__(host, port, local_hostname, timeout, source_address)

    else:

        def __init__(
            self,
            host: str = "",
            port: int = 0,
            local_hostname: str | None = None,
            keyfile: str | None = None,
            certfile: str | None = None,
            timeout: float = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
            source_address: Any = None,
            context: ssl.SSLContext | None = None,
        ) -> None:
            if context is not None and keyfile is not None:
                raise ValueError("context and keyfile arguments are mutually exclusive")
            if context is not None and certfile is not None:
                raise ValueError("context and certfile arguments are mutually exclusive")
            if keyfile is not None or certfile is not None:
                warnings.warn("keyfile and certfile are deprecated, use a custom context instead",
                              DeprecationWarning, 2)
            self.keyfile = keyfile
            self.certfile = certfile
            if context is None:
                context = ssl.create_default_context()
                if certfile is not None:
                    context.load_cert_chain(certfile, keyfile)
            self.context = context
            super().__init__(host, port, local_hostname, timeout, source_address)


class SMTPHandler(logging.handlers.SMTPHandler):
    """:class:`logging.handlers.SMTPHandler` that sends through :class:`SMTP`:
    replace ``logging.handlers.SMTPHandler(...)`` with ``smtpretry.SMTPHandler(...)``,
    same arguments."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            port = self.mailport or smtplib.SMTP_PORT
            smtp = SMTP(self.mailhost, port, timeout=self.timeout)
            msg = EmailMessage()
            msg["From"] = self.fromaddr
            msg["To"] = ",".join(self.toaddrs)
            msg["Subject"] = self.getSubject(record)
            msg["Date"] = email.utils.localtime()
            msg.set_content(self.format(record))
            if self.username:
                if self.secure is not None:
                    smtp.ehlo()
                    smtp.starttls(*self.secure)
                    smtp.ehlo()
                smtp.login(self.username, self.password)
            smtp.send_message(msg)
            smtp.quit()
        except Exception:
            self.handleError(record)
