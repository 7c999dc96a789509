"""The test servers in tests/servers.py behave as scripted, checked with plain aiosmtplib."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from typing import Any

import aiosmtplib
import pytest

from tests.servers import (
    ACCEPT_DROP,
    DROP,
    R250,
    R421_SHUTDOWN,
    R421_TOO_MANY,
    R422_OVER_QUOTA,
    R450_GREYLISTED,
    R452_TOO_MANY_RCPTS,
    R550_UNKNOWN,
    R552_MAILBOX_FULL,
    ScriptedHandler,
    raw_server,
    serve,
    serve_threaded,
    start_server,
    wait_until,
)

MESSAGE = b"From: a@example.org\r\nTo: x@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
TLSPair = tuple[ssl.SSLContext, ssl.SSLContext]


def client(port: int, **kw: Any) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, local_hostname="client.test", timeout=5, **kw
    )


def split(reply: str) -> tuple[int, str]:
    code, text = reply.split(" ", 1)
    return int(code), text


async def rcpt_raw(smtp: aiosmtplib.SMTP, address: str) -> tuple[int, str]:
    response = await smtp.execute_command(b"RCPT", f"TO:<{address}>".encode())
    return response.code, response.message


@pytest.mark.asyncio
async def test_rcpt_replies_come_back_in_order_then_default_accept() -> None:
    script = [R450_GREYLISTED, R452_TOO_MANY_RCPTS, R550_UNKNOWN, R250]
    handler = ScriptedHandler(rcpt=script)
    async with serve(handler) as port:
        smtp = client(port)
        await smtp.connect()
        await smtp.mail("a@example.org")
        replies = [await rcpt_raw(smtp, f"r{i}@example.org") for i in range(5)]
        await smtp.quit()

    assert replies == [split(r) for r in script] + [(250, "OK")]
    rcpts = [arg for command, arg in handler.commands if command == "RCPT"]
    assert rcpts == [f"<r{i}@example.org>" for i in range(5)]


@pytest.mark.asyncio
async def test_rcpt_dict_scripts_each_recipient_and_only_accepted_ones_get_the_message() -> None:
    handler = ScriptedHandler(rcpt={"full@example.org": [R422_OVER_QUOTA, R552_MAILBOX_FULL]})
    async with serve(handler) as port:
        smtp = client(port)
        await smtp.connect()
        await smtp.mail("a@example.org")
        first = [await rcpt_raw(smtp, a) for a in ("full@example.org", "ok@example.org")]
        await smtp.data(MESSAGE)
        await smtp.mail("a@example.org")
        second = await rcpt_raw(smtp, "full@example.org")
        third = await rcpt_raw(smtp, "full@example.org")
        await smtp.quit()

    assert first == [split(R422_OVER_QUOTA), (250, "OK")]
    assert second == split(R552_MAILBOX_FULL)
    assert third == (250, "OK")  # queue used up
    assert handler.received == [("a@example.org", ["ok@example.org"], MESSAGE)]


@pytest.mark.asyncio
async def test_copies_are_counted_per_recipient_and_commands_recorded() -> None:
    handler = ScriptedHandler()
    async with serve(handler) as port:
        smtp = client(port)
        await smtp.connect()
        await smtp.sendmail("a@example.org", ["x@example.org", "y@example.org"], MESSAGE)
        await smtp.rset()
        await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE)
        await smtp.quit()

    assert handler.copies == {"x@example.org": 2, "y@example.org": 1}
    assert [r[:2] for r in handler.received] == [
        ("a@example.org", ["x@example.org", "y@example.org"]),
        ("a@example.org", ["x@example.org"]),
    ]
    assert handler.received[0][2] == MESSAGE
    assert [c for c in handler.commands if c[0] != "EHLO"] == [
        ("MAIL", "<a@example.org>"),
        ("RCPT", "<x@example.org>"),
        ("RCPT", "<y@example.org>"),
        ("DATA", ""),
        ("RSET", ""),
        ("MAIL", "<a@example.org>"),
        ("RCPT", "<x@example.org>"),
        ("DATA", ""),
        ("QUIT", ""),
    ]


@pytest.mark.asyncio
async def test_drop_at_rcpt_closes_without_reply() -> None:
    handler = ScriptedHandler(rcpt=[DROP])
    async with serve(handler) as port:
        smtp = client(port)
        await smtp.connect()
        await smtp.mail("a@example.org")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.rcpt("x@example.org")
        await wait_until(lambda: handler.active_sessions == 0)

    assert handler.sessions_total == 1
    assert handler.received == []


@pytest.mark.asyncio
async def test_drop_at_end_of_data_delivers_nothing_but_accept_drop_delivers() -> None:
    handler = ScriptedHandler(data=[DROP, ACCEPT_DROP])
    async with serve(handler) as port:
        for _ in range(2):
            smtp = client(port)
            await smtp.connect()
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE)
        await wait_until(lambda: handler.active_sessions == 0)

    # The DATA was read in full both times (the server saw the final dot).
    assert [c for c, _ in handler.commands].count("DATA") == 2
    assert handler.copies == {"x@example.org": 1}


@pytest.mark.asyncio
async def test_421_closes_the_connection_even_after_data() -> None:
    # aiosmtplib does not close after a 421 to DATA; the server must.
    handler = ScriptedHandler(data=[R421_SHUTDOWN])
    async with serve(handler) as port:
        smtp = client(port)
        await smtp.connect()
        await smtp.mail("a@example.org")
        await smtp.rcpt("x@example.org")
        with pytest.raises(aiosmtplib.SMTPDataError) as exc_info:
            await smtp.data(MESSAGE)
        assert (exc_info.value.code, exc_info.value.message) == split(R421_SHUTDOWN)
        await wait_until(lambda: handler.active_sessions == 0)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.noop()

    assert handler.received == []


@pytest.mark.asyncio
async def test_max_sessions_refuses_extra_sessions_at_ehlo() -> None:
    handler = ScriptedHandler(max_sessions=3)
    async with serve(handler) as port:
        clients = [client(port) for _ in range(5)]

        async def open_session(smtp: aiosmtplib.SMTP) -> aiosmtplib.SMTPResponse:
            await smtp.connect()
            return await smtp.ehlo()

        # All five connect and EHLO while none has quit.
        results = await asyncio.gather(*map(open_session, clients), return_exceptions=True)
        accepted = [c for c, r in zip(clients, results, strict=True) if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]

        assert len(accepted) == 3
        assert all(c.is_connected for c in accepted)
        assert [type(r) for r in refused] == [aiosmtplib.SMTPHeloError] * 2
        assert {(r.code, r.message) for r in refused} == {split(R421_TOO_MANY)}  # type: ignore[attr-defined]
        assert handler.active_sessions == 3

        for smtp in accepted:
            await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE)
            await smtp.quit()
        await wait_until(lambda: handler.active_sessions == 0)

    assert handler.max_active == 3
    assert handler.sessions_total == 3
    assert handler.sessions_refused == 2
    assert handler.copies == {"x@example.org": 3}


@pytest.mark.asyncio
async def test_starttls_with_the_test_ca(tls_pair: TLSPair) -> None:
    server_ctx, client_ctx = tls_pair
    handler = ScriptedHandler()
    async with serve(handler, starttls_context=server_ctx) as port:
        smtp = client(port, start_tls=True, tls_context=client_ctx)
        await smtp.connect()
        assert smtp.get_transport_info("sslcontext") is not None
        await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE)
        await smtp.quit()

    assert ("STARTTLS", "") in handler.commands
    assert handler.copies == {"x@example.org": 1}


@pytest.mark.asyncio
async def test_starttls_fails_verification_without_the_test_ca(tls_pair: TLSPair) -> None:
    server_ctx, _ = tls_pair
    handler = ScriptedHandler()
    async with serve(handler, starttls_context=server_ctx) as port:
        smtp = client(port, start_tls=True)  # default context: system CAs only
        # aiosmtplib lets the ssl error through unwrapped.
        with pytest.raises(ssl.SSLCertVerificationError):
            await smtp.connect()
        smtp.close()
        await wait_until(lambda: handler.active_sessions == 0)

    assert handler.received == []


@pytest.mark.asyncio
async def test_implicit_tls(tls_pair: TLSPair) -> None:
    server_ctx, client_ctx = tls_pair
    handler = ScriptedHandler()
    async with serve(handler, tls_context=server_ctx) as port:
        smtp = client(port, use_tls=True, tls_context=client_ctx)
        await smtp.connect()
        await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE)
        await smtp.quit()

    assert handler.copies == {"x@example.org": 1}


@pytest.mark.asyncio
async def test_auth_records_logins_and_never_passwords() -> None:
    handler = ScriptedHandler(auth={"alice": "s3cret"})
    async with serve(handler) as port:
        smtp = client(port, username="alice", password="s3cret")
        await smtp.connect()
        await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE)
        await smtp.quit()

        bad = client(port, username="alice", password="wrong")
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await bad.connect()
        bad.close()

    assert handler.logins == ["alice"]
    auths = [arg for command, arg in handler.commands if command == "AUTH"]
    # aiosmtplib tries PLAIN, and after a 535 falls back to LOGIN.
    assert auths == ["PLAIN", "PLAIN", "LOGIN"]
    assert not any("s3cret" in arg or "wrong" in arg for _, arg in handler.commands)


@pytest.mark.asyncio
async def test_no_auth_advertised_without_credentials_and_size_only_when_limited() -> None:
    async with serve(ScriptedHandler()) as port:
        smtp = client(port)
        await smtp.connect()
        await smtp.ehlo()
        assert not smtp.supports_extension("auth")
        assert not smtp.supports_extension("size")
        await smtp.quit()

    handler = ScriptedHandler()
    async with serve(handler, data_size_limit=100) as port:
        smtp = client(port)
        await smtp.connect()
        await smtp.ehlo()
        assert smtp.esmtp_extensions["size"] == "100"
        # aiosmtplib sends SIZE=n; aiosmtpd refuses at MAIL, before the handler's hook.
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as exc_info:
            await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE * 10)
        assert exc_info.value.code == 552
        await smtp.quit()

    assert handler.received == []


@pytest.mark.asyncio
async def test_raw_server_sends_a_421_greeting() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{R421_SHUTDOWN}\r\n".encode())
        await writer.drain()

    async with raw_server(script) as port:
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as exc_info:
            await client(port).connect()

    assert (exc_info.value.code, exc_info.value.message) == split(R421_SHUTDOWN)


@pytest.mark.asyncio
async def test_scripted_greeting_is_used_once_per_connection() -> None:
    handler = ScriptedHandler(greeting=[R421_SHUTDOWN])
    async with serve(handler) as port:
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as exc_info:
            await client(port).connect()
        smtp = client(port)
        await smtp.connect()
        await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE)
        await smtp.quit()

    assert exc_info.value.code == 421
    assert handler.sessions_total == 1
    assert handler.copies == {"x@example.org": 1}


def test_start_server_returns_server_and_port() -> None:
    async def main() -> tuple[int, ScriptedHandler]:
        handler = ScriptedHandler()
        server, port = await start_server(handler)
        try:
            smtp = client(port)
            await smtp.connect()
            await smtp.sendmail("a@example.org", ["x@example.org"], MESSAGE)
            await smtp.quit()
        finally:
            server.close()
            await server.wait_closed()
        return port, handler

    port, handler = asyncio.run(main())
    assert port > 0
    assert handler.copies == {"x@example.org": 1}


def test_serve_threaded_ignores_the_controller_probe() -> None:
    handler = ScriptedHandler(greeting=[R421_SHUTDOWN], rcpt=[R550_UNKNOWN])
    with serve_threaded(handler) as port:
        # The Controller's start-up probe did not use up the scripted greeting.
        with pytest.raises(smtplib.SMTPConnectError):
            smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5)
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as smtp:
            refused = smtp.sendmail("a@example.org", ["x@example.org", "y@example.org"], MESSAGE)

    assert refused == {"x@example.org": (550, b"5.1.1 User unknown")}
    assert handler.sessions_total == 1
    assert handler.copies == {"y@example.org": 1}
