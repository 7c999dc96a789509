"""Scripted SMTP servers on 127.0.0.1 for integration tests.

What this module owns:

- ``ScriptedHandler``: an aiosmtpd handler that answers each command from a queue of scripted
  replies and records what it saw (commands, deliveries, copies per recipient, logins,
  concurrent sessions).
- ``CountingSMTP``: the aiosmtpd protocol the helpers below run the handler with. It tells the
  handler when a connection closes, records every command, can drop a connection without
  replying, and closes the connection after a 421 (as real servers do).
- ``start_server`` / ``serve`` (asyncio), ``serve_threaded`` (a ``Controller`` thread, for
  smtplib-style sync tests), ``raw_server`` (a bare ``asyncio.start_server`` for greeting-time
  replies and malformed lines), ``make_tls`` (trustme contexts) and named reply constants.
- ``LineServer``: a blocking server, a thread per connection, that records every line of
  every connection byte for byte and the message data as it came (the smtplib facade's tests:
  what went on the wire, on which connection).

aiosmtpd quirks this code works around (aiosmtpd 1.4.6):

- A reply returned by a hook is only pushed; aiosmtpd never closes the connection because the
  code is 421. ``CountingSMTP`` closes after the reply has been written.
- A ``handle_EHLO``/``handle_HELO`` hook replaces aiosmtpd's own bookkeeping, so the hook must
  set ``session.host_name`` itself, or every later MAIL gets ``503 send HELO first``.
- aiosmtpd treats every handler attribute named ``auth_*`` as an AUTH mechanism and every
  ``handle_*`` as a hook, so the handler has neither apart from real hooks.
- aiosmtpd advertises its built-in AUTH PLAIN/LOGIN whenever ``auth_require_tls`` is false
  (or after STARTTLS), even with no credentials configured; the handler removes the AUTH line
  unless it was given ``auth``.
- ``SMTP(data_size_limit=...)`` defaults to 32 MiB and then advertises SIZE; the helpers pass
  ``None`` unless a test asks for a limit. An over-limit ``MAIL ... SIZE=n`` gets aiosmtpd's own
  552 without reaching the handler; an over-limit body gets ``552 Error: Too much mail data``
  after the final dot, also without reaching ``handle_DATA``.
- Without ``hostname=`` aiosmtpd calls ``socket.getfqdn()`` for every connection; the helpers
  pass ``hostname="localhost"``.
- The threaded ``Controller`` connects once at start-up and reads the greeting to check the
  server is up. ``serve_threaded`` marks that first connection as a probe, so it neither uses a
  scripted greeting nor counts as a session.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "ACCEPT_DROP",
    "DROP",
    "LineServer",
    "LineSession",
    "R250",
    "R421_SHUTDOWN",
    "R421_TOO_MANY",
    "R422_OVER_QUOTA",
    "R422_TOO_LARGE",
    "R450_GREYLISTED",
    "R452_TOO_MANY_RCPTS",
    "R550_UNKNOWN",
    "R552_MAILBOX_FULL",
    "R552_TOO_LARGE",
    "CountingSMTP",
    "ScriptedHandler",
    "make_tls",
    "raw_server",
    "serve",
    "serve_threaded",
    "start_server",
    "wait_until",
]

# Replies shared between tests.
R421_TOO_MANY = (
    "421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later"
)
R421_SHUTDOWN = "421 4.3.2 Service shutting down, closing transmission channel"
R422_OVER_QUOTA = "422 4.2.2 The recipient's mailbox is over its storage limit"
R422_TOO_LARGE = "422 4.3.4 Message exceeds the recipient's size limit"
R552_TOO_LARGE = "552 5.3.4 Message size exceeds fixed maximum message size"
R552_MAILBOX_FULL = "552 5.2.2 Mailbox full"
R452_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
R450_GREYLISTED = "450 4.2.0 Greylisted, please try again later"
R550_UNKNOWN = "550 5.1.1 User unknown"
R250 = "250 2.1.5 OK"

# Scripted "replies" that are actions, not replies.
DROP = "DROP"
"""Close the connection without replying (for DATA: after the final dot, before the reply,
and the message is not recorded as delivered)."""
ACCEPT_DROP = "ACCEPT_DROP"
"""DATA only: record the delivery, then close without replying. The client cannot tell whether
the message was delivered (RFC 1047), and a resend is a duplicate."""

_DEFAULT_REPLY = "250 OK"
_DEFAULT_DATA_REPLY = "250 2.0.0 Message accepted"
_HOSTNAME = "localhost"


def _accepted(reply: str) -> bool:
    return reply.startswith("2")


class ScriptedHandler:
    """aiosmtpd handler answering from per-command reply queues and recording what it saw.

    Each queue is consumed one reply per command; once empty, the command is accepted.
    ``rcpt`` may be a dict of per-recipient queues keyed by the address as the client sent it
    (without angle brackets). A reply may be ``DROP`` (close without replying) or, for
    ``data``, ``ACCEPT_DROP``. ``greeting`` replaces the 220 banner, one entry per connection;
    a greeting that is not 2xx is followed by a close. With ``close_on_421`` (the default)
    every 421 reply is followed by a close, as RFC 5321 says a server does.

    Run it with ``start_server``/``serve``/``serve_threaded``, which use ``CountingSMTP``:
    the session counters need its close notification.
    """

    def __init__(
        self,
        *,
        greeting: list[str] | None = None,
        ehlo: list[str] | None = None,
        mail: list[str] | None = None,
        rcpt: list[str] | dict[str, list[str]] | None = None,
        data: list[str] | None = None,
        max_sessions: int | None = None,
        over_limit_reply: str = R421_TOO_MANY,
        auth: dict[str, str] | None = None,
        close_on_421: bool = True,
    ) -> None:
        self.greeting = collections.deque(greeting or [])
        self.ehlo = collections.deque(ehlo or [])
        self.mail = collections.deque(mail or [])
        self.rcpt: collections.deque[str] | dict[str, collections.deque[str]]
        if isinstance(rcpt, dict):
            self.rcpt = {addr: collections.deque(q) for addr, q in rcpt.items()}
        else:
            self.rcpt = collections.deque(rcpt or [])
        self.data = collections.deque(data or [])
        self.max_sessions = max_sessions
        self.over_limit_reply = over_limit_reply
        self.credentials = dict(auth) if auth is not None else None
        self.close_on_421 = close_on_421

        self.received: list[tuple[str, list[str], bytes]] = []
        self.copies: collections.Counter[str] = collections.Counter()
        self.commands: list[tuple[str, str]] = []
        self.logins: list[str] = []
        self.active_sessions = 0
        self.max_active = 0
        self.sessions_total = 0
        """Sessions that sent EHLO/HELO and were not refused for ``max_sessions``."""
        self.sessions_refused = 0
        """Sessions refused with ``over_limit_reply`` because ``max_sessions`` were active."""

    # -- called by CountingSMTP ------------------------------------------------------------

    def next_greeting(self) -> str | None:
        return self.greeting.popleft() if self.greeting else None

    def command_seen(self, command: str, arg: str) -> None:
        self.commands.append((command, arg))

    def connection_closed(self, server: CountingSMTP) -> None:
        if server.counted:
            server.counted = False
            self.active_sessions -= 1

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """aiosmtpd ``authenticator``: check ``LoginPassword`` against ``auth``."""
        if self.credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if self.credentials.get(login) != password:
            return AuthResult(success=False, handled=False)
        self.logins.append(login)
        return AuthResult(success=True, auth_data=auth_data)

    # -- aiosmtpd hooks --------------------------------------------------------------------

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        refusal = self._open_session(server)
        if refusal is not None:
            return [refusal]
        reply = self._next(self.ehlo, server, _DEFAULT_REPLY)
        if not _accepted(reply):
            return [reply]
        session.host_name = hostname  # the hook replaces aiosmtpd's own bookkeeping
        if self.credentials is None:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        refusal = self._open_session(server)
        if refusal is not None:
            return refusal
        reply = self._next(self.ehlo, server, f"250 {server.hostname}")
        if _accepted(reply):
            session.host_name = hostname
        return reply

    async def handle_AUTH(
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        if self.credentials is None:
            return "502 5.5.1 AUTH not available"
        return MISSING  # go on with aiosmtpd's PLAIN/LOGIN, which call authenticate()

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = self._next(self.mail, server, _DEFAULT_REPLY)
        if _accepted(reply):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        queue = self.rcpt.get(address) if isinstance(self.rcpt, dict) else self.rcpt
        reply = self._next(queue, server, _DEFAULT_REPLY)
        if _accepted(reply):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._next(self.data, server, _DEFAULT_DATA_REPLY)
        if reply == ACCEPT_DROP or _accepted(reply):
            self._deliver(envelope)
        if reply == ACCEPT_DROP:
            _drop(server)
        return reply

    # -- internals -------------------------------------------------------------------------

    def _open_session(self, server: SMTP) -> str | None:
        """Count a session at its first EHLO/HELO; return the refusal if over the limit."""
        if not isinstance(server, CountingSMTP) or server.counted:
            return None
        if self.max_sessions is not None and self.active_sessions >= self.max_sessions:
            self.sessions_refused += 1
            server.close_after_reply()
            return self.over_limit_reply
        server.counted = True
        self.active_sessions += 1
        self.sessions_total += 1
        self.max_active = max(self.max_active, self.active_sessions)
        return None

    def _next(self, queue: collections.deque[str] | None, server: SMTP, default: str) -> str:
        reply = queue.popleft() if queue else default
        if reply == DROP:
            _drop(server)
        elif self.close_on_421 and reply.startswith("421") and isinstance(server, CountingSMTP):
            server.close_after_reply()
        return reply

    def _deliver(self, envelope: Envelope) -> None:
        content = envelope.original_content or b""
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        self.copies.update(envelope.rcpt_tos)


def _drop(server: SMTP) -> None:
    if isinstance(server, CountingSMTP):
        server.drop()
    elif server.transport is not None:
        server.transport.abort()  # type: ignore[attr-defined]


class CountingSMTP(SMTP):
    """aiosmtpd ``SMTP`` that reports to its handler and can drop or close after a reply.

    Handler methods it calls when present: ``next_greeting()``, ``command_seen(command,
    arg)``, ``connection_closed(server)``. ``probe=True`` marks the Controller's start-up
    connection, which reports nothing.
    """

    def __init__(self, handler: Any, *, probe: bool = False, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.probe = probe
        self.counted = False  # set by ScriptedHandler when this connection sent EHLO/HELO
        self._greeted = False
        self._dropped = False
        self._close_after_reply = False
        self._closed_reported = False
        # Every command goes through this table (a private aiosmtpd attribute, stable in
        # 1.4.x). Wrapping it records commands aiosmtpd rejects before any hook runs, too.
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._recording(name, method)

    def drop(self) -> None:
        """Close the connection now, without a reply (abort: no TLS close_notify)."""
        self._dropped = True
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]

    def close_after_reply(self) -> None:
        """Close the connection once the next reply has been written."""
        self._close_after_reply = True

    async def push(self, status: Any) -> None:
        if not self._greeted:
            self._greeted = True
            scripted = None if self.probe else self._hook("next_greeting")
            if scripted is not None:
                if scripted == DROP:
                    self.drop()
                    return
                status = scripted
                if not _accepted(scripted):
                    self._close_after_reply = True
        if self._dropped:
            return  # aiosmtpd still pushes the hook's return value; swallow it
        await super().push(status)
        if self._close_after_reply and self.transport is not None:
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        # aiosmtpd calls this itself after a failed STARTTLS handshake, and the transport
        # calls it again: report once.
        if not self._closed_reported and not self.probe:
            self._closed_reported = True
            self._hook("connection_closed", self)
        super().connection_lost(error)

    def _hook(self, name: str, *args: Any) -> Any:
        method = getattr(self.event_handler, name, None)
        return method(*args) if method is not None else None

    def _recording(
        self, name: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        @functools.wraps(method)
        async def wrapper(arg: str | None) -> None:
            if not self.probe:
                self._hook("command_seen", name, self._describe(name, arg or ""))
            await method(arg)

        return wrapper

    def _describe(self, name: str, arg: str) -> str:
        """The argument as recorded: ``<address>`` for MAIL/RCPT, the mechanism for AUTH."""
        if name in ("MAIL", "RCPT"):
            rest = self._strip_command_keyword("FROM:" if name == "MAIL" else "TO:", arg)
            if rest is not None:
                address, _ = self._getaddr(rest)
                if address is not None:
                    return f"<{address}>"
            return arg
        if name == "AUTH":
            return arg.split(" ", 1)[0].upper()  # never the initial response (credentials)
        return arg


def _smtp_kwargs(
    handler: Any,
    *,
    starttls_context: ssl.SSLContext | None,
    auth_require_tls: bool,
    data_size_limit: int | None,
) -> dict[str, Any]:
    authenticate = getattr(handler, "authenticate", None)
    return {
        "hostname": _HOSTNAME,
        "tls_context": starttls_context,
        "auth_require_tls": auth_require_tls,
        "data_size_limit": data_size_limit,
        "enable_SMTPUTF8": True,
        "authenticator": authenticate,
        "timeout": 30,
    }


async def start_server(
    handler: Any,
    *,
    tls_context: ssl.SSLContext | None = None,
    starttls_context: ssl.SSLContext | None = None,
    auth_require_tls: bool = False,
    data_size_limit: int | None = None,
) -> tuple[asyncio.Server, int]:
    """Start aiosmtpd on 127.0.0.1, a free port, in the running loop.

    ``tls_context`` makes it implicit TLS (port-465 style); ``starttls_context`` advertises
    STARTTLS. ``data_size_limit`` (bytes) advertises SIZE. Returns the server and its port;
    the caller closes the server. Prefer ``serve``, which also closes open connections.
    """
    server, port, _ = await _start(
        handler,
        tls_context=tls_context,
        starttls_context=starttls_context,
        auth_require_tls=auth_require_tls,
        data_size_limit=data_size_limit,
    )
    return server, port


async def _start(
    handler: Any,
    *,
    tls_context: ssl.SSLContext | None,
    starttls_context: ssl.SSLContext | None,
    auth_require_tls: bool,
    data_size_limit: int | None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> tuple[asyncio.Server, int, set[CountingSMTP]]:
    kwargs = _smtp_kwargs(
        handler,
        starttls_context=starttls_context,
        auth_require_tls=auth_require_tls,
        data_size_limit=data_size_limit,
    )
    live: set[CountingSMTP] = set()
    loop = asyncio.get_running_loop()

    def factory() -> CountingSMTP:
        protocol = CountingSMTP(handler, loop=loop, **kwargs)
        live.add(protocol)
        return protocol

    server = await loop.create_server(factory, host, port, ssl=tls_context)
    bound: int = server.sockets[0].getsockname()[1]
    return server, bound, live


@contextlib.asynccontextmanager
async def serve(
    handler: Any,
    *,
    tls_context: ssl.SSLContext | None = None,
    starttls_context: ssl.SSLContext | None = None,
    auth_require_tls: bool = False,
    data_size_limit: int | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[int]:
    """``async with serve(handler) as port``: ``start_server``, then close it all on exit.

    ``host`` and ``port`` bind elsewhere in 127.0.0.0/8 (MX hosts: 127.0.0.2 and 127.0.0.3 on
    one shared port, since MX records carry no port)."""
    server, port, live = await _start(
        handler,
        tls_context=tls_context,
        starttls_context=starttls_context,
        auth_require_tls=auth_require_tls,
        data_size_limit=data_size_limit,
        host=host,
        port=port,
    )
    try:
        yield port
    finally:
        server.close()
        # From Python 3.12 wait_closed() waits for open connections; close them first.
        for protocol in live:
            if protocol.transport is not None:
                protocol.transport.abort()  # type: ignore[attr-defined]
        await server.wait_closed()
        await asyncio.sleep(0)  # let connection_lost() run and cancel the session tasks


class _ThreadedController(Controller):
    def __init__(self, handler: Any, *, port: int, smtp_kwargs: dict[str, Any], host: str = "127.0.0.1",
                 **kw: Any):
        super().__init__(handler, hostname=host, port=port, **kw)
        self._smtp_kwargs = smtp_kwargs
        self._probed = False

    def factory(self) -> CountingSMTP:
        # The first connection is Controller.start()'s probe: nobody else knows the port yet.
        probe = not self._probed
        self._probed = True
        return CountingSMTP(self.handler, probe=probe, **self._smtp_kwargs)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_threaded(
    handler: Any,
    *,
    tls_context: ssl.SSLContext | None = None,
    starttls_context: ssl.SSLContext | None = None,
    auth_require_tls: bool = False,
    data_size_limit: int | None = None,
    host: str = "127.0.0.1",
) -> Iterator[int]:
    """``with serve_threaded(handler) as port``: aiosmtpd in a ``Controller`` thread.

    For sync (smtplib-style) tests. The handler runs on the controller's thread; read its
    records after the client call returns. Same keywords as ``start_server``; ``host``
    binds elsewhere in 127.0.0.0/8 (an MX host for the command line's routing tests).
    """
    controller = _ThreadedController(
        handler,
        host=host,
        port=_free_port(host),  # the Controller can't report the port it got for port 0
        ssl_context=tls_context,
        smtp_kwargs=_smtp_kwargs(
            handler,
            starttls_context=starttls_context,
            auth_require_tls=auth_require_tls,
            data_size_limit=data_size_limit,
        ),
    )
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[int]:
    """``async with raw_server(script) as port``: run ``script(reader, writer)`` per connection.

    For greeting-time replies and malformed lines. The writer is closed after the script
    returns; connection errors inside the script are ignored.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            if task is not None:
                tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def make_tls(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting ``ca``) for "localhost" and "127.0.0.1"."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def wait_until(predicate: Callable[[], bool], *, timeout_s: float = 2.0) -> None:
    """Poll ``predicate`` until true: server-side state (e.g. ``active_sessions`` after a
    client closes) changes only once the server loop has seen the close."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


# -- a line-level server for the smtplib facade's tests ----------------------------------------


class LineSession:
    """What one connection to a :class:`LineServer` said and got: every line it sent
    (``lines``; message data apart), the messages it completed, the user it logged in as."""

    def __init__(self, number: int, peer: tuple[str, int]) -> None:
        self.number = number
        self.peer = peer
        self.lines: list[bytes] = []
        self.messages: list[tuple[bytes, list[bytes], bytes]] = []  # (MAIL line, RCPT lines, data as sent)
        self.user: str | None = None
        self.tls = False


Respond = Callable[[LineSession, bytes], "bytes | None"]


class LineServer:
    """A small SMTP server on 127.0.0.1 that speaks line by line, a thread per
    connection, for the smtplib facade's tests (sync): it records every line each
    connection sent, byte for byte, and the message data exactly as it came (dots and
    line endings untouched).

    It greets ``220``, offers ``extensions`` to EHLO (and STARTTLS with ``tls``, a
    server context), accepts MAIL, RCPT (each its own line, options kept), DATA, RSET,
    NOOP, QUIT, and AUTH PLAIN against ``users`` (then MAIL wants AUTH first, 530).
    ``respond(session, line)`` is asked first for every command line: a reply (CRLF
    added) overrides the default; ``b""`` closes the connection without a reply.
    """

    def __init__(self, *, extensions: Sequence[str] = ("8BITMIME", "SIZE 1000000"),
                 users: dict[str, str] | None = None, tls: ssl.SSLContext | None = None,
                 respond: Respond | None = None) -> None:
        self.extensions = list(extensions)
        self.users = users
        self.tls = tls
        self.respond = respond
        self.sessions: list[LineSession] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._stopped = False
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> LineServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)

    @property
    def delivered(self) -> list[tuple[bytes, list[bytes], bytes]]:
        return [m for s in self.sessions for m in s.messages]

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            with self._lock:
                session = LineSession(len(self.sessions), peer)
                self.sessions.append(session)
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, session), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, session: LineSession) -> None:
        try:
            self._talk(conn, session)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _talk(self, sock: socket.socket, session: LineSession) -> None:
        rfile = sock.makefile("rb")
        sock.sendall(b"220 lines.test ESMTP\r\n")
        mail: bytes | None = None
        rcpts: list[bytes] = []
        while True:
            line = rfile.readline()
            if not line:
                return
            session.lines.append(line)
            verb = line[:4].upper()
            scripted = self.respond(session, line) if self.respond is not None else None
            if scripted == b"":
                return
            if scripted is not None:
                sock.sendall(scripted + b"\r\n")
                if verb == b"DATA" and scripted.startswith(b"354"):
                    session.messages.append((mail or b"", rcpts, self._data(rfile)))
                    sock.sendall(b"250 2.0.0 Ok: queued\r\n")
                    mail, rcpts = None, []
                if scripted.startswith(b"421"):
                    return
                continue
            if verb in (b"EHLO", b"LHLO"):
                offered = [*self.extensions]
                if self.tls is not None and not session.tls:
                    offered.append("STARTTLS")
                if self.users is not None:
                    offered.append("AUTH PLAIN")
                names = ["lines.test", *offered]
                sock.sendall(b"".join(b"250-" + e.encode() + b"\r\n" for e in names[:-1])
                             + b"250 " + names[-1].encode() + b"\r\n")
            elif verb == b"HELO":
                sock.sendall(b"250 lines.test\r\n")
            elif verb == b"STAR" and self.tls is not None:
                sock.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                sock = self.tls.wrap_socket(sock, server_side=True)
                rfile = sock.makefile("rb")
                session.tls = True
            elif verb == b"AUTH" and self.users is not None:
                parts = line.split()
                if len(parts) < 3 or parts[1].upper() != b"PLAIN":
                    sock.sendall(b"504 5.5.4 Unrecognized authentication type\r\n")
                    continue
                _, user, password = base64.b64decode(parts[2]).split(b"\0")
                if self.users.get(user.decode()) == password.decode():
                    session.user = user.decode()
                    sock.sendall(b"235 2.7.0 Authentication successful\r\n")
                else:
                    sock.sendall(b"535 5.7.8 Authentication credentials invalid\r\n")
            elif verb == b"MAIL":
                if self.users is not None and session.user is None:  # a submission server's rule
                    sock.sendall(b"530 5.7.0 Authentication required\r\n")
                    continue
                mail, rcpts = line, []
                sock.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                rcpts.append(line)
                sock.sendall(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                if not rcpts:
                    sock.sendall(b"554 5.5.1 Error: no valid recipients\r\n")
                    continue
                sock.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                session.messages.append((mail or b"", rcpts, self._data(rfile)))
                sock.sendall(b"250 2.0.0 Ok: queued\r\n")
                mail, rcpts = None, []
            elif verb == b"QUIT":
                sock.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:  # RSET, NOOP, ...
                sock.sendall(b"250 2.0.0 Ok\r\n")

    @staticmethod
    def _data(rfile: Any) -> bytes:
        data = b""
        while True:
            line = rfile.readline()
            if not line or line == b".\r\n":
                return data
            data += line
