"""Connections lent between ``SMTP`` objects: only with ``reuse_connections``, only to an
object that sets up the very same session, and never across TLS trust, identity or
processes. Each test asserts at the server which connection carried what."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import smtpretry
from smtpretry import Config, ConfigError, RetryPolicy, load_config
from tests.servers import LineServer, LineSession, make_tls

FAST = RetryPolicy(backoff_base=0.005, backoff_cap=0.02, max_attempts=5)
MSG = b"Subject: reuse\r\n\r\nhi\r\n"


@pytest.fixture(autouse=True)
def reuse_on() -> Iterator[None]:
    smtpretry.configure(Config(policy=FAST, reuse_connections=True))
    yield
    smtpretry.configure(Config())


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return make_tls(trustme.CA())


def verbs(session: LineSession) -> list[bytes]:
    return [line.split()[0].upper() for line in session.lines]


def send(port: int, to: str, *, context: ssl.SSLContext | None = None, user: str | None = None,
         password: str = "pw", implicit: bool = False) -> dict[str, tuple[int, bytes]]:
    """What an application does per message: connect, (STARTTLS), (login), send, QUIT."""
    if implicit:
        s: smtplib.SMTP = smtpretry.SMTP_SSL("127.0.0.1", port, context=context)
    else:
        s = smtpretry.SMTP("127.0.0.1", port)
    with s:
        if context is not None and not implicit:
            s.starttls(context=context)
        if user is not None:
            s.login(user, password)
        return s.sendmail("me@example.org", [to], MSG)


def test_the_configuration_key_is_off_by_default_and_read_from_the_file(tmp_path: Path) -> None:
    assert Config().reuse_connections is False
    path = tmp_path / "smtpretry.toml"
    path.write_text("reuse_connections = true\n")
    assert load_config(path).reuse_connections is True
    path.write_text('reuse_connections = "yes"\n')
    with pytest.raises(ConfigError, match="reuse_connections: expected true or false"):
        load_config(path)
    assert smtpretry.configure(reuse_connections=False).reuse_connections is False


def test_without_reuse_every_object_has_its_own_connection_and_quits_it() -> None:
    smtpretry.configure(Config(policy=FAST))
    server = LineServer(users={"me": "pw"})
    with server:
        for i in range(3):
            assert send(server.port, f"r{i}@example.com", user="me") == {}
    assert len(server.sessions) == 3
    assert all(verbs(s)[-1] == b"QUIT" for s in server.sessions)


def test_an_object_set_up_the_same_way_takes_the_kept_connection() -> None:
    server = LineServer(users={"me": "pw"})
    with server:
        for i in range(5):
            assert send(server.port, f"r{i}@example.com", user="me") == {}
    assert len(server.sessions) == 1  # connect, EHLO and AUTH once; five messages on it
    assert verbs(server.sessions[0]).count(b"AUTH") == 1
    assert b"QUIT" not in verbs(server.sessions[0])  # quit() kept it
    rcpt = smtpretry.compat._VERBS.rcpt
    assert [m[1] for m in server.delivered] == [[rcpt + f"<r{i}@example.com>\r\n".encode()] for i in range(5)]


def test_other_credentials_get_a_connection_of_their_own() -> None:
    server = LineServer(users={"alice": "a-pw", "bob": "b-pw"})
    with server:
        send(server.port, "1@example.com", user="alice", password="a-pw")
        send(server.port, "2@example.com", user="bob", password="b-pw")
        send(server.port, "3@example.com", user="alice", password="a-pw")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            send(server.port, "4@example.com", user="alice", password="wrong")
    users = [s.user for s in server.sessions]
    assert users[:2] == ["alice", "bob"]
    assert users[2:] == [None]  # the wrong password: a new connection, and AUTH refused
    sent_by = {m[1][0]: s.user for s in server.sessions for m in s.messages}
    by_message = {k.split(b"<")[1][:1]: v for k, v in sent_by.items()}
    assert by_message == {b"1": "alice", b"2": "bob", b"3": "alice"}


def test_a_custom_auth_connection_is_never_lent() -> None:
    server = LineServer(users={"me": "pw"})
    with server:
        for i in range(2):
            with smtpretry.SMTP("127.0.0.1", server.port) as s:
                s.ehlo()
                s.auth("PLAIN", lambda challenge=None: "\0me\0pw")
                s.sendmail("me@example.org", [f"r{i}@example.com"], MSG)
    assert len(server.sessions) == 2
    assert all(verbs(s)[-1] == b"QUIT" for s in server.sessions)


def test_different_tls_contexts_never_share_a_connection(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    other = ssl.create_default_context()
    trustme_ca = trustme.CA()  # a second CA: a context that trusts a different authority
    trustme_ca.configure_trust(other)
    server = LineServer(tls=server_ctx, users={"me": "pw"})
    with server:
        send(server.port, "1@example.com", context=client_ctx, user="me")
        send(server.port, "2@example.com", context=client_ctx, user="me")
        with pytest.raises(ssl.SSLCertVerificationError):
            send(server.port, "3@example.com", context=other, user="me")
    assert len(server.sessions) == 2  # the trusting context's, reused; the other context's own
    assert len(server.delivered) == 2


def test_a_kept_connection_the_server_closed_meanwhile_is_replaced() -> None:
    server = LineServer()
    with server:
        send(server.port, "1@example.com")
        # The server ends the idle session (as servers do after their idle timeout).
        for s in server._conns:
            s.shutdown(2)
        assert send(server.port, "2@example.com") == {}
    assert len(server.sessions) == 2
    assert len(server.delivered) == 2
