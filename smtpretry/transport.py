"""One SMTP session over aiosmtplib, with every answer turned into a value.

This is the only module that imports aiosmtplib. It opens a session (greeting,
EHLO, STARTTLS, EHLO, AUTH) and runs transactions (MAIL, RCPT..., DATA, the
message, the final dot). Every server answer becomes a :class:`Reply`, every
refused, timed-out or dropped connection a :class:`TransportFailure`; nothing
here raises for what a server says.

Two aiosmtplib facts shape it:

- ``sendmail()`` can hide a 421 given to one RCPT behind a later
  ``SMTPServerDisconnected``, and it cannot tell the DATA command's reply from
  the reply after the final dot; so we drive MAIL, RCPT and DATA ourselves and
  keep every reply with its phase.
- aiosmtplib closes the client after a 421 to most commands, but a 421 to the
  message body arrives as an ordinary reply; we close after any 421.
"""

from __future__ import annotations

import base64
import contextlib
import re
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from .endpoint import Endpoint, TLSMode, is_loopback, local_hostname
from .reply import Evidence, FailureKind, Phase, Reply, TransportFailure

__all__ = ["Endpoint", "Session", "TLSMode", "Transaction", "is_loopback", "open_session"]

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
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError):
        tls_error = cause if isinstance(cause, ssl.SSLError) else exc
        return TransportFailure(FailureKind.TLS, phase, str(tls_error))
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return TransportFailure(FailureKind.REFUSED, phase, str(exc))
    return TransportFailure(FailureKind.DISCONNECTED, phase, str(exc) or type(exc).__name__)


_RECOVERABLE = (aiosmtplib.SMTPException, OSError, TimeoutError)


def _reply(response: SMTPResponse, phase: Phase) -> Reply:
    return _cached_reply(response.code, response.message, phase)


@lru_cache(maxsize=512)
def _cached_reply(code: int, text: str, phase: Phase) -> Reply:
    # Replies are frozen values and servers repeat the same few ("250 2.1.0 Ok")
    # on every message: build each once.
    return Reply.build(code, text, phase)


_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def encode_data(message: bytes) -> bytes:
    """The message as it travels after DATA: CRLF line ends, leading dots
    doubled (RFC 5321 4.5.2), and the final ``.`` line."""
    body = _LINE_ENDINGS.sub(b"\r\n", message)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LEADING_DOT.sub(b"..", body) + b".\r\n"


@dataclass(slots=True)
class Transaction:
    """What one MAIL..DATA transaction did: the evidence for each recipient
    (its RCPT reply if refused, else the DATA or final reply, or the failure),
    which recipients the server took (``accepted``, delivered only when
    ``completed``) and whether the session can carry another transaction."""

    evidence: dict[str, Evidence]
    accepted: list[str]
    completed: bool
    final: Reply | None
    reusable: bool


