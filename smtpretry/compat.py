"""``SMTP`` and ``SMTP_SSL``: the smtplib drop-in.

Code written against :mod:`smtplib` gains the retry engine by changing one
import. The facade copies smtplib's names, signatures, attributes, return
values and exception classes (smtplib's own); it only translates. Every
``sendmail()``/``send_message()`` runs :meth:`Mailer.deliver` with the
connection the caller holds: a 421 or a lost connection backs off, reconnects
and replays the caller's session (EHLO, STARTTLS with the same context, login
with the same credentials), then sends only the recipients still pending.

All ``SMTP`` objects of a process share one event loop (``_portal.py``) and
one set of connection pools and limiters, so per-host caps hold across
threads. A connection the caller QUITs is kept for reuse by the next
``SMTP`` object with the same host, port, TLS state and credentials; a caller
that connects for every message therefore reuses connections. Until a
command needs the connection, ``connect()`` and ``ehlo()`` answer from what
the last connection to that host said.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import logging.handlers
import re
import smtplib
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from email.message import EmailMessage, Message
from typing import Any, Self

from . import _portal
from .config import Config, active_config
from .endpoint import Endpoint, TLSMode, is_loopback
from .endpoint import local_hostname as _local_hostname
from .envelope import build_envelope
from .limits import Lease, Limiter, Refusal
from .mailer import Mailer
from .reply import Evidence, FailureKind, Phase, Reply, TransportFailure
from .result import SendResult, Status
from .transport import Session

__all__ = ["SMTP", "SMTPHandler", "SMTP_SSL", "refused_error"]

_Reply = tuple[int, bytes]

# -- what the process shares (touched only on the portal loop) ---------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Key:
    """Sessions are interchangeable when all of this is equal. The password
    is kept only as a keyed hash, never in clear."""

    host: str
    port: int
    tls: TLSMode
    verified: bool
    username: str | None
    password_hash: bytes | None
    local_hostname: str | None
    source_address: tuple[str, int] | None


EXIT_TIMEOUT_S = 5.0
"""At interpreter exit, how long closing the pooled connections may take, at most."""

_SECRET = hashlib.sha256(repr(id(object())).encode() + socket.gethostname().encode()).digest()
_mailers: dict[tuple[int, _Key], Mailer] = {}
_registry_lock = threading.Lock()
_limiters: dict[tuple[int, str], Limiter] = {}
# What the last connection to (host, port, implicit TLS, upgraded by STARTTLS) said at the
# greeting and to EHLO: connect() and ehlo() answer from it while no connection is held.
_greetings: dict[tuple[str, int, bool, bool], tuple[Reply, Reply | None, dict[str, str]]] = {}


def _close_at_exit() -> None:
    """At interpreter exit: QUIT the connections the pools keep and give back what
    the limiters hold, so that a shared cap's slots (Redis) are free for other
    processes at once, not when their leases run out. Bounded by ``EXIT_TIMEOUT_S``."""
    if not _mailers or not _portal.running_here():
        return
    mailers, limiters = list(_mailers.values()), list(_limiters.values())

    async def close_all() -> None:
        await _portal.settle_background()  # connections quit() sent back to their pool
        for mailer in mailers:
            await mailer.close()
        for limiter in limiters:
            await limiter.close()

    async def bounded() -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close_all(), EXIT_TIMEOUT_S)

    with contextlib.suppress(Exception):
        _portal.run(bounded())


atexit.register(_close_at_exit)


def _remember(session: Session) -> None:
    e = session.endpoint
    ehlo = session.ehlo_reply
    key = (e.host, e.port, e.tls is TLSMode.IMPLICIT, e.tls is TLSMode.STARTTLS)
    known = _greetings.get(key)
    if known is not None and known[0] == session.greeting and known[1] == ehlo:
        return  # the server said the same as last time: keep the features already parsed
    _greetings[key] = (session.greeting, ehlo, _features(ehlo.text) if ehlo is not None else {})


# Endpoints without a TLS context, interned: every SMTP object set up the same
# way shares one Endpoint object, so that _mailer() finds its Mailer by
# identity instead of building a _Key (and an HMAC of the password) on every
# call. Endpoints with a context are not: the cache would keep each context
# alive (close to 1 MB with the system CAs loaded), and smtplib code often makes
# a new one for every starttls(); SMTP._mailer_of() remembers those per object.
_ENDPOINTS_MAX = 256
_endpoints: dict[tuple[Any, ...], Endpoint] = {}
# Endpoint id -> (the endpoint, the Config it was looked up under, its Mailer); no contexts.
_by_endpoint: dict[int, tuple[Endpoint, Config, Mailer]] = {}


def _intern(
    host: str, port: int, tls: TLSMode, timeout: float, tls_context: ssl.SSLContext | None,
    local_hostname: str | None, source_address: tuple[str, int] | None,
    username: str | None = None, password: str | None = None,
) -> Endpoint:
    """``Endpoint(...)`` (with ``allow_plaintext_auth=True``): the same object
    for the same arguments when there is no ``tls_context``. Raises what
    ``Endpoint`` raises."""
    key = (host, port, tls, timeout, local_hostname, source_address, username, password)
    e = _endpoints.get(key) if tls_context is None else None
    if e is None:
        e = Endpoint(
            host=host, port=port, tls=tls, timeout=timeout, tls_context=tls_context,
            local_hostname=local_hostname, source_address=source_address, username=username,
            password=password, allow_plaintext_auth=True,
        )
        if tls_context is not None:
            return e
        if len(_endpoints) >= _ENDPOINTS_MAX:
            _endpoints.clear()  # a process that makes endless variants: start over, stay bounded
        _endpoints[key] = e
    return e


def _key(e: Endpoint) -> _Key:
    ctx = e.tls_context
    verified = ctx is None or (ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname)
    pw = hmac.new(_SECRET, e.password.encode(), "sha256").digest() if e.password is not None else None
    return _Key(e.host, e.port, e.tls, verified, e.username, pw, e.local_hostname, e.source_address)


def _mailer(e: Endpoint) -> Mailer:
    """The process-wide Mailer (and pool) for one endpoint; its connections
    count against the limiter of the destination's limit key."""
    config = active_config()
    known = _by_endpoint.get(id(e))
    if known is not None and known[0] is e and known[1] is config:
        return known[2]
    key = (id(config), _key(e))  # a new configure() starts new pools with its settings
    mailer = _mailers.get(key)
    if mailer is None:
        with _registry_lock:  # callers' threads race here: one Mailer, one Limiter per key
            mailer = _new_mailer(key, e, config)
    if e.tls_context is None:
        if len(_by_endpoint) >= _ENDPOINTS_MAX:
            _by_endpoint.clear()
        _by_endpoint[id(e)] = (e, config, mailer)  # holds e, so its id is not reused while here
    return mailer


