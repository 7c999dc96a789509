"""Hostile input: command and header injection, non-ASCII addresses, nothing listening,
broken configuration, and secrets that must never show.

Bad input raises ``MessageError``/``ConfigError`` before any connection; the tests count
connections at the server to prove nothing went out.
"""

from __future__ import annotations

import asyncio
import base64
import email.message
import random
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from structlog.testing import capture_logs

from smtpretry import (
    Category,
    ConfigError,
    FailureKind,
    Mailer,
    MessageError,
    RetryPolicy,
    load_config,
)
from tests.servers import ACCEPT_DROP, R421_SHUTDOWN, ScriptedHandler, raw_server, serve

FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=3)
PASSWORD = "hunter2-Pa55"


def message(*to: str, sender: str = "app@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = "test"
    msg["Message-ID"] = "<hostile@test>"
    msg.set_content("hello\n")
    return msg


def mailer(port: int, **kw: Any) -> Mailer:
    kw.setdefault("tls", "none")
    kw.setdefault("policy", FAST)
    kw.setdefault("rng", random.Random(0))
    return Mailer("127.0.0.1", port, **kw)


@asynccontextmanager
async def counting_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server that only counts connections (each greets and records the first line)."""
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(b"connect")
        writer.write(b"220 count.test ESMTP\r\n")
        await writer.drain()
        seen.append(await reader.readline())

    async with raw_server(script) as port:
        yield port, seen


# -- command injection: refused before any connection --------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sender": "app@example.org\r\nRCPT TO:<victim@example.com>"},
        {"sender": "app@example.org\nDATA"},
        {"sender": "app@example.org\x00"},
        {"sender": "app@exa\rmple.org"},
        {"recipients": ["ok@example.com", "bad@example.com\r\nRSET"]},
        {"recipients": ["bad@exam\nple.com"]},
        {"recipients": ["nul\x00@example.com"]},
        {"recipients": "one@example.com\r\nQUIT"},
    ],
    ids=["sender-crlf", "sender-lf", "sender-nul", "sender-cr", "rcpt-crlf", "rcpt-lf", "rcpt-nul",
         "rcpt-str-crlf"],
)
async def test_control_characters_in_addresses_raise_before_any_connection(kwargs: dict[str, Any]) -> None:
    async with counting_server() as (port, seen):
        async with mailer(port) as m:
            kwargs.setdefault("recipients", ["ok@example.com"])
            with pytest.raises(MessageError) as info:
                await m.send(message("ok@example.com"), **kwargs)
        await asyncio.sleep(0.01)
    assert seen == []
    assert "\n" not in str(info.value).strip()


async def test_control_characters_in_header_addresses_raise_before_any_connection() -> None:
    # Addresses taken from the headers of raw bytes are checked as well.
    raw = b"From: app@example.org\r\nTo: a@example.com, b@exa\x00mple.com\r\nSubject: x\r\n\r\nhi\r\n"
    async with counting_server() as (port, seen):
        async with mailer(port) as m:
            with pytest.raises(MessageError):
                await m.send(raw)
    assert seen == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sender": "app@example.org> RET=FULL ENVID=x"},
        {"recipients": ["a@example.com>x@evil.example"]},
    ],
    ids=["sender-parameters", "rcpt-angle"],
)
async def test_angle_brackets_in_addresses_raise_before_any_connection(kwargs: dict[str, Any]) -> None:
    handler = ScriptedHandler()
    async with serve(handler) as port, mailer(port) as m:
        kwargs.setdefault("recipients", ["ok@example.com"])
        with pytest.raises(MessageError):
            await m.send(message("ok@example.com"), **kwargs)
    assert handler.commands == []


# -- header injection ---------------------------------------------------------------------


async def test_header_injection_is_refused_by_the_email_package_and_nothing_goes_out() -> None:
    handler = ScriptedHandler()
    async with serve(handler) as port, mailer(port) as m:
        msg = message("ok@example.com")
        with pytest.raises(ValueError):
            msg["Subject"] = "hi\r\nBcc: victim@example.com"
        with pytest.raises(ValueError):
            msg.replace_header("Subject", "hi\nX-Injected: yes")
        result = await m.send(msg)
    assert result.delivered == ["ok@example.com"]
    assert handler.copies == {"ok@example.com": 1}
    (_, _, content), = handler.received
    assert b"victim" not in content and b"X-Injected" not in content


@pytest.mark.parametrize(
    "subject",
    ["hi\r\n\r\nInjected body", "hi\r\nX-Injected yes", "hi\r\nBcc: victim@example.com"],
    ids=["blank-line", "header-without-colon-space", "bcc"],
)
async def test_header_injection_through_a_compat32_message_is_a_message_error(subject: str) -> None:
    # email.message.Message (policy compat32) stores a header value with CR/LF as given. Python
    # 3.11.7's generator refuses only "\n<name>:" (HeaderParseError, not smtpretry's
    # MessageError); other CR/LF pass: "Subject: hi\r\nInjected body" leaves a line without a
    # colon in the header section, which parsers take as the start of the body.
    handler = ScriptedHandler()
    msg = email.message.Message()
    msg["From"] = "app@example.org"
    msg["Subject"] = subject
    msg["To"] = "ok@example.com"
    msg.set_payload("hello\n")
    async with serve(handler) as port, mailer(port) as m:
        try:
            with pytest.raises(MessageError):
                await m.send(msg)
        finally:
            assert not handler.received


# -- non-ASCII addresses ------------------------------------------------------------------


class NoUTF8Handler(ScriptedHandler):
    """A server that does not offer SMTPUTF8 (RFC 6531)."""

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [r for r in responses if "SMTPUTF8" not in r.upper()]


async def test_non_ascii_address_without_smtputf8_fails_as_unsupported() -> None:
    handler = NoUTF8Handler()
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port) as m:
                result = await m.send(message("ok@example.com"), recipients=["jörg@example.com"])
    outcome = result.failed["jörg@example.com"]
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.UNSUPPORTED
    assert "SMTPUTF8" in outcome.describe()
    assert outcome.attempts == 1
    assert not [c for c, _ in handler.commands if c in ("MAIL", "RCPT", "DATA")]
    failed = [e for e in logs if e["event"] == "smtpretry.recipient_failed"]
    assert [(e["failure"], e["action"]) for e in failed] == [("unsupported", "fail")]


async def test_ascii_recipients_are_delivered_beside_a_non_ascii_one_without_smtputf8() -> None:
    # The sender, the headers and ok@ are ASCII; only the envelope recipient jörg@ needs
    # SMTPUTF8 (RFC 6531). ok@ can go in a transaction without it.
    handler = NoUTF8Handler()
    async with serve(handler) as port, mailer(port) as m:
        result = await m.send(message("ok@example.com"), recipients=["ok@example.com", "jörg@example.com"])
    assert list(result.failed) == ["jörg@example.com"]
    assert result.delivered == ["ok@example.com"]


async def test_non_ascii_address_with_smtputf8_is_delivered() -> None:
    handler = ScriptedHandler()  # aiosmtpd with enable_SMTPUTF8
    async with serve(handler) as port, mailer(port) as m:
        result = await m.send(message("ok@example.com"), sender="bücher@example.org",
                              recipients=["jörg@example.com", "ok@example.com"])
    assert result.delivered == ["jörg@example.com", "ok@example.com"]
    assert handler.copies == {"jörg@example.com": 1, "ok@example.com": 1}
    mail = [arg for c, arg in handler.commands if c == "MAIL"]
    assert mail == ["<bücher@example.org>"]


# -- nothing listening --------------------------------------------------------------------


async def test_port_with_no_server_defers_as_refused() -> None:
    async with raw_server(lambda r, w: asyncio.sleep(0)) as port:
        pass  # closed again: nothing listens on this loopback port now
    with capture_logs() as logs:
        async with mailer(port) as m:
            result = await m.send(message("a@example.com"))
    outcome = result.deferred["a@example.com"]
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.REFUSED
    assert outcome.attempts == FAST.max_attempts
    assert outcome.classification.category is Category.SERVICE_UNAVAILABLE
    retries = [e for e in logs if e["event"] == "smtpretry.retry_scheduled"]
    assert retries and {e["failure"] for e in retries} == {"refused"}


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("[defaults\nmax_connections = 3\n", "not valid TOML"),
        ('[defaults]\nmax_connections = "many"\n', "max_connections"),
        ("[defaults]\nmax_connections = -1\n", "max_connections"),
        ("[defaults]\nmax_conections = 3\n", "max_conections"),
        ('[defaults.retry]\nbackoff_base = "soon"\n', "backoff_base"),
        ('[profiles.isp]\nhost = "smtp.example.net"\npassword = "hunter2-Pa55"\n', "password"),
        (b"\xff\xfe[defaults]\n", "not valid TOML"),
        (None, "cannot read"),
    ],
    ids=["syntax", "type", "negative", "unknown-key", "duration", "inline-password", "not-utf8",
         "missing"],
)
def test_bad_config_file_is_one_clear_line(tmp_path: Path, text: str | bytes | None, expect: str) -> None:
    path = tmp_path / "smtpretry.toml"
    if isinstance(text, str):
        path.write_text(text)
    elif isinstance(text, bytes):
        path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message_text = str(info.value)
    assert "\n" not in message_text
    assert message_text.startswith(str(path))
    assert expect in message_text
    assert PASSWORD not in message_text
    assert "During handling" not in "".join(traceback.format_exception(info.value))


# -- secrets ------------------------------------------------------------------------------


async def test_wrong_password_never_shows_in_logs_results_or_exceptions() -> None:
    handler = ScriptedHandler(auth={"app": "the-right-one"})
    async with serve(handler) as port:
        with capture_logs() as logs:
            m = mailer(port, username="app", password=PASSWORD)
            async with m:
                result = await m.send(message("a@example.com"))
    outcome = result.failed["a@example.com"]
    assert outcome.classification.category is Category.AUTH_OR_TLS
    b64 = base64.b64encode(f"\0app\0{PASSWORD}".encode()).decode()
    for shown in (repr(result), str(result), repr(logs), repr(m.endpoint), repr(m), outcome.describe(),
                  repr(m.pool.limiter.__dict__)):
        assert PASSWORD not in shown
        assert b64 not in shown


def test_password_not_in_configuration_errors_or_their_tracebacks() -> None:
    # A password over plaintext to a host that is not on loopback is refused.
    with pytest.raises(ConfigError) as info:
        Mailer("smtp.example.net", 25, tls="none", username="app", password=PASSWORD)
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in "".join(traceback.format_exception(info.value))
    with pytest.raises(ConfigError) as info:
        Mailer("127.0.0.1", 70000, username="app", password=PASSWORD)
    assert PASSWORD not in "".join(traceback.format_exception(info.value))


async def test_auth_reply_echoing_the_credentials_is_not_logged() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 echo.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-echo.test\r\n250 AUTH PLAIN\r\n")
        await writer.drain()
        line = await reader.readline()  # AUTH PLAIN <base64>
        writer.write(b"535 5.7.8 Authentication failed for " + line.strip()[11:] + b"\r\n")
        await writer.drain()
        await reader.readline()

    b64 = base64.b64encode(f"\0app\0{PASSWORD}".encode()).decode()
    async with raw_server(script) as port:
        with capture_logs() as logs:
            async with mailer(port, username="app", password=PASSWORD) as m:
                result = await m.send(message("a@example.com"))
    assert result.failed
    assert b64 not in repr(logs)
    assert b64 not in repr(result)


async def test_message_bodies_never_show_in_logs_or_results() -> None:
    # A 421 after the final dot, then a lost connection after it: the body crosses the wire
    # three times, and the log records every decision about it.
    marker = "BODY-MARKER-5d1e"
    handler = ScriptedHandler(data=[R421_SHUTDOWN, ACCEPT_DROP])
    msg = message("ok@example.com")
    msg.set_content(f"private {marker}\n")
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port, policy=RetryPolicy(backoff_base=0.001, max_attempts=5)) as m:
                result = await m.send(msg)
    assert result.delivered == ["ok@example.com"]
    assert handler.copies["ok@example.com"] == 2
    assert marker not in repr(logs)
    assert marker not in repr(result)
