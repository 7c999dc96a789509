"""One SMTP session over aiosmtplib, with every answer turned into a value.

This is the only module that imports aiosmtplib (its private names are
fenced in ``_wire.py``). It keeps I/O only: it opens a session (greeting,
EHLO, STARTTLS, EHLO, AUTH), and it moves the bytes of a transaction whose
rules live in ``transaction.py``: :meth:`Session.run` hands a
:class:`~smtpretry.transaction.TransactionState` every reply, with one of two
short drivers (one command at a time, or a pipelined group, RFC 2920). Every
server answer becomes a :class:`Reply`, every refused, timed-out or dropped
connection a :class:`TransportFailure`; nothing here raises for what a server
says. A reply that comes when none was asked for, or that does not fit the
phase it answers (a ``250`` greeting, a ``250`` to STARTTLS), is a failure of
that phase (``transaction.expect``), and the connection is closed.

Two aiosmtplib facts shape it:

- ``sendmail()`` can hide a 421 given to one RCPT behind a later
  ``SMTPServerDisconnected``, and it cannot tell the DATA command's reply from
  the reply after the final dot; so we drive MAIL, RCPT and DATA ourselves and
  keep every reply with its phase.
- aiosmtplib closes the client after a 421 to most commands, but a 421 to the
  message body arrives as an ordinary reply; we close after any 421.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import re
import socket
import ssl
import time
from functools import cache, lru_cache

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from . import _wire
from .endpoint import Endpoint, TLSMode, is_loopback, local_hostname
from .reply import Evidence, FailureKind, Phase, Reply, TransportFailure
from .transaction import VERBS, Command, Transaction, TransactionState, Verbs, ends_session, expect

__all__ = ["Endpoint", "Session", "TLSMode", "Transaction", "encode_data", "is_loopback", "open_session"]

_local_hostname = local_hostname  # the name this module gave it before endpoint.py


def _failure(exc: BaseException, phase: Phase) -> Evidence:
    """An aiosmtplib exception as a value."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code < 0:  # aiosmtplib's "invalid response": a malformed or over-long line
            return TransportFailure(FailureKind.PROTOCOL, phase, exc.message)
        return Reply.build(exc.code, exc.message, phase)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TransportFailure(FailureKind.TIMEOUT, phase, str(exc))
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, socket.gaierror) or isinstance(cause, socket.gaierror):
        # getaddrinfo() found no address: nothing was refused, nothing was reached.
        lookup = cause if isinstance(cause, socket.gaierror) else exc
        why = lookup.strerror if isinstance(lookup, socket.gaierror) and lookup.strerror else str(lookup)
        return TransportFailure(FailureKind.DNS, phase, f"the host name does not resolve ({why})")
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError):
        tls_error = cause if isinstance(cause, ssl.SSLError) else exc
        return TransportFailure(FailureKind.TLS, phase, str(tls_error))
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return TransportFailure(FailureKind.REFUSED, phase, str(exc))
    return TransportFailure(FailureKind.DISCONNECTED, phase, str(exc) or type(exc).__name__)


_RECOVERABLE = (aiosmtplib.SMTPException, OSError, TimeoutError)


def _unresolvable(name: str) -> str | None:
    """Why ``name`` cannot be looked up at all, without asking DNS: it is empty, it is
    not a host name IDNA can encode (an empty or over-long label), or it is under
    ``.invalid``, which RFC 6761 6.4 reserves to never resolve (and asks resolvers to
    answer at once, without a query)."""
    if not name.strip():
        return "no host name to connect to"
    try:
        name.encode("idna")
    except UnicodeError as exc:
        return f"{name!r} is not a host name ({exc})"
    if name.lower().rstrip(".").rsplit(".", 1)[-1] == "invalid":
        return f"{name} does not resolve (RFC 6761: names under .invalid never do)"
    return None


def _reply(response: SMTPResponse, phase: Phase) -> Reply:
    return _cached_reply(response.code, response.message, phase)


@lru_cache(maxsize=512)
def _cached_reply(code: int, text: str, phase: Phase) -> Reply:
    # Replies are frozen values and servers repeat the same few ("250 2.1.0 Ok")
    # on every message: build each once.
    return Reply.build(code, text, phase)


