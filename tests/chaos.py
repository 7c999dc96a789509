"""A fault-injecting SMTP server on 127.0.0.1, for ``tests/integration/test_chaos.py``.

What this module owns: ``ChaosServer``, a small hand-written SMTP responder on asyncio streams
(aiosmtpd can't send a reply in two packets, garbage, an over-long line, or stall after the
final dot), and ``Fault``, what it can do instead of an honest reply.

At each reply, with probability ``rate``, the server picks a fault allowed at that point of the
session (seeded: connection ``n`` draws from ``random.Random(f"{seed}:{n}")``):

- ``R421``: a 421 (sometimes "too many connections", which throttles), then close;
- ``DROP``: close without a reply (before the final dot: nothing was delivered);
- ``STALL``: say nothing for ``stall_s`` (longer than the client's timeout), then close;
- ``GARBAGE`` / ``LONG_LINE``: a line that is not an SMTP reply / a 40 kB reply line, then close;
- after the final dot only: ``ACCEPT_DROP``, ``ACCEPT_STALL`` and ``ACCEPT_GARBAGE`` record
  the delivery and then drop, stall or answer garbage (RFC 1047: the client can't know the
  server has the message); ``LOST_DROP`` drops without recording it;
- between transactions, ``IDLE_CLOSE`` closes an idle connection (as servers' idle timeouts do).

Honest replies are sometimes multi-line and sometimes written in pieces, split mid-line, across
several packets. Recipients whose local part starts with ``full`` get ``452 4.2.2``, with
``unknown`` get ``550 5.1.1``. The server records copies per recipient, which recipients had a
delivery followed by a lost reply (``ambiguous``), and the most connections open at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["AFTER_DOT", "ChaosServer", "Fault", "chaos_server"]


class Fault(StrEnum):
    R421 = "421"
    DROP = "drop"
    STALL = "stall"
    GARBAGE = "garbage"
    LONG_LINE = "long_line"
    ACCEPT_DROP = "accept_drop"
    ACCEPT_STALL = "accept_stall"
    ACCEPT_GARBAGE = "accept_garbage"
    LOST_DROP = "lost_drop"
    IDLE_CLOSE = "idle_close"


AFTER_DOT = (Fault.ACCEPT_DROP, Fault.ACCEPT_STALL, Fault.ACCEPT_GARBAGE, Fault.LOST_DROP, Fault.R421,
             Fault.GARBAGE)
"""The faults after the final dot (the reply itself can also be a 421, or garbage after which
the message was not kept)."""
_ANYWHERE = (Fault.R421, Fault.DROP, Fault.STALL, Fault.GARBAGE, Fault.LONG_LINE)

_421 = (
    b"421 4.3.2 Service shutting down, closing transmission channel",
    b"421-4.7.0 Too many concurrent SMTP connections from this IP address;\r\n"
    b"421 4.7.0 please try again later",
)
_GARBAGE = (b"hello? this is not SMTP", b"25O OK", b"\xff\xfe\x00 nonsense")


class _Closed(Exception):
    """The session ends here (a fault closed it, or the client went away)."""


@dataclass
class ChaosServer:
    """The server's state and its records. Start it with :func:`chaos_server`."""

    seed: int
    rate: float = 0.02
    """Probability of a fault at each reply."""
    stall_rate: float = 0.05
    """Of the faults, the share that stall (each one costs the client a whole timeout)."""
    stall_s: float = 1.0
    split_rate: float = 0.2
    after_dot: tuple[Fault, ...] = AFTER_DOT
    idle_close_rate: float = 0.01

    copies: collections.Counter[str] = field(default_factory=collections.Counter)
    ambiguous: set[str] = field(default_factory=set)
    """Recipients of a delivery whose reply the client never got (ACCEPT_DROP/_STALL/_GARBAGE)."""
    unconfirmed: set[str] = field(default_factory=set)
    """Recipients of a delivery answered 250 after which the client closed without another
    command: a client that timed out just before the 250 arrived (a loaded machine) sends again,
    and rightly flags a possible duplicate."""
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    connections: int = 0
    active: int = 0
    max_active: int = 0

    # -- per connection -------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = self.connections
        self.connections += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        rng = random.Random(f"{self.seed}:{n}")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._session(rng, reader, writer)
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError):
            pass
        finally:
            self.active -= 1
            writer.transport.abort()

    async def _session(self, rng: random.Random, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        async def reply(*lines: bytes, faults: tuple[Fault, ...] = _ANYWHERE) -> None:
            fault = self._pick(rng, faults)
            if fault is not None:
                await self._fault(fault, rng, reader, writer)
            await self._write(rng, writer, lines)

        await reply(b"220 chaos.test ESMTP")
        mail_from: bytes | None = None
        rcpts: list[str] = []
        idle = False
        just_delivered: list[str] = []
        while True:
            if idle and rng.random() < self.idle_close_rate:
                self.faults[Fault.IDLE_CLOSE] += 1
                writer.close()  # gracefully: the last reply still reaches the client
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
                raise _Closed
            try:
                line = await reader.readline()
            except ConnectionError:
                line = b""  # cut by the client (it timed out): as unknowing as a close
            if not line:
                self.unconfirmed.update(just_delivered)
                raise _Closed
            just_delivered = []
            verb = line[:4].upper()
            idle = False
            if verb in (b"EHLO", b"HELO"):
                await reply(b"250-chaos.test", b"250-PIPELINING", b"250-8BITMIME", b"250-SMTPUTF8",
                            b"250 ENHANCEDSTATUSCODES")
            elif verb == b"MAIL":
                await reply(b"250 2.1.0 OK")
                mail_from, rcpts = line, []
            elif verb == b"RCPT":
                address = line.split(b"<", 1)[-1].split(b">", 1)[0].decode("utf-8", "replace")
                local = address.split("@", 1)[0]
                if mail_from is None:
                    await reply(b"503 5.5.1 MAIL first")
                elif local.startswith("full"):
                    await reply(b"452-4.2.2 The email account that you tried to reach is over quota.",
                                b"452 4.2.2 Please try again later")
                elif local.startswith("unknown"):
                    await reply(b"550 5.1.1 User unknown")
                else:
                    await reply(b"250 2.1.5 OK")
                    rcpts.append(address)
            elif verb == b"DATA":
                if not rcpts:
                    await reply(b"503 5.5.1 RCPT first")
                    continue
                await reply(b"354 End data with <CR><LF>.<CR><LF>")
                while (body_line := await reader.readline()) != b".\r\n":
                    if not body_line:
                        raise _Closed
                await self._after_dot(rng, reader, writer, rcpts)
                just_delivered = rcpts
                mail_from, rcpts = None, []
                idle = True
            elif verb == b"RSET":
                mail_from, rcpts = None, []
                await reply(b"250 2.0.0 OK")
                idle = True
            elif verb == b"NOOP":
                await reply(b"250 2.0.0 OK")
            elif verb == b"QUIT":
                await self._write(rng, writer, (b"221 2.0.0 Bye",))
                raise _Closed
            else:
                await reply(b"502 5.5.2 Command not recognized")

    async def _after_dot(
        self, rng: random.Random, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rcpts: list[str]
    ) -> None:
        fault = self._pick(rng, self.after_dot)
        if fault is None:
            self.copies.update(rcpts)
            try:
                await self._write(rng, writer, (b"250 2.0.0 Ok: queued as CHAOS",))
            except ConnectionError:
                # The client gave up (timed out) before this reply could reach it: it
                # cannot know the message was kept.
                self.unconfirmed.update(rcpts)
                raise
            return
        self.faults[fault] += 1
        if fault in (Fault.ACCEPT_DROP, Fault.ACCEPT_STALL, Fault.ACCEPT_GARBAGE):
            self.copies.update(rcpts)
            self.ambiguous.update(rcpts)
        action = {
            Fault.ACCEPT_DROP: Fault.DROP, Fault.ACCEPT_STALL: Fault.STALL,
            Fault.ACCEPT_GARBAGE: Fault.GARBAGE, Fault.LOST_DROP: Fault.DROP,
        }.get(fault, fault)
        await self._fault(action, rng, reader, writer, count=False)

    # -- faults and writing ---------------------------------------------------------------

    def _pick(self, rng: random.Random, faults: tuple[Fault, ...]) -> Fault | None:
        if rng.random() >= self.rate:
            return None
        if Fault.STALL in faults or Fault.ACCEPT_STALL in faults:
            stall = Fault.STALL if Fault.STALL in faults else Fault.ACCEPT_STALL
            if rng.random() < self.stall_rate:
                return stall
            faults = tuple(f for f in faults if f is not stall)
        return rng.choice(faults)

    async def _fault(self, fault: Fault, rng: random.Random, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, *, count: bool = True) -> None:
        """Act out ``fault``; it always ends the session."""
        if count:
            self.faults[fault] += 1
        if fault is Fault.R421:
            await self._write(rng, writer, rng.choice(_421).split(b"\r\n"))
        elif fault is Fault.STALL:
            # Say nothing, but notice when the client gives up and closes (as a server does).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(), self.stall_s)
        elif fault is Fault.GARBAGE:
            writer.write(rng.choice(_GARBAGE) + b"\r\n")
        elif fault is Fault.LONG_LINE:
            writer.write(b"250 " + b"x" * 40_000 + b"\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        raise _Closed

    async def _write(
        self, rng: random.Random, writer: asyncio.StreamWriter, lines: tuple[bytes, ...] | list[bytes]
    ) -> None:
        data = b"".join(line + b"\r\n" for line in lines)
        if rng.random() < self.split_rate and len(data) > 2:
            # The reply in pieces, cut anywhere (mid-code, mid-line, between lines).
            cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                writer.write(data[a:b])
                await writer.drain()
                await asyncio.sleep(0.0005)
        else:
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def chaos_server(server: ChaosServer) -> AsyncIterator[int]:
    """``async with chaos_server(ChaosServer(seed=1)) as port``; every session ends on exit."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await server.handle(reader, writer)
        except asyncio.CancelledError:
            pass  # the server is closing; asyncio would log a cancelled handler as an error
        finally:
            tasks.discard(task)

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port: int = listener.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        listener.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.wait_closed()
