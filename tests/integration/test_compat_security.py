"""The three ways the old facade lent a connection it must not have, pinned at the server:
a context that does not trust the server never gets mail delivered, a wrong ``auth()``
never sends as someone else (and a 503 "already authenticated" is never a login), and a
forked child never writes to a connection its parent opened.

Each runs with ``reuse_connections = true``, where lending happens at all."""

from __future__ import annotations

import os
import smtplib
import ssl
import warnings
from collections.abc import Iterator

import pytest
import trustme

import smtpretry
from smtpretry import Config, RetryPolicy
from tests.servers import LineServer, LineSession, make_tls

FAST = RetryPolicy(backoff_base=0.005, backoff_cap=0.02, max_attempts=3)
MSG = b"Subject: secure\r\n\r\nhi\r\n"


@pytest.fixture(autouse=True)
def reuse_on() -> Iterator[None]:
    smtpretry.configure(Config(policy=FAST, reuse_connections=True))
    yield
    smtpretry.configure(Config())


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return make_tls(trustme.CA())


def recipients(server: LineServer) -> list[bytes]:
    return [r.split(b"<")[1].split(b">")[0] for _, rcpts, _ in server.delivered for r in rcpts]


# -- 1. trust ----------------------------------------------------------------------------------


def test_a_context_that_does_not_trust_the_server_never_delivers_over_starttls(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, trusting = tls
    untrusting = ssl.create_default_context()  # the system CAs: not the test CA
    server = LineServer(tls=server_ctx, users={"me": "pw"})
    with server:
        with smtpretry.SMTP("127.0.0.1", server.port) as a:  # a trusting caller leaves a kept connection
            a.starttls(context=trusting)
            a.login("me", "pw")
            a.sendmail("me@example.org", ["trusted@example.com"], MSG)
        b = smtpretry.SMTP("127.0.0.1", server.port)
        with pytest.raises(ssl.SSLCertVerificationError):
            b.starttls(context=untrusting)
        with pytest.raises(smtplib.SMTPException):
            b.login("me", "pw")  # no AUTH and no mail on anything b could reach
            b.sendmail("me@example.org", ["untrusted@example.com"], MSG)
        b.close()
    assert recipients(server) == [b"trusted@example.com"]
    assert len(server.sessions) == 2  # b had a connection of its own, and its handshake failed
    assert server.sessions[1].user is None and not server.sessions[1].messages


def test_a_context_that_does_not_trust_the_server_never_delivers_over_implicit_tls(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, trusting = tls
    server = LineServer(users={"me": "pw"})
    # Implicit TLS: the listener itself speaks TLS.
    server._listener = server_ctx.wrap_socket(
        server._listener, server_side=True, do_handshake_on_connect=False
    )
    with server:
        with smtpretry.SMTP_SSL("127.0.0.1", server.port, context=trusting) as a:
            a.login("me", "pw")
            a.sendmail("me@example.org", ["trusted@example.com"], MSG)
        with pytest.raises(ssl.SSLCertVerificationError):
            smtpretry.SMTP_SSL("127.0.0.1", server.port)  # smtplib's default, verified here
        with pytest.raises(ssl.SSLCertVerificationError):
            smtpretry.SMTP_SSL("127.0.0.1", server.port, context=ssl.create_default_context())
    assert recipients(server) == [b"trusted@example.com"]


# -- 2. identity -------------------------------------------------------------------------------


def plain(user: str, password: str) -> object:
    return lambda challenge=None: f"\0{user}\0{password}"


def test_a_wrong_auth_never_sends_as_someone_else() -> None:
    server = LineServer(users={"alice": "a-pw", "bob": "b-pw"})
    with server:
        with smtpretry.SMTP("127.0.0.1", server.port) as a:
            a.ehlo()
            a.auth("PLAIN", plain("alice", "a-pw"))  # type: ignore[arg-type]
            a.sendmail("alice@example.org", ["1@example.com"], MSG)
        with smtpretry.SMTP("127.0.0.1", server.port) as b:
            b.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                b.auth("PLAIN", plain("bob", "wrong"))  # type: ignore[arg-type]
            assert info.value.smtp_code == 535
            with pytest.raises(smtplib.SMTPException):
                b.sendmail("bob@example.org", ["2@example.com"], MSG)  # the server wants AUTH
    assert [(s.user, len(s.messages)) for s in server.sessions] == [("alice", 1), (None, 0)]


def test_a_503_already_authenticated_is_never_a_login() -> None:
    # A server (or a connection someone else authenticated) that answers AUTH with 503.
    def already(session: LineSession, line: bytes) -> bytes | None:
        return b"503 5.5.1 Error: already authenticated" if line[:4] == b"AUTH" else None

    server = LineServer(users={}, respond=already)
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            s.auth("PLAIN", plain("bob", "wrong"))  # type: ignore[arg-type]
        assert info.value.smtp_code == 503
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("bob", "wrong")
    assert server.delivered == []


def test_a_login_with_other_credentials_never_gets_a_kept_connection() -> None:
    server = LineServer(users={"alice": "a-pw", "bob": "b-pw"})
    with server:
        with smtpretry.SMTP("127.0.0.1", server.port) as a:
            a.login("alice", "a-pw")
            a.sendmail("alice@example.org", ["1@example.com"], MSG)
        with smtpretry.SMTP("127.0.0.1", server.port) as b, pytest.raises(smtplib.SMTPAuthenticationError):
            b.login("alice", "guessed")
    assert [(s.user, len(s.messages)) for s in server.sessions] == [("alice", 1), (None, 0)]


# -- 3. processes ------------------------------------------------------------------------------


def test_a_forked_child_never_writes_to_its_parents_connections() -> None:
    server = LineServer()
    with server:
        with smtpretry.SMTP("127.0.0.1", server.port) as s:  # kept at quit()
            s.sendmail("me@example.org", ["parent-1@example.com"], MSG)
        held = smtpretry.SMTP("127.0.0.1", server.port)  # and one the parent holds, for real
        held.noop()
        assert len(server.sessions) == 2
        lines_before = [list(s.lines) for s in server.sessions]
        read, write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
            pid = os.fork()
        if pid == 0:  # the child
            status = 1
            try:
                os.close(read)
                try:
                    held.noop()
                    outcome = b"wrote"
                except smtplib.SMTPServerDisconnected:
                    outcome = b"refused"
                with smtpretry.SMTP("127.0.0.1", server.port) as c:
                    c.sendmail("me@example.org", ["child@example.com"], MSG)
                os.write(write, outcome)
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        told = os.read(read, 100)
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert told == b"refused"
        with smtpretry.SMTP("127.0.0.1", server.port) as s:  # the parent's kept connection still works
            s.sendmail("me@example.org", ["parent-2@example.com"], MSG)
        held.quit()
    parents = server.sessions[:2]
    children = server.sessions[2:]
    assert server.sessions[1].lines == lines_before[1]  # the held one: not a byte from the child
    assert recipients(server).count(b"child@example.com") == 1
    assert all(b"child" not in b"".join(s.lines) for s in parents)
    assert [len(s.messages) for s in parents] == [2, 0]  # parent-1 and parent-2, on the kept connection
    assert len(children) == 1 and len(children[0].messages) == 1  # the child's own connection
