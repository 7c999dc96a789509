"""A scripted throttling scenario that writes a real decision log (run in a subprocess).

``python -m tests.logs.scenario LOG EXPECTED first|second``

structlog's configuration is process-global, so each run is its own process, as an
application's would be. ``first`` sends to two scripted servers:

- ``throttle``: ``max_sessions=2`` while the Mailer's cap is 6, so the server refuses sessions
  with 421 and the cap comes down; some recipients are over quota (422 4.2.2, deferred) and
  some get a message too large for them (422 4.3.4, failed).
- ``plain``: one recipient gets a 421 at RCPT (a retry, then delivery).

``second`` is the process after a restart: it sends the deferred recipients again, with the
same Message-ID, to a server that now accepts them. Each run writes what the API returned
and what the servers counted to ``EXPECTED`` (JSON), the figures the tests hold the log
readers to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

from smtpretry import Limits, Mailer, RetryPolicy, configure_logging
from tests.servers import (
    R421_TOO_MANY,
    R422_OVER_QUOTA,
    R422_TOO_LARGE,
    CountingSMTP,
    ScriptedHandler,
    serve,
)

MESSAGES = 24
FULL = {f"u{i}-1@throttle.test" for i in (3, 9, 15)}
BIG = {f"u{i}-0@throttle.test" for i in (4, 11)}
RETRIED = "retry@plain.test"
POLICY = RetryPolicy(backoff_base=0.002, backoff_cap=0.02, max_attempts=40)


def message(msgid: str, *to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.org"
    msg["To"] = ", ".join(to)
    msg["Subject"] = "scenario"
    msg["Message-ID"] = msgid
    msg.set_content("hello\n")
    return msg


def _tally(results: list[Any]) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {"delivered": {}, "deferred": {}, "failed": {}}
    for r in results:
        out["delivered"].setdefault(r.message_id, []).extend(r.delivered)
        out["deferred"].setdefault(r.message_id, []).extend(r.deferred)
        out["failed"].setdefault(r.message_id, []).extend(r.failed)
    return out


async def first() -> dict[str, Any]:
    throttle = ScriptedHandler(
        max_sessions=2, rcpt={a: [R422_OVER_QUOTA] for a in FULL} | {a: [R422_TOO_LARGE] for a in BIG}
    )
    plain = ScriptedHandler(rcpt={RETRIED: [R421_TOO_MANY]})
    async with serve(throttle) as tport, serve(plain) as pport:
        tm = Mailer("127.0.0.1", tport, tls="none", policy=POLICY, limits=Limits(max_connections=6),
                    rng=random.Random(1))
        pm = Mailer("127.0.0.1", pport, tls="none", policy=POLICY, rng=random.Random(2))
        async with tm, pm:
            tsends = [
                tm.send(message(f"<t{i}@scenario>", f"u{i}-0@throttle.test", f"u{i}-1@throttle.test"))
                for i in range(MESSAGES)
            ]
            psend = pm.send(message("<p1@scenario>", "ok@plain.test", RETRIED))
            results = await asyncio.gather(*tsends, psend)
            # The effective cap the pool ended with (None if the pool no longer exposes it).
            throttle_cap = getattr(getattr(tm.pool, "cap", None), "current", None)
        await asyncio.sleep(0)
    return {
        "destinations": {"throttle": tm.destination, "plain": pm.destination},
        "results": {
            "throttle": _tally(list(results[:-1])),
            "plain": _tally([results[-1]]),
        },
        "throttle": {
            "sessions_refused": throttle.sessions_refused,
            "sessions_total": throttle.sessions_total,
            "max_active": throttle.max_active,
            "copies": dict(throttle.copies),
            "cap_configured": 6,
            "cap_final": throttle_cap,
        },
        "plain": {"copies": dict(plain.copies)},
    }


@contextlib.asynccontextmanager
async def serve_on(handler: ScriptedHandler, port: int) -> AsyncIterator[int]:
    """The destination of the first run again: the same handler type on the same port
    (``serve`` always takes a free one), so the log names the same destination."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: CountingSMTP(handler, hostname="localhost", data_size_limit=None, enable_SMTPUTF8=True,
                             timeout=30),
        "127.0.0.1", port, reuse_address=True,
    )
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def second(destination: str, deferred: dict[str, list[str]]) -> dict[str, Any]:
    handler = ScriptedHandler()
    results = []
    async with serve_on(handler, int(destination.rsplit(":", 1)[1])) as port:
        async with Mailer("127.0.0.1", port, tls="none", policy=POLICY) as m:
            for msgid, rcpts in deferred.items():
                if rcpts:
                    results.append(await m.send(message(msgid, *rcpts)))
        destination = m.destination
    return {"destination": destination, "results": _tally(results), "copies": dict(handler.copies)}


def main() -> None:
    log, expected, which = sys.argv[1:4]
    configure_logging(json=True, file=log)
    if which == "first":
        figures = asyncio.run(first())
    else:
        with open(expected.replace("second", "first"), encoding="utf-8") as f:
            before = json.load(f)
        figures = asyncio.run(
            second(before["destinations"]["throttle"], before["results"]["throttle"]["deferred"])
        )
    with open(expected, "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