def _new_mailer(key: tuple[int, _Key], e: Endpoint, config: Config) -> Mailer:
    mailer = _mailers.get(key)
    if mailer is None:
        settings = config.settings_for(e.host, e.port)
        limiter = _limiters.get((key[0], settings.limit_key))
        if limiter is None:
            if config.backend_url is not None:
                from .limits.redis import redis_limiter

                # Several processes (or hosts) share this destination's cap through Redis.
                limiter = redis_limiter(config.backend_url, settings.limit_key, settings.limits)
            else:
                limiter = Limiter(settings.limit_key, settings.limits)
            _limiters[(key[0], settings.limit_key)] = limiter
        mailer = Mailer(
            e.host, e.port, username=e.username, password=e.password, tls=e.tls, timeout=e.timeout,
            tls_context=e.tls_context, local_hostname=e.local_hostname, allow_plaintext_auth=True,
            config=config, limiter=limiter,
        )
        mailer.endpoint = e  # keeps source_address
        _mailers[key] = mailer
    return mailer


class _Held:
    """The session source for one facade object: the connection it holds,
    reopened through the shared pool (replaying its session) when lost. Each
    lease names the limiter of the pool its connection came from, so a send's
    pacing, throttling and successes count where the connection counts."""

    def __init__(self, owner: SMTP) -> None:
        self.owner = owner

    async def lease(self) -> Lease | Refusal:
        owner = self.owner
        pool = owner._mailer_of(owner._session.endpoint if owner._session is not None
                                else owner._require_intent()).pool
        session = owner._session
        if session is not None and session.connected:
            return Lease(session, True, session.opened_at, pool.limiter, self)
        owner._session = None
        got = await owner._mailer_of(owner._require_intent()).pool.lease()
        if isinstance(got, Refusal):
            return got
        owner._session = got.session
        return Lease(got.session, got.reused, got.opened_at, got.limiter, self)

    async def give_back(self, session: Session, *, reusable: bool) -> None:
        if reusable and session.connected:
            self.owner._session = session
            return
        if self.owner._session is session:
            self.owner._session = None
        await self.owner._mailer_of(session.endpoint).pool.give_back(session, reusable=False)


