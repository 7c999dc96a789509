"""Servers the benchmarks run in a subprocess, on 127.0.0.1, so that their CPU
is not the client's:

    python -m benchmarks._servers sink                      # aiosmtpd, accepts everything
    python -m benchmarks._servers throttle --limit 3 --service-ms 5
    python -m benchmarks._servers submission --rtt-ms 1 --cert c.pem --key k.pem --user u --password p

Each prints ``PORT n`` once it listens, serves until its stdin closes, then
prints one JSON line of statistics and exits.

``throttle`` is a small SMTP server, a thread per session on blocking sockets
(cheaper per command than aiosmtpd, so the service time, not the server, sets
the pace). It
allows ``--limit`` sessions at once and answers the greeting of any session
beyond with ``421 4.7.0 Too many concurrent SMTP connections`` and closes it,
as Exim's ``smtp_accept_max`` does. Each message holds its session for
``--service-ms`` from MAIL to the reply after the final dot: the 250 goes out
no sooner than that after MAIL, so the protocol's own round trips are inside
the service time and K / service time is a rate a perfect client reaches.
(The wait is a ``time.sleep`` in the session's thread, which ends within tens of
microseconds of its deadline; asyncio's timers wake up to a millisecond late,
10-20 % of a 5 ms service time.) It counts, itself:
connections opened, the 421s it gave, the most sessions open at once, the
copies each recipient got (a recipient is delivered when the 250 after the
final dot is written) with the time of each delivery, and how long messages
actually held their session and the median gap between a 250 after the final
dot and the next MAIL on the same session (the client's turn-around).

``submission`` is a port-587 submission service on the same asyncio streams:
EHLO offers STARTTLS and nothing else until TLS is up (certificate and key from
``--cert``/``--key``), AUTH PLAIN only over TLS (``--user``/``--password``),
MAIL refused with 530 before TLS and AUTH, as Postfix with
``smtpd_tls_auth_only`` and ``smtpd_sasl_auth_enable``. Every reply goes out
``--rtt-ms`` after the bytes of the command that asked for it came in, which
is what a client sees from a server one round trip away: a client that waits
for each reply (smtplib, aiosmtplib) pays a round trip per command, one that
pipelines (RFC 2920; EHLO after TLS offers PIPELINING) pays one for MAIL, RCPT
and DATA together, as on a network (``ArrivalClock``). The two
handshakes a real network adds are charged too: the greeting goes out two round
trips after the accept (TCP's SYN/SYN-ACK, then the greeting), and the first
reply after the TLS handshake one more round trip late (TLS 1.3 takes one). It
counts connections, TLS handshakes, AUTHs, transactions, messages delivered,
the delay replies actually had (the event loop wakes a little late) and its
own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from typing import Any

HOST = "127.0.0.1"
R421 = b"421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later\r\n"
EHLO = b"250-localhost\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"


class Throttle:
    """The throttling server: its state, and one thread per connection.

    Blocking sockets and a thread per session, not asyncio: a thread's
    ``time.sleep`` ends within a few tens of microseconds of its deadline, where
    an event loop's timer wakes up to a millisecond late, which would make the
    server, not the client, miss the ideal rate.
    """

    def __init__(self, limit: int, service_s: float) -> None:
        self.limit = limit
        self.service_s = service_s
        self.lock = threading.Lock()
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
        self.gaps_s: list[float] = []
        self.started = time.monotonic()
        self.listener = socket.create_server((HOST, 0), backlog=1000)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def serve(self) -> None:
        """Accept connections until the listening socket is closed."""
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def session(self, conn: socket.socket) -> None:
        with self.lock:
            self.connections += 1
            refuse = self.active >= self.limit
            if refuse:
                self.refused += 1
            else:
                self.active += 1
                self.sessions += 1
                self.max_active = max(self.max_active, self.active)
        if refuse:
            with contextlib.suppress(OSError):
                conn.sendall(R421)
            conn.close()
            return
        counted = True
        rcpts: list[str] = []
        mail_at = replied_at = 0.0
        reader = conn.makefile("rb")
        try:
            conn.sendall(b"220 localhost ESMTP benchmark\r\n")
            while line := reader.readline():
                with self.lock:
                    self.commands += 1
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    reply = EHLO if verb == b"EHLO" else b"250 localhost\r\n"
                elif verb == b"MAIL":
                    rcpts = []
                    mail_at = time.monotonic()
                    if replied_at:
                        self.gaps_s.append(mail_at - replied_at)
                    reply = b"250 2.1.0 OK\r\n"
                elif verb == b"RCPT":
                    addr = line[line.index(b":") + 1 :].strip().split(b" ")[0].strip(b"<>")
                    rcpts.append(addr.decode("utf-8", "replace"))
                    reply = b"250 2.1.5 OK\r\n"
                elif verb == b"DATA":
                    conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    while (body := reader.readline()) not in (b".\r\n", b""):
                        pass
                    if not body:
                        break  # lost inside DATA: not delivered
                    if (wait := mail_at + self.service_s - time.monotonic()) > 0:
                        time.sleep(wait)
                    now = time.monotonic()
                    with self.lock:
                        self.held_s += now - mail_at
                        self.messages += 1
                        self.copies.update(rcpts)
                        self.delivered_at.extend(now - self.started for _ in rcpts)
                    rcpts = []
                    reply = b"250 2.0.0 Message accepted\r\n"
                    replied_at = now
                elif verb in (b"RSET", b"NOOP"):
                    rcpts = [] if verb == b"RSET" else rcpts
                    reply = b"250 2.0.0 OK\r\n"
                elif verb == b"QUIT":
                    # The slot is free before the client reads 221, as in a real MTA
                    # whose process count drops when the session ends.
                    with self.lock:
                        self.active -= 1
                    counted = False
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    reply = b"500 5.5.2 Unknown command\r\n"
                conn.sendall(reply)
        except (OSError, ValueError):
            pass
        finally:
            if counted:
                with self.lock:
                    self.active -= 1
            reader.close()
            conn.close()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            gaps = sorted(self.gaps_s)
            return {
                "connections": self.connections, "sessions": self.sessions, "refused_421": self.refused,
                "max_active": self.max_active, "commands": self.commands,
                "delivered": sum(self.copies.values()), "copies": dict(self.copies),
                "held_ms": self.held_s / self.messages * 1000 if self.messages else None,
                "gap_ms": gaps[len(gaps) // 2] * 1000 if gaps else None,
                "delivered_at": list(self.delivered_at),
            }


SUBMISSION_EHLO_PLAIN = b"250-localhost\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
SUBMISSION_EHLO_TLS = (
    b"250-localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN\r\n"
)


class ArrivalClock:
    """When the bytes of each line a session reads came in from the network.

    A client that pipelines (RFC 2920) sends MAIL, RCPT and DATA in one
    segment: on a network all three replies come back one round trip after
    that segment, not one round trip after the server got round to reading
    each line. The clock wraps the reader's ``feed_data`` to stamp every chunk
    as it arrives; ``arrived(n)`` consumes ``n`` bytes (one line) and returns
    the time its last byte came in.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.chunks: collections.deque[tuple[int, float]] = collections.deque()  # (end offset, time)
        self.fed = 0
        self.read = 0
        feed = reader.feed_data

        def stamped(data: bytes) -> None:
            self.fed += len(data)
            self.chunks.append((self.fed, time.monotonic()))
            feed(data)

        reader.feed_data = stamped  # type: ignore[method-assign]

    def arrived(self, n: int) -> float:
        self.read += n
        while len(self.chunks) > 1 and self.chunks[0][0] < self.read:
            self.chunks.popleft()
        return self.chunks[0][1] if self.chunks else time.monotonic()


