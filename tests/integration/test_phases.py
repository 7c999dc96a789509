"""421 at STARTTLS, AUTH and the DATA command, from a small hand-written server
(aiosmtpd cannot be scripted at those points): retried on a new connection that
replays the whole session, one copy per recipient."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections import Counter

import pytest
from structlog.testing import capture_logs

from smtpretry import Mailer, RetryPolicy
from tests.servers import raw_server

FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.005)


def mini_server(
    plan: list[dict[str, str]], delivered: Counter[str], tls: ssl.SSLContext, seen: list[list[str]]
):  # type: ignore[no-untyped-def]
    """A script for raw_server: connection i answers the commands in ``plan[i]``
    with the reply given (a 421 then closes), everything else as a plain relay."""
    numbers = itertools.count()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        override = plan[n] if (n := next(numbers)) < len(plan) else {}
        commands: list[str] = []
        seen.append(commands)
        rcpts: list[str] = []

        async def say(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        await say("220 mini.test ESMTP")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper().decode()
            commands.append(verb)
            if verb in override:
                await say(override[verb])
                if override[verb].startswith("421"):
                    return
            elif verb == "EHLO":
                await say("250-mini.test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN")
            elif verb == "STARTTLS":
                await say("220 2.0.0 Ready")
                await writer.start_tls(tls)
            elif verb == "AUTH":
                await say("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                rcpts = []
                await say("250 2.1.0 OK")
            elif verb == "RCPT":
                rcpts.append(line.decode().split("<", 1)[1].split(">", 1)[0])
                await say("250 2.1.5 OK")
            elif verb == "DATA":
                await say("354 go ahead")
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                delivered.update(rcpts)
                await say("250 2.0.0 queued")
            elif verb == "QUIT":
                await say("221 2.0.0 bye")
                return
            else:
                await say("250 OK")

    return script


@pytest.mark.parametrize(
    ("verb", "phase"),
    [("STARTTLS", "starttls"), ("AUTH", "auth"), ("DATA", "data")],
)
async def test_421_at_starttls_auth_and_data_command(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext], verb: str, phase: str
) -> None:
    server_ctx, client_ctx = tls_pair
    delivered: Counter[str] = Counter()
    seen: list[list[str]] = []
    plan = [{verb: "421 4.3.2 Service not available, closing transmission channel"}]
    async with raw_server(mini_server(plan, delivered, server_ctx, seen)) as port:
        with capture_logs() as logs:
            async with Mailer(
                "localhost",
                port,
                tls="starttls",
                tls_context=client_ctx,
                username="app",
                password="pw",
                policy=FAST,
            ) as m:
                result = await m.send(
                    b"Subject: x\r\n\r\nhi\r\n",
                    sender="s@example.org",
                    recipients=["a@example.com", "b@example.com"],
                )
    assert result.delivered == ["a@example.com", "b@example.com"]
    assert delivered == Counter({"a@example.com": 1, "b@example.com": 1})
    retries = [e for e in logs if e["event"] == "smtpretry.retry_scheduled"]
    assert [(e["phase"], e["code"]) for e in retries] == [(phase, 421)]
    # The second connection replayed the whole session.
    assert seen[1][:5] == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL"]
