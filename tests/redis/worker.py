"""A worker process for the Redis tests and the scale benchmark: its own Mailer (and so
its own limiter) against a destination on 127.0.0.1, configured by a TOML file whose
``backend`` is the test's redis-server.

    python tests/redis/worker.py send CONFIG PORT COUNT CONCURRENCY TAG [LEASE_S]
    python tests/redis/worker.py run CONFIG PORT
    python tests/redis/worker.py facade PORT COUNT THREADS TAG [hold]
    python tests/redis/worker.py route CONFIG COUNT CONCURRENCY TAG DOMAIN...

``send`` sends COUNT one-recipient messages (``TAG-i@example.com``), CONCURRENCY at a
time, and prints one JSON line: delivered/deferred/failed counts, the cap this process
last saw, and the cap events it logged. With LEASE_S the limiter is built explicitly
(``redis_limiter(..., lease_s=LEASE_S)``) instead of from the configuration.
``run`` delivers the queue's due entries once and prints the runner's stats.
``route`` sends COUNT one-recipient messages through a ``Router`` made from CONFIG
(``TAG-i@DOMAIN``, the domains in turn) and prints the counts. ``facade`` runs unchanged
smtplib code (``import smtpretry as smtplib``) in THREADS
threads, each sending COUNT messages, one ``SMTP`` object and one recipient
(``TAG-t-i@example.com``) per message; the configuration comes only from the file the
``SMTPRETRY_CONFIG`` environment variable names (read on the first facade call). It
prints its pid and what was delivered, deferred, refused or raised. With ``hold`` it
prints ``ready`` and waits for a line on its standard input before it sends, and for
another one before it exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from email.message import EmailMessage
from typing import Any

from smtpretry import Mailer, Router, load_config
from smtpretry.limits.redis import redis_limiter


class Collect:
    """A structlog-style logger that keeps event names."""

    def __init__(self, seen: list[str] | None = None) -> None:
        self.seen = seen if seen is not None else []

    def bind(self, **kw: Any) -> Collect:
        return Collect(self.seen)

    def _log(self, event: str, **kw: Any) -> None:
        self.seen.append(event)

    info = warning = error = _log


def message(to: str, i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "worker@example.org"
    msg["To"] = to
    msg["Subject"] = f"scale {i}"
    msg["Message-ID"] = f"<{to}>"
    msg.set_content("hello\n")
    return msg


async def send(config_path: str, port: int, count: int, concurrency: int, tag: str,
               lease_s: float | None) -> dict[str, Any]:
    config = load_config(config_path)
    log = Collect()
    limiter = None
    if lease_s is not None:
        assert config.backend_url is not None
        settings = config.settings_for("127.0.0.1", port)
        limiter = redis_limiter(config.backend_url, settings.limit_key, settings.limits, log,
                                lease_s=lease_s)
    gate = asyncio.Semaphore(concurrency)
    totals = {"delivered": 0, "deferred": 0, "failed": 0}
    started = time.monotonic()
    async with Mailer("127.0.0.1", port, tls="none", config=config, logger=log, limiter=limiter) as m:

        async def one(i: int) -> None:
            async with gate:
                result = await m.send(message(f"{tag}-{i}@example.com", i))
            totals["delivered"] += len(result.delivered)
            totals["deferred"] += len(result.deferred)
            totals["failed"] += len(result.failed)

        await asyncio.gather(*(one(i) for i in range(count)))
        cap = m.pool.cap.current
    return {**totals, "cap": cap, "seconds": time.monotonic() - started,
            "lowered": log.seen.count("smtpretry.cap_lowered"),
            "raised": log.seen.count("smtpretry.cap_raised")}


async def run(config_path: str, port: int) -> dict[str, Any]:
    config = load_config(config_path)
    async with Mailer("127.0.0.1", port, tls="none", config=config) as m:
        stats = await m.run_queue(once=True, lease_s=5.0)
    return {"entries": stats.entries, "delivered": stats.delivered, "deferred": stats.deferred}


async def route(config_path: str, count: int, concurrency: int, tag: str,
                domains: list[str]) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    totals = {"delivered": 0, "deferred": 0, "failed": 0}
    async with Router(load_config(config_path)) as router:

        async def one(i: int) -> None:
            async with gate:
                result = await router.send(message(f"{tag}-{i}@{domains[i % len(domains)]}", i))
            totals["delivered"] += len(result.delivered)
            totals["deferred"] += len(result.deferred)
            totals["failed"] += len(result.failed)

        await asyncio.gather(*(one(i) for i in range(count)))
    return totals


def facade(port: int, count: int, threads: int, tag: str) -> dict[str, Any]:
    import smtpretry as smtplib  # the one change smtplib code makes; SMTPRETRY_CONFIG does the rest

    lock = threading.Lock()
    delivered: list[str] = []
    deferred: list[str] = []
    refused: dict[str, str] = {}
    errors: list[str] = []
    started = time.monotonic()

    def one_thread(t: int) -> None:
        for i in range(count):
            to = f"{tag}-{t}-{i}@example.com"
            body = f"From: worker@example.org\r\nTo: {to}\r\nSubject: facade {i}\r\n\r\nhello\r\n"
            try:
                with smtplib.SMTP("127.0.0.1", port) as s:
                    r = s.sendmail("worker@example.org", [to], body)
                    result = s.last_result  # not smtplib's: tells delivered from queued
            except Exception as exc:  # noqa: BLE001 - reported to the test
                with lock:
                    errors.append(f"{to}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                refused.update({k: f"{code} {text!r}" for k, (code, text) in r.items()})
                if result is not None:
                    delivered.extend(result.delivered)
                    deferred.extend(result.deferred)

    workers = [threading.Thread(target=one_thread, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"pid": os.getpid(), "delivered": len(delivered), "deferred": deferred,
            "refused": refused, "errors": errors, "seconds": time.monotonic() - started}


def main(argv: list[str]) -> None:
    if argv[0] == "facade":
        hold = argv[5:] == ["hold"]
        if hold:
            print("ready", flush=True)
            sys.stdin.readline()
        out = facade(int(argv[1]), int(argv[2]), int(argv[3]), argv[4])
        print(json.dumps(out), flush=True)
        if hold:
            sys.stdin.readline()
        return
    if argv[0] == "route":
        out = asyncio.run(route(argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5:]))
        print(json.dumps(out), flush=True)
        return
    mode, config_path, port = argv[0], argv[1], int(argv[2])
    if mode == "send":
        lease = float(argv[6]) if len(argv) > 6 else None
        out = asyncio.run(send(config_path, port, int(argv[3]), int(argv[4]), argv[5], lease))
    else:
        out = asyncio.run(run(config_path, port))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
