"""The smtplib drop-in against real servers on 127.0.0.1: a real session per object,
what goes on the wire compared with what smtplib itself sends, and the engine inside
sendmail()/send_message(). Assertions are made at the server."""

from __future__ import annotations

import inspect
import logging
import re
import smtplib
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from structlog.testing import capture_logs

import smtpretry
from smtpretry import Config, RetryPolicy
from smtpretry.errors import QueueError, SMTPConfigError, SMTPQueueError
from tests.servers import (
    R421_SHUTDOWN,
    R421_TOO_MANY,
    R422_OVER_QUOTA,
    R550_UNKNOWN,
    LineServer,
    LineSession,
    ScriptedHandler,
    serve_threaded,
)

FAST = RetryPolicy(backoff_base=0.005, backoff_cap=0.02, max_attempts=20)


@pytest.fixture(autouse=True)
def fast_policy() -> Iterator[None]:
    smtpretry.configure(Config(policy=FAST))
    yield
    smtpretry.configure(Config())


def commands(handler: ScriptedHandler) -> list[str]:
    return [c for c, _ in handler.commands]


def tutorial_script(smtp_module: object, port: int, to: str = "friend@example.com") -> dict[str, object]:
    """What smtplib tutorials show, with the module passed in as the only change."""
    msg = EmailMessage()
    msg["Subject"] = "Hello"
    msg["From"] = "me@example.org"
    msg["To"] = to
    msg.set_content("Hi there")
    with smtp_module.SMTP("127.0.0.1", port) as server:  # type: ignore[attr-defined]
        server.ehlo()
        server.login("me@example.org", "s3cret")
        refused = server.send_message(msg)
    return refused  # type: ignore[no-any-return]


# -- names and signatures ----------------------------------------------------------------------


def test_import_smtpretry_as_smtplib_gives_every_smtplib_name() -> None:
    # smtplib's own names (not the modules and functions it imports, such as encode_base64)
    public = [n for n in dir(smtplib) if not n.startswith("_")
              and type(getattr(smtplib, n)).__name__ != "module"
              and (not callable(getattr(smtplib, n)) or getattr(smtplib, n).__module__ == "smtplib")]
    for name in public:
        assert hasattr(smtpretry, name), name
        if name not in ("SMTP", "SMTP_SSL"):
            assert getattr(smtpretry, name) is getattr(smtplib, name), name
    assert {"LMTP", "LMTP_PORT", "OLDSTYLE_AUTH", "CRLF", "bCRLF", "quoteaddr", "quotedata"} <= set(public)