class Session:
    """One open, greeted (and if asked, encrypted and authenticated) SMTP connection."""

    def __init__(
        self, client: aiosmtplib.SMTP, endpoint: Endpoint, opened_at: float, greeting: Reply
    ) -> None:
        self._client = client
        self.endpoint = endpoint
        self.opened_at = opened_at
        self.greeting = greeting
        self.transactions = 0
        self.last_used = time.monotonic()
        self.needs_reset = False
        self.aborted = False

    @property
    def connected(self) -> bool:
        return self._client.is_connected

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
        """Upgrade this session to TLS, then EHLO again (RFC 3207)."""
        try:
            response = await self._client.starttls(tls_context=context, server_hostname=self.endpoint.host)
        except aiosmtplib.SMTPResponseException as exc:
            return Reply.build(exc.code, exc.message, Phase.STARTTLS)
        except (*_RECOVERABLE, ssl.SSLError) as exc:
            self._abort()
            return _failure(exc, Phase.STARTTLS)
        stop = await _ehlo(self._client)
        return stop if stop is not None else _reply(response, Phase.STARTTLS)

    async def login(self, username: str, password: str) -> Evidence:
        return await _login(self._client, username, password)

    async def command(self, phase: Phase, *args: bytes) -> Evidence:
        """Send one command and read its reply; a 421 or a lost connection closes the session."""
        return await self._command(phase, *args)

    async def _command(self, phase: Phase, *args: bytes) -> Evidence:
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

    async def transaction(
        self, sender: str, recipients: list[str], data: bytes, *, smtputf8: bool = False,
        eightbit: bool = False,
    ) -> Transaction:
        """Run MAIL, RCPT for each recipient, DATA and the message.

        ``data`` is already encoded with :func:`encode_data`. A recipient is
        ``accepted`` when its RCPT got 250/251; it is delivered only if the
        transaction ``completed`` with a 250 after the final dot.
        """
        self.transactions += 1
        self.last_used = time.monotonic()
        evidence: dict[str, Evidence] = {}

        def everyone(e: Evidence, who: list[str]) -> Transaction:
            for r in who:
                evidence[r] = e
            return Transaction(evidence, [], False, None, self._after_abort(e))

        if self.needs_reset:
            reset = await self._command(Phase.RSET, b"RSET")
            if not (isinstance(reset, Reply) and reset.code == 250):
                return everyone(reset, recipients)
            self.needs_reset = False

        options = [b"SIZE=%d" % len(data)] if self.size_limit is not None else []
        if eightbit and self.supports("8bitmime"):
            options.append(b"BODY=8BITMIME")
        if smtputf8:
            options.append(b"SMTPUTF8")
        encoding = "utf-8" if smtputf8 else "ascii"
        if self.endpoint.pipelining and self.supports("pipelining"):
            return await self._pipelined(
                b" ".join([b"MAIL", b"FROM:<" + sender.encode(encoding) + b">", *options]) + b"\r\n",
                recipients, [b"RCPT TO:<" + r.encode(encoding) + b">\r\n" for r in recipients], data,
            )
        mail = await self._command(Phase.MAIL, b"MAIL", b"FROM:<" + sender.encode(encoding) + b">", *options)
        if not (isinstance(mail, Reply) and mail.code == 250):
            return everyone(mail, recipients)

        accepted: list[str] = []
        for i, rcpt in enumerate(recipients):
            reply = await self._command(Phase.RCPT, b"RCPT", b"TO:<" + rcpt.encode(encoding) + b">")
            if isinstance(reply, Reply) and reply.code in (250, 251):
                accepted.append(rcpt)
                continue
            evidence[rcpt] = reply
            if isinstance(reply, TransportFailure) or reply.code == 421 or not self.connected:
                # The session is gone: the recipients not yet named share its
                # end, and the accepted ones are not delivered without DATA.
                for r in [*recipients[i + 1 :], *accepted]:
                    evidence[r] = reply
                return Transaction(evidence, [], False, None, False)
            if _too_many(reply):
                # The server takes no more recipients in this transaction
                # (RFC 5321 4.5.3.1.10): the rest go in the next one.
                for r in recipients[i + 1 :]:
                    evidence[r] = reply
                break
        if not accepted:
            return Transaction(evidence, [], False, None, self._after_abort(None))

        start = await self._command(Phase.DATA, b"DATA")
        if not (isinstance(start, Reply) and start.code == 354):
            for r in accepted:
                evidence[r] = start
            return Transaction(evidence, [], False, None, self._after_abort(start))

        final = await self._send_body(data)
        for r in accepted:
            evidence[r] = final
        if isinstance(final, Reply) and final.code == 250:
            return Transaction(evidence, accepted, True, final, self.connected)
        return Transaction(evidence, [], False, final if isinstance(final, Reply) else None,
                           self.connected and isinstance(final, Reply) and final.code != 421)

    async def _pipelined(
        self, mail: bytes, recipients: list[str], rcpts: list[bytes], data: bytes
    ) -> Transaction:
        """RFC 2920: MAIL, every RCPT and DATA in one write, then the replies
        in order; the message only after a 354. Saves a round trip per
        recipient and two per message on a distant server."""
        protocol = self._client.protocol
        if protocol is None:
            lost = TransportFailure(FailureKind.DISCONNECTED, Phase.MAIL, "connection lost")
            return Transaction(dict.fromkeys(recipients, lost), [], False, None, False)
        # aiosmtplib drops bytes that arrive while no reply is awaited, and over
        # TLS several replies can arrive in one read: while the group's replies
        # come in, keep every byte in its buffer for _read() to take.
        keep = _KeepReplies(protocol)
        try:
            return await self._pipelined_group(protocol, mail, recipients, rcpts, data)
        finally:
            keep.restore()

    async def _pipelined_group(
        self, protocol: Any, mail: bytes, recipients: list[str], rcpts: list[bytes], data: bytes
    ) -> Transaction:
        evidence: dict[str, Evidence] = {}
        try:
            protocol.write(mail + b"".join(rcpts) + b"DATA\r\n")
        except _RECOVERABLE as exc:
            self._abort()
            lost = _failure(exc, Phase.MAIL)
            return Transaction(dict.fromkeys(recipients, lost), [], False, None, False)
        first = await self._read(Phase.MAIL)
        gone: Evidence | None = first if _ends_session(first) else None
        accepted: list[str] = []
        for rcpt in recipients:
            reply = gone or await self._read(Phase.RCPT)
            if _ends_session(reply):
                gone = gone or reply
            elif isinstance(reply, Reply) and reply.code in (250, 251):
                accepted.append(rcpt)
                continue
            evidence[rcpt] = reply
        start = gone or await self._read(Phase.DATA)
        if _ends_session(start) or gone is not None:
            # The session ended: nobody is delivered without a completed DATA.
            end = gone or start
            return Transaction(dict.fromkeys(recipients, end), [], False, None, False)
        if not (isinstance(first, Reply) and first.code == 250):
            evidence = dict.fromkeys(recipients, first)
            accepted = []
        if accepted and isinstance(start, Reply) and start.code == 354:
            final = await self._send_body(data)
            evidence.update(dict.fromkeys(accepted, final))
            if isinstance(final, Reply) and final.code == 250:
                return Transaction(evidence, accepted, True, final, self.connected)
            return Transaction(evidence, [], False, final if isinstance(final, Reply) else None,
                               self.connected and isinstance(final, Reply) and final.code != 421)
        if isinstance(start, Reply) and start.code == 354:
            # DATA was accepted though no recipient was: end it empty (RFC 2920 3.1).
            start = await self._send_body(b".\r\n")
        else:
            evidence.update(dict.fromkeys(accepted, start))
        return Transaction(evidence, [], False, None, self._after_abort(start))

    async def _read(self, phase: Phase) -> Evidence:
        """The next reply of a pipelined group. Replies that came in one packet
        wait in aiosmtplib's buffer: take those first."""
        protocol = self._client.protocol
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost")
            response = protocol._read_response_from_buffer() or await protocol.read_response(
                timeout=self.endpoint.timeout
            )
        except _RECOVERABLE as exc:
            self._abort()
            return _failure(exc, phase)
        return self._answered(response, phase)

    async def send_body(self, data: bytes) -> Evidence:
        """After a 354: send the message (already dot-stuffed and ending in
        CRLF.CRLF) and read the reply to the final dot. A connection lost
        before that reply is :attr:`FailureKind.AMBIGUOUS` (RFC 1047)."""
        return await self._send_body(data)

    async def _send_body(self, data: bytes) -> Evidence:
        protocol = self._client.protocol
        if protocol is None:
            return TransportFailure(FailureKind.DISCONNECTED, Phase.DATA, "lost before the message")
        try:
            # write() does not yield, so the reply cannot arrive before
            # read_response() is waiting for it.
            protocol.write(data)
        except _RECOVERABLE as exc:
            self._abort()
            return TransportFailure(FailureKind.DISCONNECTED, Phase.DATA, str(exc))
        try:
            response = protocol._read_response_from_buffer() or await protocol.read_response(
                timeout=self.endpoint.timeout
            )
        except _RECOVERABLE as exc:
            self._abort()
            failure = _failure(exc, Phase.DATA_END)
            if isinstance(failure, TransportFailure) and failure.kind in (
                FailureKind.DISCONNECTED, FailureKind.TIMEOUT, FailureKind.PROTOCOL
            ):
                # RFC 1047: the message was sent whole and no valid reply came
                # back (none, or garbage): the server may have it.
                return TransportFailure(FailureKind.AMBIGUOUS, Phase.DATA_END, failure.detail)
            return failure
        return self._answered(response, Phase.DATA_END)

    def _after_abort(self, e: Evidence | None) -> bool:
        """After a transaction that did not complete, the session needs RSET
        before the next one; it is reusable only if still connected."""
        self.needs_reset = True
        return self.connected and not (isinstance(e, Reply) and e.code == 421)

    async def quit(self) -> None:
        """Say QUIT and close; errors on the way out are of no interest."""
        if self._client.is_connected:
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
        """Close after a timeout or an error on our side: the server has not
        closed its end, and may count the connection for a moment more."""
        self.aborted = self._client.is_connected or self.aborted
        self._client.close()