# -- smtplib's exceptions from outcomes --------------------------------------------------------


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def refused_error(result: SendResult, sender: str) -> smtplib.SMTPException:
    """The exception smtplib would have raised for the last reply, when no
    recipient got the message: most specific class first."""
    outcomes = list(result.outcomes.values())
    last = outcomes[-1]
    reply, failure = last.reply, last.failure
    if failure is not None and failure.kind is FailureKind.UNSUPPORTED:
        return smtplib.SMTPNotSupportedError(failure.detail)
    if reply is None:
        detail = str(failure) if failure is not None else "no reply"
        if failure is not None and failure.kind is FailureKind.TLS:
            return smtplib.SMTPServerDisconnected(f"TLS failed: {detail}")
        return smtplib.SMTPServerDisconnected(detail)
    code, text = reply.code, _bytes(reply.text)
    match reply.phase:
        case Phase.MAIL:
            return smtplib.SMTPSenderRefused(code, text, sender)
        case Phase.DATA | Phase.DATA_END:
            return smtplib.SMTPDataError(code, text)
        case Phase.AUTH:
            return smtplib.SMTPAuthenticationError(code, text)
        case Phase.GREETING | Phase.CONNECT:
            return smtplib.SMTPConnectError(code, text)
        case Phase.EHLO:
            return smtplib.SMTPHeloError(code, text)
        case _:
            return smtplib.SMTPRecipientsRefused(
                {o.recipient: (o.code or -1, _bytes(o.text)) for o in outcomes}
            )


def _raise_for(ev: Evidence, what: str) -> None:
    """Raise what smtplib raises when the connection or the session could not be set up."""
    if isinstance(ev, Reply):
        if ev.phase is Phase.AUTH:
            raise smtplib.SMTPAuthenticationError(ev.code, _bytes(ev.text))
        if ev.phase is Phase.EHLO:
            raise smtplib.SMTPHeloError(ev.code, _bytes(ev.text))
        if ev.phase in (Phase.GREETING, Phase.CONNECT):
            raise smtplib.SMTPConnectError(ev.code, _bytes(ev.text))
        raise smtplib.SMTPResponseException(ev.code, _bytes(ev.text))
    match ev.kind:
        case FailureKind.REFUSED:
            raise ConnectionRefusedError(f"{what}: {ev.detail}")
        case FailureKind.DNS:
            raise socket.gaierror(socket.EAI_NONAME, f"{what}: {ev.detail}")  # as smtplib's lookup
        case FailureKind.TIMEOUT:
            raise TimeoutError(f"{what}: {ev.detail}")
        case FailureKind.TLS:
            raise ssl.SSLError(f"{what}: {ev.detail}")
        case FailureKind.AUTH:
            raise smtplib.SMTPNotSupportedError(ev.detail)
        case _:
            raise smtplib.SMTPServerDisconnected(f"{what}: {ev}")


