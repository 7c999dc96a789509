"""The smtplib drop-in against scripted servers: unchanged smtplib code, the engine inside."""

from __future__ import annotations

import smtplib
import threading
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

import smtpretry
from smtpretry import Config, RetryPolicy
from tests.servers import (
    R421_SHUTDOWN,
    R421_TOO_MANY,
    R422_OVER_QUOTA,
    R550_UNKNOWN,
    ScriptedHandler,
    serve_threaded,
)

FAST = RetryPolicy(backoff_base=0.005, backoff_cap=0.02, max_attempts=20)


@pytest.fixture(autouse=True)
def fast_policy() -> Iterator[None]:
    smtpretry.configure(Config(policy=FAST))
    yield
    smtpretry.configure(Config())


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


def test_import_smtpretry_as_smtplib_gives_smtplibs_names() -> None:
    for name in smtplib.__all__:
        assert hasattr(smtpretry, name), name
    assert smtpretry.SMTPException is smtplib.SMTPException
    assert smtpretry.SMTPRecipientsRefused is smtplib.SMTPRecipientsRefused
    assert (smtpretry.SMTP_PORT, smtpretry.SMTP_SSL_PORT) == (25, 465)


def test_a_tutorial_script_runs_unchanged_and_survives_a_421() -> None:
    handler = ScriptedHandler(auth={"me@example.org": "s3cret"}, mail=[R421_SHUTDOWN])
    with serve_threaded(handler) as port:
        import smtpretry as smtplib_replacement

        refused = tutorial_script(smtplib_replacement, port)
    assert refused == {}
    assert handler.copies == Counter({"friend@example.com": 1})
    assert handler.logins == ["me@example.org", "me@example.org"]  # the reconnect logged in again


def test_sendmail_returns_refused_recipients_like_smtplib() -> None:
    handler = ScriptedHandler(rcpt={"bad@example.com": [R550_UNKNOWN]})
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        refused = s.sendmail(
            "me@example.org", ["ok@example.com", "bad@example.com"], "Subject: x\r\n\r\nbody\r\n"
        )
    assert refused == {"bad@example.com": (550, b"5.1.1 User unknown")}
    assert handler.copies == Counter({"ok@example.com": 1})


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
    assert [code for code, _ in replies] == [code for code, _ in expected] == [250, 250, 250]
    assert ours.received == theirs.received  # sender, recipients and bytes, dots unstuffed
    assert ours.received[0][2].splitlines()[2:4] == [b".a line that starts with a dot", b"..and two"]


def test_data_refused_raises_smtplibs_data_error() -> None:
    handler = ScriptedHandler(rcpt=[R550_UNKNOWN])
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        s.mail("me@example.org")
        assert s.rcpt("nobody@example.com")[0] == 550
        with pytest.raises(smtplib.SMTPDataError) as caught:
            s.data("Subject: x\n\nbody")
    assert caught.value.smtp_code == 503  # no valid recipients: aiosmtpd refuses DATA
    assert handler.copies == Counter()


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
    assert info.value.recipients == {
        "a@example.com": (550, b"5.1.1 User unknown"),
        "b@example.com": (550, b"5.1.1 User unknown"),
    }


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


def test_wrong_password_raises_smtplibs_authentication_error() -> None:
    handler = ScriptedHandler(auth={"me": "right"})
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            s.login("me", "wrong")
    assert info.value.smtp_code == 535
    assert "wrong" not in repr(info.value)


def test_no_password_in_clear_to_a_remote_host() -> None:
    s = smtpretry.SMTP()
    s._intent = s._endpoint("mail.example.net", 25)  # as after connect(), without the network
    s.ehlo_resp = b"x"
    s.esmtp_features = {"auth": "PLAIN"}
    with pytest.raises(smtplib.SMTPNotSupportedError, match="in clear"):
        s.login("me", "pw")


def test_connection_refused_raises_oserror_like_smtplib() -> None:
    smtpretry.configure(Config(policy=RetryPolicy(backoff_base=0.001, max_attempts=2)))
    with serve_threaded(ScriptedHandler()) as port:
        pass  # nothing listens on the port any more
    with pytest.raises(ConnectionRefusedError):
        smtpretry.SMTP("127.0.0.1", port)


def test_a_421_greeting_is_retried_at_connect() -> None:
    handler = ScriptedHandler(greeting=[R421_TOO_MANY, R421_TOO_MANY])
    with serve_threaded(handler) as port, smtpretry.SMTP("127.0.0.1", port + 0) as s:
        code, _ = s.noop()
    assert code == 250


def test_caps_hold_across_threads_and_connections_are_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16 threads, each with its own SMTP object, to a host capped at 3 in the config file.
    config = tmp_path / "smtpretry.toml"
    config.write_text(
        "[defaults.retry]\nbackoff_base = 0.005\nbackoff_cap = 0.05\nmax_attempts = 30\n"
        '[destinations."127.0.0.1"]\nmax_connections = 3\n'
    )
    monkeypatch.setenv("SMTPRETRY_CONFIG", str(config))
    smtpretry.configure()
    handler = ScriptedHandler(auth={"app": "pw"})
    errors: list[BaseException] = []
    with serve_threaded(handler) as port:

        def worker(i: int) -> None:
            try:
                for j in range(5):
                    with smtpretry.SMTP("127.0.0.1", port) as s:
                        s.login("app", "pw")
                        assert (
                            s.sendmail(
                                "me@example.org", [f"t{i}-{j}@example.com"], "Subject: x\r\n\r\nhi\r\n"
                            )
                            == {}
                        )
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)  # no deadlock
    assert errors == []
    assert handler.max_active <= 3
    assert len(handler.copies) == 80 and set(handler.copies.values()) == {1}
    assert handler.sessions_total < 80  # connections were reused across SMTP objects


def test_smtp_handler_in_one_line() -> None:
    import logging

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


def test_django_email_backend_sends_through_smtpretry() -> None:
    django = pytest.importorskip("django")
    from django.conf import settings

    handler = ScriptedHandler(rcpt={"b@example.com": [R421_TOO_MANY]})
    with serve_threaded(handler) as port:
        if not settings.configured:
            settings.configure(
                EMAIL_BACKEND="smtpretry.django.EmailBackend",
                EMAIL_HOST="127.0.0.1",
                EMAIL_PORT=port,
                DEFAULT_FROM_EMAIL="app@example.org",
            )
        else:
            settings.EMAIL_PORT = port
        django.setup()
        from django.core.mail import send_mail, send_mass_mail

        assert send_mail("Hi", "body", "app@example.org", ["a@example.com", "b@example.com"]) == 1
        assert (
            send_mass_mail([("One", "1", None, ["c@example.com"]), ("Two", "2", None, ["d@example.com"])])
            == 2
        )
    assert handler.copies == Counter({f"{x}@example.com": 1 for x in "abcd"})


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
    assert any(cmd == "MAIL" for cmd, _ in handler.commands)


def test_a_facade_program_prints_nothing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

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