class _KeepReplies:
    """While installed on an aiosmtplib protocol, bytes that arrive when no
    reply is awaited go to its buffer instead of being dropped."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.original = protocol.data_received
        protocol.data_received = self.data_received

    def data_received(self, data: bytes) -> None:
        p = self.protocol
        waiter = p._response_waiter
        if waiter is not None and (waiter.done() or not p._response_pending):
            p._buffer.extend(data)
            return
        self.original(data)

    def restore(self) -> None:
        with contextlib.suppress(AttributeError):
            del self.protocol.data_received  # the class's method again


def _ends_session(e: Evidence) -> bool:
    return isinstance(e, TransportFailure) or e.code == 421


def _too_many(reply: Reply) -> bool:
    return (reply.enhanced is not None and (reply.enhanced.subject, reply.enhanced.detail) == (5, 3)) or (
        "too many recipients" in reply.text.lower()
    )


async def open_session(
    endpoint: Endpoint, *, opened_at: float | None = None
) -> Session | Evidence:
    """Connect, read the greeting, EHLO (HELO if EHLO is refused), STARTTLS and
    EHLO again when asked, and AUTH when credentials are given. Returns the
    session, or the reply or failure that stopped it (the connection is closed)."""
    tls_context = endpoint.tls_context
    if tls_context is None and endpoint.tls is not TLSMode.NONE:
        tls_context = ssl.create_default_context()
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
            return Reply.build(exc.code, exc.message, Phase.GREETING)
        phase = Phase.EHLO
        stop = await _ehlo(client)
        if stop is not None:
            return stop
        if endpoint.tls is TLSMode.STARTTLS:
            phase = Phase.STARTTLS
            if not client.supports_extension("starttls"):
                client.close()
                return TransportFailure(
                    FailureKind.TLS, phase, "the server does not offer STARTTLS (tls='starttls' requires it)"
                )
            assert tls_context is not None
            try:
                await client.starttls(tls_context=tls_context, server_hostname=endpoint.host)
            except aiosmtplib.SMTPResponseException as exc:
                client.close()
                return Reply.build(exc.code, exc.message, phase)
            phase = Phase.EHLO
            stop = await _ehlo(client)
            if stop is not None:
                return stop
        if endpoint.username is not None:
            phase = Phase.AUTH
            auth = await _login(client, endpoint.username, endpoint.password or "")
            if not (isinstance(auth, Reply) and auth.code in (235, 503)):
                client.close()
                return auth
    except (*_RECOVERABLE, ssl.SSLError) as exc:
        client.close()
        return _failure(exc, phase)
    return Session(client, endpoint, time.monotonic() if opened_at is None else opened_at, greeting)


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
            last = Reply.build(exc.code, _redact(exc.message, username, password), Phase.AUTH)
            if exc.code == 421 or not client.is_connected:
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
        return Reply.build(exc.code, exc.message, Phase.EHLO)