_FIX_EOLS = re.compile(r"(?:\r\n|\n|\r(?!\n))")
_LEADING_DOT = re.compile(rb"(?m)^\.")  # smtplib's _quote_periods


class SMTP:
    """:class:`smtplib.SMTP` with smtpretry inside every send.

    The same constructor, methods, attributes and exceptions; differences on
    purpose: a 421 or a lost connection is retried (with backoff and a
    reconnect that replays EHLO, STARTTLS and login) instead of ending the
    send; deferred recipients are not "refused" (they are queued when a queue
    is configured, and in :attr:`last_result`); TLS certificates are verified
    by default; a password is not sent in clear to a host that is not on
    loopback; replies come with a 60 s timeout when none is given.

    .. versionadded:: 0.1
    """

    debuglevel = 0
    sock: Any = None
    file: Any = None
    helo_resp: bytes | None = None
    ehlo_msg = "ehlo"
    ehlo_resp: bytes | None = None
    does_esmtp = False
    default_port = smtplib.SMTP_PORT
    _implicit_tls = False

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | object = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: tuple[str, int] | None = None,
    ) -> None:
        self._host = host
        self.timeout = timeout
        self.esmtp_features: dict[str, str] = {}
        self.command_encoding = "ascii"
        self.source_address = source_address
        self._auth_challenge_count = 0
        self.local_hostname = local_hostname or _local_hostname()
        self.context: ssl.SSLContext | None = None
        self._session: Session | None = None
        self._intent: Endpoint | None = None  # what the caller has set up: replayed on reconnect
        self._dirty = False
        self._cached_mailer: tuple[Endpoint, Config, Mailer] | None = None
        self.last_result: SendResult | None = None
        if host:
            code, msg = self.connect(host, port)
            if code != 220:
                self.close()
                raise smtplib.SMTPConnectError(code, msg)

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        try:
            code, message = self.quit()
            if code != 221:
                raise smtplib.SMTPResponseException(code, message)
        except smtplib.SMTPServerDisconnected:
            pass
        finally:
            self.close()

    # -- debugging ---------------------------------------------------------------------------

    def set_debuglevel(self, debuglevel: int) -> None:
        """As smtplib: 1 prints the commands the facade sends and the replies
        to stderr, 2 adds timestamps. The engine's own traffic is in the log."""
        self.debuglevel = debuglevel

    def _print_debug(self, *args: object) -> None:
        if self.debuglevel > 1:
            import datetime

            print(datetime.datetime.now().time(), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    # -- connection ---------------------------------------------------------------------------

    def _endpoint(self, host: str, port: int) -> Endpoint:
        timeout = self.timeout if isinstance(self.timeout, (int, float)) and self.timeout else 60.0
        return _intern(
            host, port, TLSMode.IMPLICIT if self._implicit_tls else TLSMode.NONE, float(timeout),
            self.context, self.local_hostname, self.source_address,
        )

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None
    ) -> _Reply:
        """Connect to ``host`` (``"host:port"`` works as in smtplib) and return
        the greeting. A connection refused or throttled (421) is retried with
        the configured backoff first."""
        if source_address:
            self.source_address = source_address
        if not port and host.find(":") == host.rfind(":"):
            i = host.rfind(":")
            if i >= 0:
                host, port_text = host[:i], host[i + 1 :]
                try:
                    port = int(port_text)
                except ValueError:
                    raise OSError("nonnumeric port") from None
        if not port:
            port = self.default_port
        sys.audit("smtplib.connect", self, host, port)
        self._drop_session()
        self._host = host
        self._intent = self._endpoint(host, port)
        known = _greetings.get((host, port, self._implicit_tls, False))
        if known is not None:
            # This server answered before: take a connection (a reused one, or
            # a new one that replays the session) when a command needs it.
            greeting = known[0]
        else:
            session = self._open()
            greeting = session.greeting
        reply = (greeting.code, _bytes(greeting.text))
        if self.debuglevel > 0:
            self._print_debug("connect:", repr(reply[1]))
        return reply

    def _open(self) -> Session:
        """Get a session for what the caller set up, with retries; raise as smtplib would."""
        intent = self._require_intent()
        got = _portal.run(self._mailer_of(intent).connect(_Held(self)))
        if not isinstance(got, Session):
            _raise_for(got, f"{intent.host}:{intent.port}")
        assert isinstance(got, Session)
        self._session = got
        self.sock = got  # truthy while connected, as smtplib's socket is
        _remember(got)
        return got

    def _mailer_of(self, e: Endpoint) -> Mailer:
        """``_mailer(e)``, remembered for the last endpoint this object asked
        about (its intent) and for that Mailer's own endpoint (which its
        sessions carry), while the configuration stays the same."""
        config = active_config()
        cached = self._cached_mailer
        if cached is not None and cached[1] is config and (cached[0] is e or cached[2].endpoint is e):
            return cached[2]
        mailer = _mailer(e)
        self._cached_mailer = (e, config, mailer)
        return mailer

    def _require_intent(self) -> Endpoint:
        if self._intent is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        return self._intent

    def _live(self) -> Session:
        """The connection, opened now if the caller's commands need one."""
        if self._session is not None and self._session.connected:
            return self._session
        return self._open()

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        self.sock = None
        if session is not None:
            dirty, self._dirty = self._dirty, False
            if dirty:
                session.needs_reset = True
            # Nothing to wait for: the connection goes back to the pool while the caller goes on.
            pool = self._mailer_of(session.endpoint).pool
            _portal.submit(pool.release(session, reusable=session.connected))

    def close(self) -> None:
        """Close the connection (kept for reuse by the next SMTP object when healthy)."""
        self.file = None
        self._drop_session()

    def quit(self) -> _Reply:
        """End the session; the connection is kept for reuse when healthy."""
        res: _Reply = (221, b"2.0.0 Bye")
        if self._session is not None and self._dirty:
            self._rset()  # a transaction begun by hand: the pooled connection goes back clean
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.close()
        return res

    # -- commands ------------------------------------------------------------------------------

    def _command(self, phase: Phase, *args: bytes) -> _Reply:
        session = self._live()
        if self.debuglevel > 0:
            self._print_debug("send:", repr(b" ".join(args) + b"\r\n"))
        return self._answer(_portal.run(session.command(phase, *args)))

    def _answer(self, ev: Evidence) -> _Reply:
        """A command's evidence as smtplib returns it; a lost connection raises."""
        if isinstance(ev, TransportFailure):
            self.close()
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {ev}")
        if self.debuglevel > 0:
            self._print_debug(f"reply: retcode ({ev.code}); Msg: {ev.text!a}")
        if ev.code == 421:
            self.close()
        return ev.code, _bytes(ev.text)

    def docmd(self, cmd: str, args: str = "") -> _Reply:
        """Send a command and return its reply."""
        if "\r" in cmd + args or "\n" in cmd + args:
            raise ValueError("command and arguments contain prohibited newline characters")
        self._dirty = True
        parts = [cmd.encode(self.command_encoding)] + ([args.encode(self.command_encoding)] if args else [])
        return self._command(Phase.RSET, *parts)

    def helo(self, name: str = "") -> _Reply:
        code, msg = self._command(Phase.EHLO, b"HELO", (name or self.local_hostname).encode("ascii"))
        self.helo_resp = msg
        return code, msg

    def ehlo(self, name: str = "") -> _Reply:
        """EHLO: fills ``esmtp_features`` and ``does_esmtp`` as smtplib does."""
        self.esmtp_features = {}
        intent = self._require_intent()
        if self._session is not None and self._session.connected:
            ev = _portal.run(self._session.ehlo(name or None))
            if isinstance(ev, TransportFailure):
                self.close()
                raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {ev}")
            reply = ev
            features = self._session.extensions
        else:
            known = _greetings.get(
                (intent.host, intent.port, self._implicit_tls, intent.tls is TLSMode.STARTTLS)
            )
            if known is None or known[1] is None:
                self._live()
                return self.ehlo(name)
            reply, features = known[1], known[2]
        self.ehlo_resp = _bytes(reply.text)
        if reply.code != 250:
            return reply.code, self.ehlo_resp
        self.does_esmtp = True
        self.esmtp_features = dict(features)
        return reply.code, self.ehlo_resp

    def ehlo_or_helo_if_needed(self) -> None:
        if self.helo_resp is None and self.ehlo_resp is None and not (200 <= self.ehlo()[0] <= 299):
            (code, resp) = self.helo()
            if not (200 <= code <= 299):
                raise smtplib.SMTPHeloError(code, resp)

    def has_extn(self, opt: str) -> bool:
        return opt.lower() in self.esmtp_features

    def noop(self) -> _Reply:
        return self._command(Phase.RSET, b"NOOP")

    def rset(self) -> _Reply:
        self._dirty = False
        return self._command(Phase.RSET, b"RSET")

    def _rset(self) -> None:
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            self.rset()

    def verify(self, address: str) -> _Reply:
        return self.docmd("VRFY", smtplib._addr_only(address))  # type: ignore[attr-defined]

    vrfy = verify

    def expn(self, address: str) -> _Reply:
        return self.docmd("EXPN", smtplib._addr_only(address))  # type: ignore[attr-defined]

    def help(self, args: str = "") -> bytes:
        return self.docmd("HELP", args)[1]

    def mail(self, sender: str, options: Sequence[str] = ()) -> _Reply:
        return self.docmd("MAIL", f"FROM:{smtplib.quoteaddr(sender)}" + "".join(" " + o for o in options))

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> _Reply:
        return self.docmd("RCPT", f"TO:{smtplib.quoteaddr(recip)}" + "".join(" " + o for o in options))

    def data(self, msg: str | bytes) -> _Reply:
        """DATA, then ``msg``, dot-stuffed and ended as smtplib does: the step
        after :meth:`mail` and :meth:`rcpt`. Like them it goes once, on the
        connection held, and is not retried (:meth:`sendmail` is).

        :raises smtplib.SMTPDataError: the server did not answer DATA with 354.
        :raises smtplib.SMTPServerDisconnected: the connection was lost; after
            the message went out whole, the server may have it.
        """
        code, repl = self.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, repl)
        session = self._session
        if session is None or not session.connected:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        if isinstance(msg, str):
            msg = _FIX_EOLS.sub("\r\n", msg).encode("ascii")
        q = _LEADING_DOT.sub(b"..", msg)
        if q[-2:] != b"\r\n":
            q += b"\r\n"
        q += b".\r\n"
        if self.debuglevel > 0:
            self._print_debug("data:", repr(q))
        ev = _portal.run(session.send_body(q))
        self._dirty = False  # the final reply, whatever it says, ends the transaction
        return self._answer(ev)

    # -- TLS and AUTH: recorded, so a reconnect replays them ------------------------------------

    def starttls(self, keyfile: str | None = None, certfile: str | None = None,
                 context: ssl.SSLContext | None = None) -> _Reply:
        """Upgrade to TLS. The certificate and host name are verified with
        ``ssl.create_default_context()`` unless ``context`` says otherwise."""
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server.")
        if context is None:
            context = ssl.create_default_context()
            if certfile is not None:
                context.load_cert_chain(certfile, keyfile)
        intent = self._require_intent()
        self._intent = _intern(  # dataclasses.replace(intent, tls=STARTTLS, tls_context=context), interned
            intent.host, intent.port, TLSMode.STARTTLS, intent.timeout, context, intent.local_hostname,
            intent.source_address, intent.username, intent.password,
        )
        session = self._session
        if session is not None and session.connected:
            ev = _portal.run(session.starttls(context))
            if isinstance(ev, TransportFailure):
                self.close()
                _raise_for(ev, "STARTTLS")
            assert isinstance(ev, Reply)
            if ev.code != 220 and ev.phase is Phase.STARTTLS:
                return ev.code, _bytes(ev.text)
            session.endpoint = self._intent
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        return 220, b"2.0.0 Ready to start TLS"

    def login(self, user: str, password: str, *, initial_response_ok: bool = True) -> _Reply:
        """Log in; the credentials are kept (in memory only) to log in again on a reconnect.

        :raises smtplib.SMTPNotSupportedError: a plaintext connection to a host
            that is not on loopback (smtpretry will not send a password in clear
            unless ``smtpretry.configure(allow_plaintext_auth=True)``).
        """
        self.ehlo_or_helo_if_needed()
        intent = self._require_intent()
        in_clear = intent.tls is TLSMode.NONE and not is_loopback(intent.host)
        if in_clear and not active_config().allow_plaintext_auth:
            raise smtplib.SMTPNotSupportedError(
                f"smtpretry: refusing to send a password in clear to {intent.host}; call starttls() first, "
                "or smtpretry.configure(allow_plaintext_auth=True)"
            )
        if not self.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        self._intent = _intern(  # dataclasses.replace(intent, username=user, password=password), interned
            intent.host, intent.port, intent.tls, intent.timeout, intent.tls_context, intent.local_hostname,
            intent.source_address, user, password,
        )
        session = self._session
        if session is not None and session.connected:
            ev = _portal.run(session.login(user, password))
            if isinstance(ev, TransportFailure):
                self.close()
                _raise_for(ev, "AUTH")
            assert isinstance(ev, Reply)
            if ev.code not in (235, 503):
                self._intent = intent
                raise smtplib.SMTPAuthenticationError(ev.code, _bytes(ev.text))
            session.endpoint = self._intent
            return ev.code, _bytes(ev.text)
        if self._mailer_of(self._intent).pool.has_idle():
            # A connection logged in with these very credentials waits for reuse:
            # they are good, and the next command takes that connection.
            return 235, b"2.7.0 Authentication successful"
        try:
            self._open()  # a new connection that logs in, now, so a bad password raises here
        except smtplib.SMTPException:
            self._intent = intent
            raise
        return 235, b"2.7.0 Authentication successful"

    def auth(self, mechanism: str, authobject: Callable[..., str | bytes | None], *,
             initial_response_ok: bool = True) -> _Reply:
        """A custom AUTH exchange, as smtplib. It cannot be replayed, so a
        connection lost after it ends the send (``login()`` is replayed)."""
        mechanism = mechanism.upper()
        initial = authobject() if initial_response_ok else None
        if initial is not None:
            response = base64.b64encode(initial.encode("ascii") if isinstance(initial, str) else initial)
            code, resp = self._command(Phase.AUTH, b"AUTH", mechanism.encode(), response)
            self._auth_challenge_count = 1
        else:
            code, resp = self._command(Phase.AUTH, b"AUTH", mechanism.encode())
            self._auth_challenge_count = 0
        while code == 334:
            self._auth_challenge_count += 1
            challenge = base64.decodebytes(resp)
            answer = authobject(challenge)
            answer_bytes = answer.encode("ascii") if isinstance(answer, str) else (answer or b"")
            code, resp = self._command(Phase.AUTH, base64.b64encode(answer_bytes))
        if code in (235, 503):
            return code, resp
        raise smtplib.SMTPAuthenticationError(code, resp)

    # -- sending ---------------------------------------------------------------------------------

    def sendmail(self, from_addr: str, to_addrs: str | Sequence[str], msg: str | bytes,
                 mail_options: Sequence[str] = (), rcpt_options: Sequence[str] = ()) -> dict[str, _Reply]:
        """Send ``msg`` to each recipient once, retrying what can be retried.

        Returns the recipients refused (as smtplib: ``{address: (code, reply)}``);
        deferred recipients are refused too when no queue holds them. Raises
        what smtplib raises when no recipient got the message.
        """
        if isinstance(msg, str):
            msg = _FIX_EOLS.sub("\r\n", msg).encode("ascii")
        rcpts = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        if not rcpts:
            raise smtplib.SMTPRecipientsRefused({})
        envelope = build_envelope(msg, from_addr, rcpts)  # MessageError is a ValueError, as smtplib's
        if any(o.upper() == "SMTPUTF8" for o in mail_options):
            envelope = dataclasses.replace(envelope, smtputf8=True)
        return self._deliver(envelope, from_addr)

    def send_message(self, msg: Message, from_addr: str | None = None,
                     to_addrs: str | Sequence[str] | None = None, mail_options: Sequence[str] = (),
                     rcpt_options: Sequence[str] = ()) -> dict[str, _Reply]:
        """Send an :class:`email.message.Message`, the envelope from its
        headers (Bcc removed), as smtplib; SMTPUTF8 when an address needs it."""
        rcpts = None if to_addrs is None else [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        return self._deliver(build_envelope(msg, from_addr, rcpts), from_addr or "")

    def _deliver(self, envelope: Any, sender: str) -> dict[str, _Reply]:
        self.ehlo_or_helo_if_needed()
        intent = self._require_intent()
        mailer = self._mailer_of(intent)
        if self._dirty and self._session is not None:
            self._session.needs_reset = True
            self._dirty = False
        result = _portal.run(mailer.deliver(envelope, sessions=_Held(self)))
        self.last_result = result
        self.sock = self._session
        held = getattr(mailer, "queue", None) is not None
        refused = {
            r: (o.code if o.code is not None else -1, _bytes(o.text))
            for r, o in result.outcomes.items()
            if o.status is Status.FAILED or (o.status is Status.DEFERRED and not held)
        }
        if len(refused) == len(result.outcomes):
            raise refused_error(result, sender)
        return refused


def _features(ehlo_text: str) -> dict[str, str]:
    """ESMTP features from an EHLO reply's text, as smtplib parses them."""
    features: dict[str, str] = {}
    for line in ehlo_text.split("\n")[1:]:
        m = re.match(r"(?P<feature>[A-Za-z0-9][A-Za-z0-9\-]*) ?", line)
        if m:
            feature = m.group("feature").lower()
            params = line[m.end("feature") :].strip()
            if feature == "auth":
                features[feature] = (features.get(feature, "") + " " + params).strip()
            else:
                features[feature] = params
    return features


class SMTP_SSL(SMTP):  # noqa: N801 - smtplib's name
    """:class:`smtplib.SMTP_SSL`: TLS from the first byte (port 465). The
    certificate is verified with ``ssl.create_default_context()`` unless
    ``context`` says otherwise."""

    default_port = smtplib.SMTP_SSL_PORT
    _implicit_tls = True

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        keyfile: str | None = None,
        certfile: str | None = None,
        timeout: float | object = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: tuple[str, int] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if context is None:
            context = ssl.create_default_context()
            if certfile is not None:
                context.load_cert_chain(certfile, keyfile)
        self.keyfile, self.certfile = keyfile, certfile
        self._ssl_context = context
        super().__init__(host, port, local_hostname, timeout, source_address)

    def _endpoint(self, host: str, port: int) -> Endpoint:
        self.context = self._ssl_context
        return super()._endpoint(host, port)



class SMTPHandler(logging.handlers.SMTPHandler):
    """:class:`logging.handlers.SMTPHandler` that sends through :class:`SMTP`:
    replace ``logging.handlers.SMTPHandler(...)`` with ``smtpretry.SMTPHandler(...)``,
    same arguments."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            import email.utils

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
