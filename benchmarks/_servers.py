"""Servers the benchmarks run in a subprocess, on 127.0.0.1, so that their CPU
is not the client's:

    python -m benchmarks._servers sink                      # aiosmtpd, accepts everything
    python -m benchmarks._servers throttle --limit 3 --service-ms 5

Each prints ``PORT n`` once it listens, serves until its stdin closes, then
prints one JSON line of statistics and exits.

``throttle`` is a small SMTP server written on asyncio streams (cheaper per
command than aiosmtpd, so the service time, not the server, sets the pace). It
allows ``--limit`` sessions at once and answers the greeting of any session
beyond with ``421 4.7.0 Too many concurrent SMTP connections`` and closes it,
as Exim's ``smtp_accept_max`` does. Each message holds its session for
``--service-ms`` from MAIL to the reply after the final dot: the 250 goes out
no sooner than that after MAIL, so the protocol's own round trips are inside
the service time and K / service time is a rate a perfect client reaches.
(The wait is a ``time.sleep`` in a worker thread: asyncio's timers wake up to a
millisecond late, 10-20 % of a 5 ms service time.) It counts, itself:
connections opened, the 421s it gave, the most sessions open at once, the
copies each recipient got (a recipient is delivered when the 250 after the
final dot is written) with the time of each delivery, and how long messages
actually held their session.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import sys
import time
from typing import Any

HOST = "127.0.0.1"
R421 = b"421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later\r\n"
EHLO = b"250-localhost\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"


class Throttle:
    """The throttling server's state and per-connection protocol."""

    def __init__(self, limit: int, service_s: float) -> None:
        self.limit = limit
        self.service_s = service_s
        self.active = 0
        self.max_active = 0
        self.connections = 0
        self.sessions = 0
        self.refused = 0
        self.commands = 0
        self.copies: collections.Counter[str] = collections.Counter()
        self.delivered_at: list[float] = []
        self.held_s = 0.0
        self.messages = 0
        self.started = time.monotonic()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.active >= self.limit:
            self.refused += 1
            writer.write(R421)
            await _close(writer)
            return
        self.active += 1
        self.sessions += 1
        self.max_active = max(self.max_active, self.active)
        counted = True
        rcpts: list[str] = []
        mail_at = 0.0
        loop = asyncio.get_running_loop()
        try:
            writer.write(b"220 localhost ESMTP benchmark\r\n")
            while line := await reader.readline():
                self.commands += 1
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(EHLO if verb == b"EHLO" else b"250 localhost\r\n")
                elif verb == b"MAIL":
                    rcpts = []
                    mail_at = time.monotonic()
                    writer.write(b"250 2.1.0 OK\r\n")
                elif verb == b"RCPT":
                    addr = line[line.index(b":") + 1 :].strip().split(b" ")[0].strip(b"<>")
                    rcpts.append(addr.decode("utf-8", "replace"))
                    writer.write(b"250 2.1.5 OK\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    while (body := await reader.readline()) not in (b".\r\n", b""):
                        pass
                    if not body:
                        break  # lost inside DATA: not delivered
                    wait = mail_at + self.service_s - time.monotonic()
                    if wait > 0:
                        await loop.run_in_executor(None, time.sleep, wait)
                    now = time.monotonic()
                    self.held_s += now - mail_at
                    self.messages += 1
                    self.copies.update(rcpts)
                    self.delivered_at.extend(now - self.started for _ in rcpts)
                    rcpts = []
                    writer.write(b"250 2.0.0 Message accepted\r\n")
                elif verb in (b"RSET", b"NOOP"):
                    rcpts = [] if verb == b"RSET" else rcpts
                    writer.write(b"250 2.0.0 OK\r\n")
                elif verb == b"QUIT":
                    # The slot is free before the client reads 221, as in a real MTA
                    # whose process count drops when the session ends.
                    self.active -= 1
                    counted = False
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    writer.write(b"500 5.5.2 Unknown command\r\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            if counted:
                self.active -= 1
            await _close(writer)

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.connections, "sessions": self.sessions, "refused_421": self.refused,
            "max_active": self.max_active, "commands": self.commands,
            "delivered": sum(self.copies.values()), "copies": dict(self.copies),
            "held_ms": self.held_s / self.messages * 1000 if self.messages else None,
            "delivered_at": self.delivered_at,
        }


class SinkHandler:
    """aiosmtpd handler that accepts every message and counts them."""

    def __init__(self) -> None:
        self.delivered = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.delivered += 1
        return "250 2.0.0 OK"

    def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered}


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["sink", "throttle"])
    parser.add_argument("--limit", type=int, default=3, help="sessions allowed at once (throttle)")
    parser.add_argument("--service-ms", type=float, default=5.0, help="time per message (throttle)")
    args = parser.parse_args(argv)
    loop = asyncio.get_running_loop()
    state: Throttle | SinkHandler
    if args.mode == "throttle":
        state = Throttle(args.limit, args.service_ms / 1000)
        server = await asyncio.start_server(state.session, HOST, 0, backlog=1000)
    else:
        from aiosmtpd.smtp import SMTP

        state = SinkHandler()
        handler = state
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="localhost", data_size_limit=None), HOST, 0, backlog=1000
        )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await _stdin_closed()
    server.close()
    print(json.dumps(state.stats()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
