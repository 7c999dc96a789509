"""421 at STARTTLS, AUTH and the DATA command, from a small hand-written server
(aiosmtpd cannot be scripted at those points): retried on a new connection that
replays the whole session, one copy per recipient."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections import Counter
from pathlib import Path

import pytest
import trustme
from structlog.testing import capture_logs

from smtpretry import Limits, Mailer, RetryPolicy
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


def pipelining_server(
    delivered: Counter[str],
    seen: list[list[str]],
    *,
    batch: bool,
    rcpt_replies: dict[str, str],
    tls: ssl.SSLContext | None = None,
):  # type: ignore[no-untyped-def]
    """A server that offers PIPELINING (RFC 2920), and STARTTLS with ``tls``.
    ``batch``: the replies to MAIL, RCPT and DATA leave in one write (as
    Postfix sends them); otherwise one write each, with no pause: over TLS
    those are separate records that the client reads at once."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        commands: list[str] = []
        seen.append(commands)
        pending: list[bytes] = []
        rcpts: list[str] = []

        async def say(text: str, *, flush: bool = True) -> None:
            pending.append(text.encode() + b"\r\n")
            if flush or not batch:
                writer.write(b"".join(pending))
                pending.clear()
                await writer.drain()

        await say("220 pipe.test ESMTP")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper().decode()
            commands.append(verb)
            if verb == "EHLO":
                offer = "250-STARTTLS\r\n" if tls is not None else ""
                await say(f"250-pipe.test\r\n{offer}250-PIPELINING\r\n250 8BITMIME")
            elif verb == "STARTTLS" and tls is not None:
                await say("220 2.0.0 Ready")
                await writer.start_tls(tls)
            elif verb == "MAIL":
                rcpts = []
                await say("250 2.1.0 OK", flush=False)
            elif verb == "RCPT":
                address = line.decode().split("<", 1)[1].split(">", 1)[0]
                reply = rcpt_replies.get(address, "250 2.1.5 OK")
                if reply.startswith("250"):
                    rcpts.append(address)
                await say(reply, flush=False)
            elif verb == "DATA":
                if not rcpts:
                    await say("554 5.5.1 No valid recipients")
                    continue
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


@pytest.mark.parametrize("batch", [True, False], ids=["one-write", "write-each"])
@pytest.mark.parametrize("use_tls", [False, True], ids=["plain", "starttls"])
async def test_pipelined_transactions_deliver_once_and_keep_each_rcpt_reply(
    batch: bool, use_tls: bool, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_pair
    delivered: Counter[str] = Counter()
    seen: list[list[str]] = []
    refusals = {"gone@example.com": "550 5.1.1 User unknown", "full@example.com": "452 4.2.2 Mailbox full"}
    script = pipelining_server(
        delivered, seen, batch=batch, rcpt_replies=refusals, tls=server_ctx if use_tls else None
    )
    async with raw_server(script) as port:
        async with Mailer(
            "localhost",
            port,
            tls="starttls" if use_tls else "none",
            tls_context=client_ctx,
            policy=FAST,
            timeout=5,
        ) as m:
            results = await asyncio.gather(
                *(
                    m.send(
                        b"Subject: x\r\n\r\nhi\r\n",
                        sender="s@example.org",
                        recipients=[f"a{i}@example.com", "gone@example.com", "full@example.com"],
                    )
                    for i in range(20)
                )
            )
            only_refused = await m.send(
                b"Subject: x\r\n\r\nhi\r\n", sender="s@example.org", recipients=["gone@example.com"]
            )
    for i, r in enumerate(results):
        assert r.delivered == [f"a{i}@example.com"]
        assert r.failed["gone@example.com"].code == 550
        assert r.deferred["full@example.com"].code == 452
    assert delivered == Counter({f"a{i}@example.com": 1 for i in range(20)})
    assert only_refused.failed["gone@example.com"].code == 550
    assert len(seen) <= 10  # connections were reused


async def test_pipelined_replies_over_tls_to_concurrent_sessions_are_never_lost(
    tls_ca: trustme.CA, tmp_path: Path, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    # The benchmark's submission server, in its own process, answers pipelined
    # commands back to back over TLS, to two connections at once: every reply
    # must be read (a lost one would show as a timeout and a second attempt).
    from benchmarks._common import start_server_process, stop_server_process

    _, client_ctx = tls_pair
    cert = tls_ca.issue_cert("localhost", "127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(chain), append=True)
    proc, port = start_server_process(
        "submission",
        "--rtt-ms",
        "0",
        "--cert",
        str(chain),
        "--key",
        str(key),
        "--user",
        "app",
        "--password",
        "pw",
    )
    try:
        async with Mailer(
            "localhost",
            port,
            tls="starttls",
            tls_context=client_ctx,
            username="app",
            password="pw",
            policy=FAST,
            timeout=2,
            limits=Limits(max_connections=2),
        ) as m:
            results = await asyncio.gather(
                *(
                    m.send(
                        b"Subject: x\r\n\r\nhi\r\n",
                        sender="s@example.org",
                        recipients=[f"a{i}@example.com", f"b{i}@example.com"],
                    )
                    for i in range(60)
                )
            )
    finally:
        stats = stop_server_process(proc)
    assert all(r.ok for r in results)
    assert {o.attempts for r in results for o in r.outcomes.values()} == {1}  # no timeout, no retry
    assert stats["delivered"] == 120