class Submission:
    """A submission server one round trip away: STARTTLS and AUTH PLAIN required."""

    def __init__(self, rtt_s: float, tls: ssl.SSLContext, user: str, password: str) -> None:
        self.rtt_s = rtt_s
        self.tls = tls
        self.credentials = b"\0" + user.encode() + b"\0" + password.encode()
        self.connections = 0
        self.max_active = 0
        self.active = 0
        self.handshakes = 0
        self.auths = 0
        self.transactions = 0
        self.delivered = 0
        self.replies = 0
        self.delay_s = 0.0
        self.cpu0 = time.process_time()
        self.writers: set[asyncio.StreamWriter] = set()

    async def reply(self, writer: asyncio.StreamWriter, data: bytes, extra_rtts: int, arrived: float) -> None:
        # A round trip counts from the command's arrival, not from the last reply:
        # commands a client pipelines (RFC 2920) share one round trip, as on a network.
        wanted = self.rtt_s * (1 + extra_rtts)
        if (left := arrived + wanted - time.monotonic()) > 0:
            await asyncio.sleep(left)
        self.delay_s += (time.monotonic() - arrived) / (1 + extra_rtts)
        self.replies += 1
        writer.write(data)
        await writer.drain()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.writers.add(writer)
        clock = ArrivalClock(reader)
        tls = authed = False
        after_handshake = 0
        rcpts = 0
        try:
            arrived = time.monotonic()

            async def say(data: bytes, extra_rtts: int = 0) -> None:
                await self.reply(writer, data, extra_rtts, arrived)

            await say(b"220 localhost ESMTP submission benchmark\r\n", extra_rtts=1)
            while line := await reader.readline():
                arrived = clock.arrived(len(line))
                verb = line[:4].upper()
                late, after_handshake = after_handshake, 0
                if verb == b"EHLO":
                    await say(SUBMISSION_EHLO_TLS if tls else SUBMISSION_EHLO_PLAIN, late)
                elif verb == b"HELO":
                    await say(b"250 localhost\r\n", late)
                elif verb == b"STAR" and not tls:
                    await say(b"220 2.0.0 Ready to start TLS\r\n", late)
                    await writer.start_tls(self.tls)
                    self.handshakes += 1
                    tls, after_handshake = True, 1
                elif verb == b"AUTH" and tls and not authed:
                    parts = line.split()
                    if len(parts) < 2 or parts[1].upper() != b"PLAIN":
                        await say(b"504 5.5.4 Unrecognized authentication type\r\n", late)
                        continue
                    if len(parts) > 2:
                        answer = parts[2]
                    else:
                        await say(b"334 \r\n", late)
                        answer = await reader.readline()
                        arrived = clock.arrived(len(answer))
                        answer = answer.strip()
                    try:
                        ok = base64.b64decode(answer, validate=True) == self.credentials
                    except ValueError:
                        ok = False
                    if ok:
                        authed = True
                        self.auths += 1
                        await say(b"235 2.7.0 Authentication successful\r\n")
                    else:
                        await say(b"535 5.7.8 Authentication credentials invalid\r\n")
                elif verb == b"MAIL":
                    if not tls:
                        await say(b"530 5.7.0 Must issue a STARTTLS command first\r\n", late)
                    elif not authed:
                        await say(b"530 5.7.0 Authentication required\r\n", late)
                    else:
                        rcpts = 0
                        await say(b"250 2.1.0 OK\r\n", late)
                elif verb == b"RCPT":
                    rcpts += 1
                    await say(b"250 2.1.5 OK\r\n", late)
                elif verb == b"DATA":
                    await say(b"354 End data with <CR><LF>.<CR><LF>\r\n", late)
                    while (body := await reader.readline()) not in (b".\r\n", b""):
                        clock.arrived(len(body))
                    if not body:
                        break
                    arrived = clock.arrived(len(body))  # the reply answers the final dot
                    self.transactions += 1
                    self.delivered += rcpts
                    rcpts = 0
                    await say(b"250 2.0.0 Message accepted\r\n")
                elif verb in (b"RSET", b"NOOP"):
                    rcpts = 0 if verb == b"RSET" else rcpts
                    await say(b"250 2.0.0 OK\r\n", late)
                elif verb == b"QUIT":
                    await say(b"221 2.0.0 Bye\r\n", late)
                    break
                else:
                    await say(b"500 5.5.2 Unknown command\r\n", late)
        except (ConnectionError, ValueError, ssl.SSLError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.active -= 1
            self.writers.discard(writer)
            with contextlib.suppress(asyncio.CancelledError):
                await _close(writer)

    async def shut(self) -> None:
        """Close the sessions clients left open (smtpretry keeps idle ones), quietly."""
        for writer in list(self.writers):
            writer.close()
        await asyncio.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.connections, "max_active": self.max_active, "tls_handshakes": self.handshakes,
            "auths": self.auths, "transactions": self.transactions, "delivered": self.delivered,
            "reply_delay_ms": self.delay_s / self.replies * 1000 if self.replies else None,
            "replies": self.replies, "cpu_s": time.process_time() - self.cpu0,
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
    parser.add_argument("mode", choices=["sink", "throttle", "submission"])
    parser.add_argument("--limit", type=int, default=3, help="sessions allowed at once (throttle)")
    parser.add_argument("--service-ms", type=float, default=5.0, help="time per message (throttle)")
    parser.add_argument("--rtt-ms", type=float, default=1.0, help="delay of every reply (submission)")
    parser.add_argument("--cert", help="PEM certificate chain (submission)")
    parser.add_argument("--key", help="PEM private key (submission)")
    parser.add_argument("--user", default="bench", help="AUTH PLAIN user (submission)")
    parser.add_argument("--password", default="bench-password", help="AUTH PLAIN password (submission)")
    args = parser.parse_args(argv)
    loop = asyncio.get_running_loop()
    state: Throttle | SinkHandler | Submission
    if args.mode == "submission":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
        state = Submission(args.rtt_ms / 1000, tls, args.user, args.password)
        server = await asyncio.start_server(state.session, HOST, 0, backlog=1000)
    elif args.mode == "throttle":
        throttle = Throttle(args.limit, args.service_ms / 1000)
        threading.Thread(target=throttle.serve, daemon=True).start()
        print(f"PORT {throttle.port}", flush=True)
        await _stdin_closed()
        throttle.close()
        print(json.dumps(throttle.stats()), flush=True)
        return
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
    stats = state.stats()
    if isinstance(state, Submission):
        await state.shut()
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
