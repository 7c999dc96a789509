"""SMTP servers that lie, for ``tests/integration/test_lying_servers.py``, and the invariant
every run through a misbehaving server must keep.

What this module owns: ``LyingServer``, a small hand-written SMTP responder on asyncio
streams that is honest except for one ``Lie`` (aiosmtpd cannot send a 250 greeting, a
second banner, or two replies to one command), and ``assert_nothing_false``, the
invariant: every recipient reported delivered (and not ``assumed``) has a copy at the
server; every copy beyond that belongs to a recipient flagged ``possible_duplicate``;
no recipient is missing from the results.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from smtpretry import SendResult, Status

__all__ = ["Lie", "LyingServer", "assert_nothing_false", "lying_server"]


class Lie(StrEnum):
    GREETING_250 = "a 250 greeting"
    SECOND_BANNER = "a second 220 banner, in the same packet"
    SECOND_BANNER_LATER = "a second 220 banner, a moment later"
    STARTTLS_250 = "250 to STARTTLS"
    MAIL_251 = "251 to MAIL"
    DATA_250 = "250 to DATA"
    TWO_AFTER_DOT = "two replies after the final dot, in one packet"
    TWO_AFTER_DOT_LATER = "two replies after the final dot, the second a moment later"
    GROUP_OUT_OF_ORDER = "a pipelined group's replies in the wrong order"
    LINES_DISAGREE = "a multiline RCPT reply whose lines disagree"


@dataclass
class LyingServer:
    """Honest SMTP but for ``lie``. Records copies per recipient and what came after a lie."""

    lie: Lie
    pipelining: bool = False
    copies: collections.Counter[str] = field(default_factory=collections.Counter)
    sessions: int = 0
    after_starttls: list[str] = field(default_factory=list)
    """Commands the client sent in clear after a STARTTLS that was answered 250."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1

        async def say(*lines: str, later: str | None = None) -> None:
            writer.write("".join(line + "\r\n" for line in lines).encode())
            await writer.drain()
            if later is not None:
                await asyncio.sleep(0.005)
                writer.write(later.encode() + b"\r\n")
                await writer.drain()

        if self.lie is Lie.GREETING_250:
            await say("250 lying.test hello")
        elif self.lie is Lie.SECOND_BANNER:
            await say("220 proxy.test ESMTP", "220 backend.test ESMTP")
        elif self.lie is Lie.SECOND_BANNER_LATER:
            await say("220 proxy.test ESMTP", later="220 backend.test ESMTP")
        else:
            await say("220 honest.test ESMTP")
        sender: str | None = None
        rcpts: list[str] = []
        tls_lied = False
        pending: list[str] = []  # replies of a pipelined group, held until DATA
        while line := await reader.readline():
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if tls_lied:
                self.after_starttls.append(cmd)
            if verb in ("EHLO", "HELO"):
                extensions = ["PIPELINING"] if self.pipelining else []
                if self.lie is Lie.STARTTLS_250:
                    extensions.append("STARTTLS")
                lines = ["honest.test", *extensions]
                await say(*[f"250-{x}" for x in lines[:-1]], f"250 {lines[-1]}")
            elif verb == "STARTTLS":
                tls_lied = True
                await say("250 2.0.0 fine, go on in clear")
            elif verb == "MAIL":
                sender, rcpts = cmd[10:].strip("<>"), []
                reply = "251 2.1.0 ok" if self.lie is Lie.MAIL_251 else "250 2.1.0 ok"
                pending.append(reply) if self.pipelining else await say(reply)
            elif verb == "RCPT":
                rcpts.append(cmd.split(":", 1)[1].strip().strip("<>"))
                reply = "250 2.1.5 ok"
                if self.lie is Lie.LINES_DISAGREE:
                    reply = "250-2.1.5 ok\r\n451 4.3.0 or maybe not"
                pending.append(reply) if self.pipelining else await say(reply)
            elif verb == "DATA":
                if self.lie is Lie.DATA_250:
                    reply = "250 2.0.0 ok"
                elif sender is None or not rcpts:
                    reply = "503 5.5.1 no valid recipients"
                else:
                    reply = "354 go ahead"
                pending.append(reply)
                if self.lie is Lie.GROUP_OUT_OF_ORDER and len(pending) > 1:
                    pending = [pending[0], pending[-1], *pending[1:-1]]
                await say(*pending)
                pending = []
                if reply.startswith("354"):
                    await self._body(reader, say, rcpts)
                    sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts, pending = None, [], []
                await say("250 2.0.0 reset")
            elif verb == "QUIT":
                await say("221 2.0.0 bye")
                return
            else:
                await say("502 5.5.2 not implemented")

    async def _body(self, reader: asyncio.StreamReader, say: object, rcpts: list[str]) -> None:
        while (line := await reader.readline()) != b".\r\n":
            if not line:
                return  # the client went away mid-message: nothing was kept
        for r in rcpts:
            self.copies[r] += 1
        assert callable(say)
        if self.lie is Lie.TWO_AFTER_DOT:
            await say("250 2.0.0 queued", "250 2.0.0 queued again")
        elif self.lie is Lie.TWO_AFTER_DOT_LATER:
            await say("250 2.0.0 queued", later="250 2.0.0 queued again")
        else:
            await say("250 2.0.0 queued")


@contextlib.asynccontextmanager
async def lying_server(server: LyingServer) -> AsyncIterator[int]:
    """``async with lying_server(server) as port``: serve on 127.0.0.1."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await server.handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.wait_closed()


def assert_nothing_false(
    results: Sequence[SendResult], copies: collections.Counter[str], recipients: Iterable[Sequence[str]],
) -> None:
    """The invariant of every run through a misbehaving server.

    ``recipients[i]`` are the recipients given to the send that returned ``results[i]``;
    ``copies`` counts what the server kept per recipient. Each recipient is assumed to be
    in one send only."""
    for result, given in zip(results, recipients, strict=True):
        assert list(result.outcomes) == list(given), "every recipient is in its result, once"
        for r, outcome in result.outcomes.items():
            owed = 1 if outcome.status is Status.DELIVERED else 0
            if outcome.status is Status.DELIVERED and not outcome.assumed:
                assert copies[r] >= 1, f"{r} reported delivered, but the server has no copy"
            if copies[r] > owed:
                assert outcome.possible_duplicate, (
                    f"{r}: {copies[r]} copies at the server, reported {outcome.status.value}, "
                    "not flagged possible_duplicate"
                )