_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def encode_data(message: bytes, *, keep_line_endings: bool = False) -> bytes:
    """The message as it travels after DATA: CRLF line ends, leading dots
    doubled (RFC 5321 4.5.2), and the final ``.`` line. ``keep_line_endings``
    leaves the line endings as they are (smtplib's ``data()`` sends bytes so).

    Most messages already have CRLF line ends and no line that starts with a
    dot; those are only looked at (a scan costs far less than a substitution
    that copies the message)."""
    body = message
    if not keep_line_endings:
        crlf = body.count(b"\r\n")
        if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
            body = _LINE_ENDINGS.sub(b"\r\n", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b".") or b"\n." in body:
        body = _LEADING_DOT.sub(b"..", body)
    return body + b".\r\n"


def _out_of_step(wire: _wire.Wire, phase: Phase) -> TransportFailure:
    return TransportFailure(
        FailureKind.PROTOCOL, phase, f"a reply nobody asked for: {wire.describe_stray()!r}"
    )


class Session:
    """One open, greeted (and if asked, encrypted and authenticated) SMTP connection."""

    def __init__(
        self, client: aiosmtplib.SMTP, endpoint: Endpoint, opened_at: float, greeting: Reply,
        wire: _wire.Wire | None = None,
    ) -> None:
        self._client = client
        self._wire = wire if wire is not None else _wire.Wire(client.protocol)  # type: ignore[arg-type]
        self.endpoint = endpoint
        self.opened_at = opened_at
        self.greeting = greeting
        self.transactions = 0
        self.last_used = time.monotonic()
        self.needs_reset = False
        self.aborted = False
        self.verbs: Verbs = VERBS
        """How this session's transactions spell MAIL, RCPT, DATA and RSET."""

    @property
    def connected(self) -> bool:
        return self._client.is_connected

    @property
    def in_step(self) -> bool:
        """Connected, and no reply has come that nobody asked for (none waits
        unread either): fit to carry another command. A pooled session is
        checked before it is used again."""
        return self._client.is_connected and self._wire.clean

    @property
    def pipelining(self) -> bool:
        """Whether transactions go as pipelined groups: the endpoint allows it,
        the server offers PIPELINING, and this aiosmtplib can do it."""
        return self.endpoint.pipelining and self._wire.active and self.supports("pipelining")

    @property
    def size_limit(self) -> int | None:
        """The SIZE the server advertised (RFC 1870), or None."""
        value = self._client.esmtp_extensions.get("size", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    def supports(self, extension: str) -> bool:
        return self._client.supports_extension(extension)

    @property
    def extensions(self) -> dict[str, str]:
        """The ESMTP extensions of the last EHLO, lower-case names."""
        return dict(self._client.esmtp_extensions)

    @property
    def ehlo_reply(self) -> Reply | None:
        response = self._client.last_ehlo_response
        return _reply(response, Phase.EHLO) if response is not None else None

    @property
    def encrypted(self) -> bool:
        return self._client.get_transport_info("sslcontext") is not None if self.connected else False

    async def ehlo(self, name: str | None = None) -> Evidence:
        """EHLO again (smtplib lets callers do so at any time)."""
        try:
            response = await self._client.ehlo(hostname=name or None)
        except aiosmtplib.SMTPHeloError as exc:
            return Reply.build(exc.code, exc.message, Phase.EHLO)
        except _RECOVERABLE as exc:
            self._abort()
            return _failure(exc, Phase.EHLO)
        return _reply(response, Phase.EHLO)

    async def starttls(self, context: ssl.SSLContext) -> Evidence:
        """Upgrade this session to TLS, then EHLO again (RFC 3207). A reply
        other than 220, or a handshake that fails, is a TLS failure."""
        started = await _starttls(self._client, context, self.endpoint.host)
        if not _started(started):
            return started
        stop = await _ehlo(self._client)
        return stop if stop is not None else started

    async def login(self, username: str, password: str) -> Evidence:
        return await _login(self._client, username, password)

    async def command(self, phase: Phase, *args: bytes) -> Evidence:
        """Send one command and read its reply, as the server gave it; a 421
        or a lost connection closes the session."""
        if not self._wire.clean:
            self._abort()
            return _out_of_step(self._wire, phase)
        try:
            response = await self._client.execute_command(*args)
        except _RECOVERABLE as exc:
            self._abort()
            return _failure(exc, phase)
        return self._answered(response, phase)

    def _answered(self, response: SMTPResponse, phase: Phase) -> Reply:
        """A reply as a value; after a 421 the server closes, so we do too."""
        reply = _reply(response, phase)
        if reply.code == 421:
            self.close()
        return reply

    # -- transactions: the rules are TransactionState's, the bytes are moved here --------------

    async def run(self, state: TransactionState) -> Transaction:
        """Drive ``state`` to its end over this connection and return the
        :class:`Transaction`. Afterwards ``needs_reset`` is the state's, and a
        connection that is gone, out of step or spent is closed."""
        self.transactions += 1
        self.last_used = time.monotonic()
        drive = self._drive_group if state.pipelined else self._drive_one
        while commands := state.commands():
            await drive(state, commands)
        tr = state.result()
        self.needs_reset = tr.needs_reset
        if not (tr.reusable and self._client.is_connected and self._wire.clean):
            self._abort()
        return tr

    async def _drive_one(self, state: TransactionState, commands: list[Command]) -> None:
        """One command, its reply."""
        for command in commands:
            state.receive(await self._exchange(command))

    async def _drive_group(self, state: TransactionState, commands: list[Command]) -> None:
        """RFC 2920: the commands in one write, then their replies in order,
        until the state has what it needs."""
        if len(commands) == 1:
            state.receive(await self._exchange(commands[0]))
            return
        first = commands[0].phase
        if not self._wire.clean:
            state.receive(_out_of_step(self._wire, first))
            return
        protocol = self._client.protocol
        if protocol is None:
            state.receive(TransportFailure(FailureKind.DISCONNECTED, first, "connection lost"))
            return
        wire = self._wire
        wire.grouping = True  # the group's replies are asked for: keep every byte of them
        try:
            try:
                protocol.write(b"".join([c.line + b"\r\n" for c in commands]))
            except _RECOVERABLE as exc:
                state.receive(self._lost(exc, first))
                return
            for command in commands:
                state.receive(await self._read(command.phase))
                if state.done:
                    return
        finally:
            wire.grouping = False

    async def _exchange(self, command: Command) -> Evidence:
        """Write one command (or the message) and read its reply."""
        if not self._wire.clean:
            return _out_of_step(self._wire, command.phase)
        protocol = self._client.protocol
        if protocol is None:
            return TransportFailure(FailureKind.DISCONNECTED, command.phase, "connection lost")
        try:
            # write() does not yield, so the reply cannot arrive before
            # read_response() is waiting for it.
            protocol.write(command.wire)
        except _RECOVERABLE as exc:
            # Nothing went out: even for the message, this is not ambiguous.
            return self._lost(exc, Phase.DATA if command.phase is Phase.DATA_END else command.phase)
        return await self._read(command.phase)

    async def _read(self, phase: Phase) -> Evidence:
        try:
            response = await self._wire.read(self.endpoint.timeout)
        except _RECOVERABLE as exc:
            return self._lost(exc, phase)
        reply = _cached_reply(response.code, response.message, phase)
        if reply.code == 421:
            self.close()  # the server closes after a 421: so do we
        return reply

    def _lost(self, exc: BaseException, phase: Phase) -> Evidence:
        self._abort()
        return _failure(exc, phase)

    async def send_body(self, data: bytes) -> Evidence:
        """After a 354: send the message (already dot-stuffed and ending in
        CRLF.CRLF) and read the reply to the final dot. A connection lost
        before that reply is :attr:`FailureKind.AMBIGUOUS` (RFC 1047)."""
        ev = await self._exchange(Command(Phase.DATA_END, data))
        if isinstance(ev, TransportFailure) and ev.phase is Phase.DATA_END and ev.kind in (
            FailureKind.DISCONNECTED, FailureKind.TIMEOUT, FailureKind.PROTOCOL
        ):
            return TransportFailure(FailureKind.AMBIGUOUS, Phase.DATA_END, ev.detail)
        return ev

    async def quit(self) -> None:
        """Say QUIT and close; errors on the way out are of no interest. A
        session out of step gets no QUIT: its reply could not be paired."""
        if self._client.is_connected and self._wire.clean:
            with contextlib.suppress(*_RECOVERABLE):
                await self._client.quit(timeout=min(self.endpoint.timeout, 5.0))
        self.close()

    def close(self) -> None:
        self._client.close()

    def abort(self) -> None:
        """Close at once, without QUIT: for a session cut short in the middle
        of a command (its send was cancelled), which is fit for nothing else."""
        self._abort()

    def _abort(self) -> None:
        """Cut the connection after a timeout or an error on our side, at once:
        a graceful close would wait for unsent bytes (a message the server is
        slow to read) before its FIN, and the server would go on counting the
        connection after its slot was given back. The server may still count it
        for a moment (``aborted``)."""
        self.aborted = self._client.is_connected or self.aborted
        transport = self._client.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.abort()
        self._client.close()


@cache
def _verifying_context() -> ssl.SSLContext:
    """``ssl.create_default_context()``: the system's CAs, host names checked.
    Made once per process: loading the CA store for every connection cost more
    than the rest of opening it. A context is only read once made, and every
    connection without a context of its own trusts exactly the same CAs."""
    return ssl.create_default_context()


@cache
def _unverified_context() -> ssl.SSLContext:
    """Encryption without authentication (RFC 7435), for opportunistic TLS to
    MX hosts: most MX certificates name no domain they serve, and a sender
    that insisted would send in clear instead (RFC 3207 4.1). Made once per
    process: it loads no CA store (nothing is verified), and making a context
    per connection cost more than the rest of opening it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2 at least, the default ciphers
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def open_session(
    endpoint: Endpoint, *, opened_at: float | None = None
) -> Session | Evidence:
    """Connect, read the greeting, EHLO (HELO if EHLO is refused), STARTTLS and
    EHLO again when asked, and AUTH when credentials are given. Returns the
    session, or the reply or failure that stopped it (the connection is
    closed). Each step accepts only its own reply (``transaction.expect``): a
    greeting must be 220, EHLO 250, STARTTLS 220 and a real handshake, AUTH 235.
    A host name that does not resolve is a ``dns`` failure of the connect phase.

    ``opportunistic`` TLS upgrades when the server offers STARTTLS; when the
    upgrade fails (a refusal, a handshake that breaks) the connection is
    closed and opened once more in clear, so a broken TLS stack at an MX host
    delays its mail by one connection instead of stopping it."""
    if (why := _unresolvable(endpoint.connect_to)) is not None:
        return TransportFailure(FailureKind.DNS, Phase.CONNECT, why)
    opened = await _open(endpoint, opened_at)
    if (
        endpoint.tls is TLSMode.OPPORTUNISTIC
        and isinstance(opened, TransportFailure)
        and opened.kind is FailureKind.TLS
        and opened.phase is Phase.STARTTLS
    ):
        return await _open(dataclasses.replace(endpoint, tls=TLSMode.NONE), opened_at)
    return opened


async def _open(endpoint: Endpoint, opened_at: float | None) -> Session | Evidence:
    tls_context = endpoint.tls_context
    if tls_context is None and endpoint.tls is TLSMode.OPPORTUNISTIC:
        tls_context = _unverified_context()
    elif tls_context is None and endpoint.tls is not TLSMode.NONE:
        tls_context = _verifying_context()
    client = aiosmtplib.SMTP(
        hostname=endpoint.connect_to,
        port=endpoint.port,
        timeout=endpoint.timeout,
        source_address=endpoint.source_address,
        local_hostname=endpoint.local_hostname or local_hostname(),
        use_tls=endpoint.tls is TLSMode.IMPLICIT,
        start_tls=False,
        tls_context=tls_context if endpoint.tls is TLSMode.IMPLICIT else None,
    )
    phase = Phase.CONNECT
    try:
        try:
            greeting = _reply(await client.connect(), Phase.GREETING)
        except aiosmtplib.SMTPConnectResponseError as exc:
            greeting = Reply.build(exc.code, exc.message, Phase.GREETING)
        said = expect(Phase.GREETING, greeting)
        if not (isinstance(said, Reply) and said.code == 220):
            client.close()
            return said
        wire = _wire.Wire(client.protocol)  # type: ignore[arg-type]
        phase = Phase.EHLO
        stop = await _ehlo(client)
        upgrade = endpoint.tls is TLSMode.STARTTLS or (
            endpoint.tls is TLSMode.OPPORTUNISTIC and client.supports_extension("starttls")
        )
        if stop is None and upgrade:
            phase = Phase.STARTTLS
            if not client.supports_extension("starttls"):
                client.close()
                return TransportFailure(
                    FailureKind.TLS, phase, "the server does not offer STARTTLS (tls='starttls' requires it)"
                )
            assert tls_context is not None
            started = await _starttls(client, tls_context, endpoint.host)
            if not _started(started) and endpoint.tls is TLSMode.OPPORTUNISTIC:
                # Whatever stopped it (a 454, a broken handshake): a TLS failure of
                # this phase, so that open_session() goes on in clear.
                client.close()
                return TransportFailure(FailureKind.TLS, Phase.STARTTLS, str(started))
            phase = Phase.EHLO
            stop = await _ehlo(client) if _started(started) else started
        if stop is None and endpoint.username is not None:
            phase = Phase.AUTH
            auth = await _login(client, endpoint.username, endpoint.password or "")
            if not (isinstance(auth, Reply) and auth.code == 235):
                stop = auth
        if stop is None and not wire.clean:
            stop = _out_of_step(wire, phase)
        if stop is not None:
            client.close()
            return stop
    except (*_RECOVERABLE, ssl.SSLError) as exc:
        client.close()
        return _failure(exc, phase)
    return Session(client, endpoint, time.monotonic() if opened_at is None else opened_at, greeting, wire)


async def _starttls(client: aiosmtplib.SMTP, context: ssl.SSLContext, server_name: str) -> Evidence:
    """STARTTLS and the handshake: the server's 220 when TLS runs, else what
    stopped it (the connection is closed). A reply other than 220 (a 250, as a
    man in the middle stripping TLS would send) is a TLS failure."""
    try:
        response = await client.starttls(tls_context=context, server_hostname=server_name)
    except aiosmtplib.SMTPResponseException as exc:
        client.close()
        return expect(Phase.STARTTLS, Reply.build(exc.code, exc.message, Phase.STARTTLS))
    except (*_RECOVERABLE, ssl.SSLError) as exc:
        client.close()
        return _failure(exc, Phase.STARTTLS)
    return _reply(response, Phase.STARTTLS)


def _started(evidence: Evidence) -> bool:
    return isinstance(evidence, Reply) and evidence.code == 220


def _redact(text: str, username: str, password: str) -> str:
    """A reply to AUTH with the password taken out, in clear or in the base64
    forms PLAIN and LOGIN send it: some servers echo what they were sent."""
    secrets = [password] if password else []
    for raw in (password, f"\0{username}\0{password}", f"{username}\0{username}\0{password}"):
        if password:
            secrets.append(base64.b64encode(raw.encode("utf-8")).decode("ascii"))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


async def _login(client: aiosmtplib.SMTP, username: str, password: str) -> Evidence:
    """AUTH with each mechanism both sides know, as aiosmtplib's ``login()``
    does, but stop at a 421 or a lost connection and keep that reply: its
    ``login()`` would go on to the next mechanism on a closed connection and
    hide the 421 behind a disconnect."""
    if not client.supports_extension("auth"):
        return TransportFailure(FailureKind.AUTH, Phase.AUTH, "the server does not offer AUTH")
    last: Evidence = TransportFailure(FailureKind.AUTH, Phase.AUTH, "no AUTH mechanism both sides know")
    for name in client.supported_auth_methods:
        method = getattr(client, f"auth_{name.replace('-', '')}", None)
        if method is None:
            continue
        try:
            return _reply(await method(username, password), Phase.AUTH)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code < 0:  # not an SMTP reply at all
                client.close()
                return _failure(exc, Phase.AUTH)
            # expect(): a 250 to AUTH is no login.
            text = _redact(exc.message, username, password)
            last = expect(Phase.AUTH, Reply.build(exc.code, text, Phase.AUTH))
            if ends_session(last) or not client.is_connected:
                client.close()
                return last
        except _RECOVERABLE as exc:
            client.close()
            return _failure(exc, Phase.AUTH)
    return last


async def _ehlo(client: aiosmtplib.SMTP) -> Evidence | None:
    try:
        await client.ehlo()
        return None
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code >= 500 and client.is_connected:
            # An old server that knows only HELO (RFC 5321 3.2).
            try:
                await client.helo()
                return None
            except aiosmtplib.SMTPHeloError as exc2:
                exc = exc2
        client.close()
        return expect(Phase.EHLO, Reply.build(exc.code, exc.message, Phase.EHLO))
