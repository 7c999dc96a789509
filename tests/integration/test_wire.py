"""The aiosmtplib insides that ``_wire.py`` relies on are there; without them the engine
goes one command at a time."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiosmtplib.protocol import SMTPProtocol

from smtpretry import Mailer, RetryPolicy, _wire
from smtpretry.endpoint import Endpoint
from smtpretry.transport import Session, open_session
from tests.integration.test_phases import pipelining_server
from tests.messages import message
from tests.servers import raw_server


def test_the_private_names_smtpretry_relies_on_exist() -> None:
    # If a new aiosmtplib renames one of these, pipelining and the out-of-step checks
    # would silently turn off: this test says so first.
    assert _wire.AVAILABLE
    for name in ("_read_response_from_buffer", "data_received", "read_response", "write"):
        assert callable(getattr(SMTPProtocol, name, None)), name
    loop = asyncio.new_event_loop()
    try:
        protocol = SMTPProtocol(loop=loop)
        for name in ("_buffer", "_response_waiter", "_response_pending"):
            assert hasattr(protocol, name), name
        assert isinstance(protocol._buffer, bytearray)
    finally:
        loop.close()


async def test_without_those_names_a_session_goes_one_command_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_wire, "AVAILABLE", False)
    delivered: Counter[str] = Counter()
    seen: list[list[str]] = []
    script = pipelining_server(delivered, seen, batch=False, rcpt_replies={})
    async with raw_server(script) as port:
        session = await open_session(Endpoint(host="127.0.0.1", port=port, tls="none"))
        assert isinstance(session, Session)
        assert session.supports("pipelining") and not session.pipelining
        await session.quit()
        async with Mailer("127.0.0.1", port, tls="none", timeout=5.0,
                          policy=RetryPolicy(backoff_base=0.001)) as m:
            result = await m.send(message("a@example.com", "b@example.com"))
    assert result.delivered == ["a@example.com", "b@example.com"]
    assert delivered == Counter({"a@example.com": 1, "b@example.com": 1})


async def test_a_reply_that_comes_between_commands_puts_the_session_out_of_step() -> None:
    stray_sent = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-test\r\n250 8BITMIME\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"250 nobody asked\r\n")  # between commands
        await writer.drain()
        stray_sent.set()
        await reader.readline()

    async with raw_server(script) as port:
        session = await open_session(Endpoint(host="127.0.0.1", port=port, tls="none"))
        assert isinstance(session, Session) and session.in_step
        await stray_sent.wait()
        await asyncio.sleep(0.01)
        assert session.connected and not session.in_step
        session.close()