def test_smtp_is_smtplibs_own_class_with_its_signatures() -> None:
    assert issubclass(smtpretry.SMTP, smtplib.SMTP)
    for name in ("__init__", "connect", "sendmail", "send_message", "login", "auth", "starttls", "mail",
                 "rcpt", "data", "putcmd", "getreply", "docmd", "quit", "close", "ehlo", "helo"):
        ours = inspect.signature(getattr(smtpretry.SMTP, name))
        theirs = inspect.signature(getattr(smtplib.SMTP, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        kinds = [p.kind for p in ours.parameters.values()]
        assert kinds == [p.kind for p in theirs.parameters.values()], name
    ssl_ours = inspect.signature(smtpretry.SMTP_SSL.__init__)
    ssl_theirs = inspect.signature(smtplib.SMTP_SSL.__init__)
    assert [(p.name, p.kind) for p in ssl_ours.parameters.values()] == [
        (p.name, p.kind) for p in ssl_theirs.parameters.values()
    ]


# -- a real session per object ---------------------------------------------------------------


def test_a_session_is_real_from_connect_to_quit() -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        s = smtpretry.SMTP("127.0.0.1", port, local_hostname="client.test")
        assert s.sock is not None
        assert s.sock.getpeername()[1] == port
        assert s.sock.gettimeout() is None  # the socket's own, as smtplib made it (no timeout given)
        assert s.ehlo()[0] == 250 and s.has_extn("8bitmime")
        assert s.noop() == (250, b"OK")
        assert s.quit() == (221, b"Bye")  # the server's own reply
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()
        s2 = smtpretry.SMTP("127.0.0.1", port)
        s2.close()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s2.noop()
    assert commands(handler) == ["EHLO", "NOOP", "QUIT"]  # nothing sent for the object closed unused
    assert handler.commands[0] == ("EHLO", "client.test")


def test_a_tutorial_script_sends_one_ehlo_and_what_smtplib_sends() -> None:
    ours, theirs = ScriptedHandler(auth={"me@example.org": "s3cret"}), ScriptedHandler(
        auth={"me@example.org": "s3cret"})
    with serve_threaded(ours) as port:
        assert tutorial_script(smtpretry, port) == {}
    with serve_threaded(theirs) as port:
        assert tutorial_script(smtplib, port) == {}
    assert commands(ours) == commands(theirs)
    assert commands(ours).count("EHLO") == 1
    assert ours.received == theirs.received


def test_putcmd_getreply_send_and_docmd_go_as_smtplib() -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        s.putcmd("NOOP")
        assert s.getreply() == (250, b"OK")
        s.send(b"NOOP\r\n")
        assert s.getreply() == (250, b"OK")
        assert s.docmd("RSET") == (250, b"OK")
        with pytest.raises(ValueError, match="prohibited newline characters"):
            s.putcmd("NOOP\r\nQUIT")
    assert commands(handler) == ["NOOP", "NOOP", "RSET", "QUIT"]


def test_a_reply_nobody_read_is_never_taken_for_the_reply_to_a_send() -> None:
    # Two NOOPs put, one reply read: the connection is out of step, so sendmail() takes
    # another (the set-up replayed) rather than read the stray 250 as its MAIL's reply.
    server = LineServer()
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        s.ehlo()
        s.putcmd("NOOP")
        s.putcmd("NOOP")
        assert s.getreply()[0] == 250
        assert s.sendmail("me@example.org", ["a@example.com"], b"Subject: x\r\n\r\nhi\r\n") == {}
    assert len(server.sessions) == 2
    assert [s.lines[0][:4] for s in server.sessions] == [b"ehlo", b"ehlo"]
    assert len(server.delivered) == 1


def low_level_send(smtp_module: object, port: int) -> tuple[tuple[int, bytes], ...]:
    """MAIL, RCPT and DATA by hand, as some smtplib programs do."""
    body = "Subject: by hand\n\n.a line that starts with a dot\n..and two\nlast line"
    with smtp_module.SMTP("127.0.0.1", port) as s:  # type: ignore[attr-defined]
        s.ehlo()
        return (s.mail("me@example.org"), s.rcpt("you@example.com"), s.data(body))


def test_mail_rcpt_data_by_hand_send_what_smtplib_sends() -> None:
    ours, theirs = ScriptedHandler(), ScriptedHandler()
    with serve_threaded(ours) as port:
        replies = low_level_send(smtpretry, port)
    with serve_threaded(theirs) as port:
        expected = low_level_send(smtplib, port)
    assert replies == expected
    assert ours.received == theirs.received  # sender, recipients and bytes, dots unstuffed
    assert ours.received[0][2].splitlines()[2:4] == [b".a line that starts with a dot", b"..and two"]


def test_data_refused_by_hand_raises_smtplibs_data_error() -> None:
    handler = ScriptedHandler(rcpt=[R550_UNKNOWN])
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        s.ehlo()
        s.mail("me@example.org")
        assert s.rcpt("nobody@example.com")[0] == 550
        with pytest.raises(smtplib.SMTPDataError) as caught:
            s.data("Subject: x\n\nbody")
    assert caught.value.smtp_code == 503  # no valid recipients: aiosmtpd refuses DATA
    assert handler.copies == Counter()


def test_a_421_greeting_is_retried_at_connect_other_greetings_raise_at_once() -> None:
    handler = ScriptedHandler(greeting=[R421_TOO_MANY, R421_TOO_MANY])
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        assert s.noop()[0] == 250
    assert not handler.greeting  # three connections were made: two refused, then this one

    handler = ScriptedHandler(greeting=["554 5.7.1 No SMTP service here", "554 5.7.1 No SMTP service here"])
    with serve_threaded(handler) as port, pytest.raises(smtplib.SMTPConnectError) as info:
        smtpretry.SMTP("127.0.0.1", port)
    assert info.value.smtp_code == 554
    assert len(handler.greeting) == 1  # one connection only


def test_421_greetings_that_outlast_the_attempts_raise_smtplibs_connect_error() -> None:
    smtpretry.configure(Config(policy=RetryPolicy(backoff_base=0.001, max_attempts=2)))
    handler = ScriptedHandler(greeting=[R421_TOO_MANY] * 3)
    with serve_threaded(handler) as port, pytest.raises(smtplib.SMTPConnectError) as info:
        smtpretry.SMTP("127.0.0.1", port)
    assert info.value.smtp_code == 421
    assert len(handler.greeting) == 1  # two attempts


def test_a_refused_connection_raises_at_once_as_smtplibs() -> None:
    with serve_threaded(ScriptedHandler()) as port:
        pass  # nothing listens on the port any more
    with capture_logs() as logs, pytest.raises(ConnectionRefusedError):
        smtpretry.SMTP("127.0.0.1", port)
    assert [e for e in logs if e["event"] == "smtpretry.retry_scheduled"] == []


# -- the engine inside sendmail() --------------------------------------------------------------


def test_a_tutorial_script_runs_unchanged_and_survives_a_421() -> None:
    handler = ScriptedHandler(auth={"me@example.org": "s3cret"}, mail=[R421_SHUTDOWN])
    with serve_threaded(handler) as port:
        refused = tutorial_script(smtpretry, port)
    assert refused == {}
    assert handler.copies == Counter({"friend@example.com": 1})
    assert handler.logins == ["me@example.org", "me@example.org"]  # the reconnect logged in again


def test_a_421_to_the_ehlo_sendmail_sends_is_retried() -> None:
    handler = ScriptedHandler(ehlo=[R421_TOO_MANY])
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        assert s.sendmail("me@example.org", ["a@example.com"], "Subject: x\r\n\r\nhi\r\n") == {}
    assert handler.copies == Counter({"a@example.com": 1})


def test_sendmail_returns_refused_recipients_like_smtplib() -> None:
    handler = ScriptedHandler(rcpt={"bad@example.com": [R550_UNKNOWN]})
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        refused = s.sendmail(
            "me@example.org", ["ok@example.com", "Bad Person <bad@example.com>"], "Subject: x\r\n\r\nbody\r\n"
        )
    # Keyed by the address as given, as smtplib keys it.
    assert refused == {"Bad Person <bad@example.com>": (550, b"5.1.1 User unknown")}
    assert handler.copies == Counter({"ok@example.com": 1})


def test_a_421_to_one_rcpt_is_retried_and_only_pending_recipients_are_sent_again() -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R421_TOO_MANY]})
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        assert (
            s.sendmail("me@example.org", ["a@example.com", "b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
            == {}
        )
        assert s.last_result is not None and s.last_result.delivered == ["a@example.com", "b@example.com"]
    assert handler.copies == Counter({"a@example.com": 1, "b@example.com": 1})


def test_all_refused_raises_smtplibs_exception_with_smtplibs_attributes() -> None:
    handler = ScriptedHandler(rcpt=[R550_UNKNOWN, R550_UNKNOWN])
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            s.sendmail("me@example.org", ["a@example.com", "b@example.com"], "Subject: x\r\n\r\nhi\r\n")
        assert s.noop()[0] == 250  # the connection is still the caller's, reset as smtplib resets it
    assert info.value.recipients == {
        "a@example.com": (550, b"5.1.1 User unknown"),
        "b@example.com": (550, b"5.1.1 User unknown"),
    }
    assert commands(handler)[-3:] == ["RSET", "NOOP", "QUIT"]
    # 0.4's name for the mapping still gives the same answer from the result
    assert s.last_result is not None
    again = smtpretry.compat.refused_error(s.last_result, "me@example.org")
    assert isinstance(again, smtplib.SMTPRecipientsRefused) and again.recipients == info.value.recipients


@pytest.mark.parametrize(
    ("script", "exc", "code"),
    [
        ({"mail": ["550 5.7.1 Sender rejected"]}, smtplib.SMTPSenderRefused, 550),
        ({"data": ["554 5.6.0 Message rejected"]}, smtplib.SMTPDataError, 554),
    ],
)
def test_sender_and_data_refusals_raise_what_smtplib_raises(
    script: dict[str, list[str]], exc: type[smtplib.SMTPResponseException], code: int
) -> None:
    handler = ScriptedHandler(**script)  # type: ignore[arg-type]
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        with pytest.raises(smtplib.SMTPException) as info:
            s.sendmail("me@example.org", ["a@example.com"], "Subject: x\r\n\r\nhi\r\n")
    assert type(info.value) is exc
    assert info.value.smtp_code == code  # type: ignore[attr-defined]


def test_retries_run_out_without_a_queue_raise_for_the_last_reply() -> None:
    smtpretry.configure(Config(policy=RetryPolicy(backoff_base=0.001, max_attempts=2)))
    handler = ScriptedHandler(mail=[R421_SHUTDOWN] * 5)
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            s.sendmail("me@example.org", ["a@example.com"], "Subject: x\r\n\r\nhi\r\n")
        assert s.sock is None  # as smtplib leaves it after a 421
    assert info.value.smtp_code == 421
    assert s.last_result is not None and list(s.last_result.deferred) == ["a@example.com"]


def test_deferred_recipients_go_to_the_configured_queue_and_are_not_refused(tmp_path: Path) -> None:
    smtpretry.configure(Config(policy=FAST, queue_url=f"sqlite:///{tmp_path / 'q.db'}"))
    handler = ScriptedHandler(rcpt={"full@example.com": [R422_OVER_QUOTA]})
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        refused = s.sendmail(
            "me@example.org", ["ok@example.com", "full@example.com"], "Subject: x\r\n\r\nhi\r\n"
        )
        assert refused == {}
        assert s.last_result is not None and s.last_result.queue_id is not None
        assert list(s.last_result.deferred) == ["full@example.com"]
    assert handler.copies == Counter({"ok@example.com": 1})


def test_a_queue_that_cannot_be_written_raises_an_smtplib_exception_with_the_result(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    smtpretry.configure(Config(policy=FAST, queue_url=f"sqlite:///{blocker / 'q.db'}"))
    handler = ScriptedHandler(rcpt={"full@example.com": [R422_OVER_QUOTA]})
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        with pytest.raises(smtplib.SMTPException) as info:
            s.sendmail("me@example.org", ["ok@example.com", "full@example.com"], "Subject: x\r\n\r\nhi\r\n")
    assert isinstance(info.value, SMTPQueueError) and isinstance(info.value, QueueError)
    result = info.value.result
    assert result is not None and result.delivered == ["ok@example.com"] and list(result.deferred) == [
        "full@example.com"]
    assert handler.copies == Counter({"ok@example.com": 1})


def test_a_shared_backend_that_does_not_answer_is_an_smtplib_exception() -> None:
    pytest.importorskip("redis")
    from smtpretry.errors import BackendError, SMTPBackendError

    with serve_threaded(ScriptedHandler()) as live:
        pass
    # Nothing listens on that port: the cap's Redis is unreachable, so no slot can be had.
    smtpretry.configure(Config(policy=FAST, backend_url=f"redis://127.0.0.1:{live}/0"))
    handler = ScriptedHandler()
    with serve_threaded(handler) as port, pytest.raises(smtplib.SMTPException) as info:
        smtpretry.SMTP("127.0.0.1", port)
    assert isinstance(info.value, SMTPBackendError) and isinstance(info.value, BackendError)
    assert handler.sessions_total == 0  # no connection outside the shared cap


def test_a_broken_configuration_file_is_an_smtplib_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "smtpretry.toml"
    bad.write_text("[defaults]\nmax_connections = 0\n")
    monkeypatch.setenv("SMTPRETRY_CONFIG", str(bad))
    monkeypatch.setattr(smtpretry.config, "_active", None)
    with pytest.raises(smtplib.SMTPException) as info:
        smtpretry.SMTP("127.0.0.1", 25)
    assert isinstance(info.value, SMTPConfigError) and isinstance(info.value, ValueError)
    assert "max_connections" in str(info.value)


def test_mail_and_rcpt_options_go_on_the_wire_and_stay_on_every_retry() -> None:
    def first_data_gets_421(session: LineSession, line: bytes) -> bytes | None:
        return b"421 4.3.2 Closing, come back" if session.number == 0 and line.startswith(b"data") else None

    server = LineServer(extensions=["8BITMIME", "DSN", "SIZE 1000000"], respond=first_data_gets_421)
    msg = b"Subject: dsn\r\n\r\nhi\r\n"
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        refused = s.sendmail("me@example.org", ["a@example.com"], msg,
                             mail_options=["BODY=8BITMIME", "RET=HDRS", "ENVID=abc123"],
                             rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a@example.com"])
    assert refused == {}
    mails = [line for s in server.sessions for line in s.lines if line[:4] == b"mail"]
    rcpts = [line for s in server.sessions for line in s.lines if line[:4] == b"rcpt"]
    assert len(mails) == len(rcpts) == 2  # the first connection, then the retry
    assert set(mails) == {smtpretry.compat._VERBS.mail + b"<me@example.org> size=%d BODY=8BITMIME RET=HDRS "
                          b"ENVID=abc123\r\n" % len(msg)}
    assert set(rcpts) == {smtpretry.compat._VERBS.rcpt + b"<a@example.com> NOTIFY=SUCCESS,FAILURE "
                          b"ORCPT=rfc822;a@example.com\r\n"}
    assert len(server.delivered) == 1


def test_display_names_are_taken_as_smtplib_takes_them() -> None:
    server = LineServer()
    msg = b"From: Private Person <alice@example.org>\r\nSubject: x\r\n\r\nhi\r\n"
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        assert s.sendmail("Private Person <alice@example.org>", ["Bob <bob@example.com>"], msg) == {}
    [(mail, rcpts, data)] = server.delivered
    assert mail.endswith(b"<alice@example.org> size=%d\r\n" % len(msg))
    assert rcpts == [smtpretry.compat._VERBS.rcpt + b"<bob@example.com>\r\n"]
    assert data == msg


@pytest.mark.parametrize("sender", ["me@example.org\x00", "me@exa\x7fmple.org", "a@b c@d"])
def test_an_address_that_would_inject_is_refused_before_anything_is_sent(sender: str) -> None:
    server = LineServer()
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        with pytest.raises(ValueError):
            s.sendmail(sender, ["a@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert not [line for line in server.sessions[0].lines if line[:4] in (b"mail", b"rcpt", b"data")]


def test_a_newline_in_an_option_raises_smtplibs_own_error_before_anything_is_sent() -> None:
    server = LineServer()
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        with pytest.raises(ValueError, match=r"prohibited newline characters: .*X-OPTION\\nRCPT"):
            s.sendmail("me@example.org", ["a@example.com"], b"hi", mail_options=["X-OPTION\nRCPT"])
    assert not [line for line in server.sessions[0].lines if line[:4] in (b"mail", b"rcpt", b"data")]


def test_a_recipient_named_twice_gets_what_smtplib_gives_it() -> None:
    def lines(module: Any) -> list[bytes]:
        server = LineServer()
        with server, module.SMTP("127.0.0.1", server.port) as s:
            s.sendmail("me@example.org", ["a@example.com", "a@example.com"], b"Subject: x\r\n\r\nhi\r\n")
        return server.sessions[0].lines

    assert lines(smtpretry) == lines(smtplib)


@pytest.mark.parametrize("msg", [
    b"Subject: bare LF\n\n.one\nline two\r\n..three\rfour",
    b"",
    "Subject: str\n\n.dot\r\nend",
])
def test_a_message_goes_byte_for_byte_as_smtplib_sends_it(msg: bytes | str) -> None:
    def sent(module: Any) -> list[tuple[bytes, list[bytes], bytes]]:
        server = LineServer()
        with server, module.SMTP("127.0.0.1", server.port) as s:
            s.sendmail("me@example.org", ["a@example.com"], msg)
        return server.delivered

    assert sent(smtpretry) == sent(smtplib)


@pytest.mark.parametrize("level", [1, 2])
def test_set_debuglevel_prints_what_smtplib_prints(level: int, capsys: pytest.CaptureFixture[str]) -> None:
    # aiosmtpd offers no PIPELINING: commands go one at a time, as with smtplib.
    def run(module: Any, port: int) -> list[str]:
        with module.SMTP("127.0.0.1", port, local_hostname="client.test") as s:
            s.set_debuglevel(level)
            s.ehlo()
            s.sendmail("me@example.org", ["a@example.com", "b@example.com"], "Subject: x\n\nhi\n")
            s.noop()
            s.quit()
        printed = capsys.readouterr().err.splitlines()
        return [re.sub(r"^\d\d:\d\d:\d\d\.\d+ ", "", line) for line in printed]

    with serve_threaded(ScriptedHandler()) as port:
        ours, theirs = run(smtpretry, port), run(smtplib, port)
    assert ours == theirs
    assert any(line.startswith("send: 'mail FROM:") or line.startswith("send: 'mail from:") for line in ours)


def test_no_password_in_clear_to_a_remote_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server is on loopback; the facade is made to take it for a remote one.
    monkeypatch.setattr(smtpretry.compat, "is_loopback", lambda host: False)
    handler = ScriptedHandler(auth={"me": "pw"})
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        with pytest.raises(smtplib.SMTPNotSupportedError, match="in clear"):
            s.login("me", "pw")
        with pytest.raises(smtplib.SMTPNotSupportedError, match="in clear"):
            s.auth("PLAIN", lambda challenge=None: "\0me\0pw")
    assert "AUTH" not in commands(handler)


def test_wrong_password_raises_smtplibs_authentication_error() -> None:
    handler = ScriptedHandler(auth={"me": "right"})
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            s.login("me", "wrong")
    assert info.value.smtp_code == 535
    assert "wrong" not in repr(info.value)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from tests.servers import make_tls

    return make_tls(trustme.CA())


def test_starttls_returns_the_servers_reply_and_is_replayed_with_the_callers_context(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls
    first = [True]

    def first_mail_gets_421(session: LineSession, line: bytes) -> bytes | None:
        if line[:4] == b"mail" and first[0]:
            first[0] = False
            return R421_SHUTDOWN.encode()
        return None

    server = LineServer(users={"me": "pw"}, tls=server_ctx, respond=first_mail_gets_421)
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        assert s.starttls(context=client_ctx) == (220, b"2.0.0 Ready to start TLS")
        assert s.login("me", "pw")[0] == 235
        assert s.sendmail("me@example.org", ["a@example.com"], b"Subject: x\r\n\r\nhi\r\n") == {}
    assert len(server.sessions) == 2
    assert all(s.tls and s.user == "me" for s in server.sessions)  # STARTTLS and AUTH replayed
    assert len(server.delivered) == 1


def test_starttls_without_a_context_verifies_the_certificate(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls  # signed by a CA the default context does not trust
    server = LineServer(tls=server_ctx)
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        with pytest.raises(ssl.SSLCertVerificationError):
            s.starttls()


def test_the_callers_own_auth_is_replayed_with_the_same_mechanism_and_object() -> None:
    calls: list[object] = []

    def plain(challenge: bytes | None = None) -> str:
        calls.append(challenge)
        return "\0me\0pw"

    first = [True]

    def first_rcpt_gets_421(session: LineSession, line: bytes) -> bytes | None:
        if line[:4] == b"rcpt" and first[0]:
            first[0] = False
            return R421_TOO_MANY.encode()
        return None

    server = LineServer(users={"me": "pw"}, respond=first_rcpt_gets_421)
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        s.ehlo()
        assert s.auth("PLAIN", plain) == (235, b"2.7.0 Authentication successful")
        assert s.sendmail("me@example.org", ["a@example.com"], b"Subject: x\r\n\r\nhi\r\n") == {}
    assert calls == [None, None]  # once for the caller, once on the reconnect
    assert [s.user for s in server.sessions] == ["me", "me"]


def test_a_503_to_auth_is_a_failure_not_a_login() -> None:
    server = LineServer(users={}, respond=lambda s, line: b"503 5.5.1 Error: already authenticated"
                        if line[:4] == b"AUTH" else None)
    with server, smtpretry.SMTP("127.0.0.1", server.port) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            s.auth("PLAIN", lambda challenge=None: "\0someone\0else")
        assert info.value.smtp_code == 503
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("someone", "else")


def caps_hold(port: int, threads: int = 16, per_thread: int = 5) -> list[BaseException]:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(per_thread):
                with smtpretry.SMTP("127.0.0.1", port) as s:
                    s.login("app", "pw")
                    to = [f"t{i}-{j}@example.com"]
                    assert s.sendmail("me@example.org", to, "Subject: x\r\n\r\nhi\r\n") == {}
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in pool)  # no deadlock
    return errors


@pytest.mark.parametrize("reuse", [False, True])
def test_caps_hold_across_threads_and_connections_are_lent_only_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reuse: bool
) -> None:
    # 16 threads, each with its own SMTP object per message, to a host capped at 3 in the file.
    config = tmp_path / "smtpretry.toml"
    config.write_text(
        ("reuse_connections = true\n" if reuse else "")
        + "[defaults.retry]\nbackoff_base = 0.005\nbackoff_cap = 0.05\nmax_attempts = 30\n"
        '[destinations."127.0.0.1"]\nmax_connections = 3\n'
    )
    monkeypatch.setenv("SMTPRETRY_CONFIG", str(config))
    smtpretry.configure()
    handler = ScriptedHandler(auth={"app": "pw"})
    with serve_threaded(handler) as port:
        errors = caps_hold(port)
    assert errors == []
    assert handler.max_active <= 3
    assert len(handler.copies) == 80 and set(handler.copies.values()) == {1}
    if reuse:
        assert handler.sessions_total < 80  # connections were lent across SMTP objects
    else:
        assert handler.sessions_total == 80  # one per SMTP object, as with smtplib
        assert commands(handler).count("QUIT") == 80


def test_at_the_cap_connect_waits_for_a_slot_and_says_so_when_none_comes() -> None:
    smtpretry.configure(Config(policy=FAST, limits=smtpretry.Limits(max_connections=1)))
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        holder = smtpretry.SMTP("127.0.0.1", port)
        with pytest.raises(smtplib.SMTPConnectError, match="max_connections is 1"):
            smtpretry.SMTP("127.0.0.1", port, timeout=0.2)  # this thread holds the only slot
        holder.quit()
        with smtpretry.SMTP("127.0.0.1", port, timeout=5) as s:  # the slot came back
            assert s.noop()[0] == 250
    assert handler.max_active <= 1


def test_smtp_handler_in_one_line() -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        log_handler = smtpretry.SMTPHandler(
            ("127.0.0.1", port), "app@example.org", ["ops@example.com"], "alert"
        )
        logger = logging.getLogger("test.smtphandler")
        logger.addHandler(log_handler)
        try:
            logger.error("disk full")
        finally:
            logger.removeHandler(log_handler)
    assert handler.copies == Counter({"ops@example.com": 1})
    assert b"disk full" in handler.received[0][2]


def test_send_message_with_a_non_ascii_address_uses_smtputf8() -> None:
    handler = ScriptedHandler()
    msg = EmailMessage()
    msg["From"] = "me@example.org"
    msg["To"] = "jos\u00e9@example.com"
    msg["Subject"] = "hola"
    msg.set_content("hi")
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        assert s.send_message(msg) == {}
    assert handler.copies == Counter({"jos\u00e9@example.com": 1})
    [(_, arg)] = [c for c in handler.commands if c[0] == "MAIL"]
    assert arg == "<me@example.org>"


def test_a_facade_program_prints_nothing(tmp_path: Path) -> None:
    import os
    import subprocess

    script = tmp_path / "app.py"
    script.write_text(
        "import smtpretry as smtplib\n"
        "from tests.servers import ScriptedHandler, serve_threaded, R421_TOO_MANY\n"
        "import smtpretry\n"
        "smtpretry.configure(policy=smtpretry.RetryPolicy(backoff_base=0.001))\n"
        "h = ScriptedHandler(rcpt=[R421_TOO_MANY])\n"
        "with serve_threaded(h) as port:\n"
        "    with smtplib.SMTP('127.0.0.1', port) as s:\n"
        "        assert s.sendmail('a@example.org', ['b@example.com'], 'Subject: x\\r\\n\\r\\nhi') == {}\n"
        "assert h.copies['b@example.com'] == 1\n"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
