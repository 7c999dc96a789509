"""DemoServer, the embedded throttling server behind ``smtpretry demo``, checked with plain
aiosmtplib and raw sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiosmtplib
import pytest

from smtpretry.cli.demo_server import R421_TOO_MANY, R422_OVER_QUOTA, R422_TOO_LARGE, R550_UNKNOWN, DemoServer


async def _wait_until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(2.0):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_over_the_limit_a_connection_gets_421_at_greeting_and_is_closed() -> None:
    async with DemoServer(max_connections=2) as server:
        clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port) for _ in range(2)]
        for client in clients:
            await client.connect()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert (await reader.readline()).decode().rstrip("\r\n") == R421_TOO_MANY
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # closed by the server
        writer.close()
        assert (server.active, server.max_active, server.refused) == (2, 2, 1)

        await clients[0].quit()
        await _wait_until(lambda: server.active == 1)
        again = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port)
        await again.connect()  # a slot is free again
        assert server.refused == 1
        for client in (clients[1], again):
            await client.quit()
        assert server.max_active == 2
        assert server.peak_connections == 3  # the refused one was open for a moment


async def test_scripted_recipients_and_copies_per_recipient() -> None:
    async with DemoServer() as server:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port) as client:
            rcpts = ["full1@example.com", "big1@example.com", "unknown1@example.com", "ok@example.com"]
            errors, _ = await client.sendmail("s@example.org", rcpts, b"Subject: x\r\n\r\nhi\r\n")
            await client.sendmail("s@example.org", ["ok@example.com"], b"Subject: y\r\n\r\nhi\r\n")
    assert {r: f"{e.code} {e.message}" for r, e in errors.items()} == {
        "full1@example.com": R422_OVER_QUOTA,
        "big1@example.com": R422_TOO_LARGE,
        "unknown1@example.com": R550_UNKNOWN,
    }
    assert server.copies == {"ok@example.com": 2}
    assert server.messages == 2


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        DemoServer(max_connections=0)
