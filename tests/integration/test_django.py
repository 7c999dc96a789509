"""A Django project whose DEFAULT_FROM_EMAIL has a display name sends through
``smtpretry.django.EmailBackend`` and through Django's own SMTP backend with
``smtplib.SMTP`` swapped for smtpretry's, at a local server; a 421 is retried in both,
and ``fail_silently`` catches what smtpretry raises."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

import smtpretry
from smtpretry import Config, RetryPolicy
from tests.servers import R421_SHUTDOWN, LineServer, LineSession

django = pytest.importorskip("django")

FROM = "Private Person <alice@example.org>"
BACKENDS = {
    "smtpretry": "smtpretry.django.EmailBackend",
    "django, smtplib swapped": "django.core.mail.backends.smtp.EmailBackend",
}


@pytest.fixture(autouse=True)
def django_project(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEFAULT_FROM_EMAIL=FROM, EMAIL_HOST="127.0.0.1", EMAIL_PORT=25)
        django.setup()
    monkeypatch.setattr(settings, "DEFAULT_FROM_EMAIL", FROM)
    smtpretry.configure(Config(policy=RetryPolicy(backoff_base=0.005, backoff_cap=0.02, max_attempts=5)))
    yield
    smtpretry.configure(Config())


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param.startswith("django"):
        monkeypatch.setattr(smtplib, "SMTP", smtpretry.SMTP)
        monkeypatch.setattr(smtplib, "SMTP_SSL", smtpretry.SMTP_SSL)
    return BACKENDS[request.param]


def first_mail_421() -> LineServer:
    first = [True]

    def respond(session: LineSession, line: bytes) -> bytes | None:
        if line[:4].upper() == b"MAIL" and first[0]:
            first[0] = False
            return R421_SHUTDOWN.encode()
        return None

    return LineServer(users={"app": "pw"}, respond=respond)


def test_a_display_name_in_default_from_email_is_sent_and_a_421_retried(backend: str) -> None:
    from django.core.mail import get_connection, send_mail, send_mass_mail

    server = first_mail_421()
    with server:
        connection = get_connection(
            backend, host="127.0.0.1", port=server.port, username="app", password="pw"
        )
        assert send_mail("Hi", "body", None, ["Bob <bob@example.com>", "carol@example.com"],
                         connection=connection) == 1
        assert send_mass_mail([("One", "1", None, ["d@example.com"]), ("Two", "2", None, ["e@example.com"])],
                              connection=connection) == 2
    [first, *rest] = server.delivered
    assert first[0].upper().startswith(b"MAIL FROM:<ALICE@EXAMPLE.ORG> SIZE=")  # the address, not the name
    assert [r.split(b"<")[1] for r in first[1]] == [b"bob@example.com>\r\n", b"carol@example.com>\r\n"]
    assert b"From: Private Person <alice@example.org>" in first[2]
    assert [m[1][0].split(b"<")[1] for m in rest] == [b"d@example.com>\r\n", b"e@example.com>\r\n"]
    assert len(server.sessions) >= 2 and all(s.user == "app" for s in server.sessions if s.messages)


def test_fail_silently_catches_what_smtpretry_raises(backend: str) -> None:
    from django.core.mail import get_connection, send_mail

    refuse = LineServer(respond=lambda s, line: b"550 5.7.1 Sender rejected" if line[:4].upper() == b"MAIL"
                        else None)
    with refuse:
        connection = get_connection(backend, host="127.0.0.1", port=refuse.port, fail_silently=True)
        assert send_mail("Hi", "body", None, ["bob@example.com"], connection=connection) == 0
        loud = get_connection(backend, host="127.0.0.1", port=refuse.port)
        with pytest.raises(smtplib.SMTPSenderRefused):
            send_mail("Hi", "body", None, ["bob@example.com"], connection=loud)
    assert refuse.delivered == []
