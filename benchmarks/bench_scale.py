"""Benchmark scale-out: throughput of 1 to 4 worker processes sharing caps through Redis.

    .venv/bin/python benchmarks/bench_scale.py [--workers 1 2 3 4] [--messages 200]
        [--destinations 4] [--cap 3] [--delay-ms 10] [--concurrency 3]

A private redis-server (Debian's ``redis-server``) on a loopback port holds the shared
caps; scripted SMTP servers in this process accept every message after ``--delay-ms``
(a server's own work per message). Each worker is a process with its own Mailers, built
from one configuration file with ``backend = "redis://..."`` and ``max_connections =
--cap``, sending ``--messages`` messages with ``--concurrency`` sends at a time (a
worker's own limit, as a real worker has). Two scenarios:

- ``one destination``: every worker sends to the same server. The shared cap bounds the
  connections to it, so throughput stays flat (about cap / delay) however many workers;
- ``N destinations``: each worker spreads its messages over ``--destinations`` servers.
  Each server has its own cap, so throughput grows with the workers until the caps bind.

It prints messages per second and the most sessions any server saw at once (never more
than the cap). Workers start their sends at one agreed instant, so interpreter start-up is
not timed. Timing belongs here, never in a test assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smtpretry import Mailer, load_config  # noqa: E402
from smtpretry.queue.crypto import KEY_ENV, generate_key  # noqa: E402
from tests.redis_server import RedisServer, require_redis  # noqa: E402
from tests.servers import ScriptedHandler, serve  # noqa: E402


class DelayedHandler(ScriptedHandler):
    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(self.delay_s)
        return await super().handle_DATA(server, session, envelope)


# -- a worker process ----------------------------------------------------------------------------


async def work(config_path: str, ports: list[int], count: int, concurrency: int, tag: str,
               start_at: float) -> dict[str, Any]:
    config = load_config(config_path)
    mailers = [Mailer("127.0.0.1", p, tls="none", config=config) for p in ports]
    gate = asyncio.Semaphore(concurrency)
    delivered = 0

    async def one(i: int) -> None:
        nonlocal delivered
        msg = EmailMessage()
        msg["From"] = "bench@example.org"
        msg["To"] = f"{tag}-{i}@example.com"
        msg["Subject"] = "scale"
        msg.set_content("hello\n")
        async with gate:
            result = await mailers[i % len(mailers)].send(msg)
        delivered += len(result.delivered)

    await asyncio.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    await asyncio.gather(*(one(i) for i in range(count)))
    ended = time.time()
    for m in mailers:
        await m.close()
    return {"delivered": delivered, "started": started, "ended": ended}


# -- the benchmark -------------------------------------------------------------------------------


async def scenario(config: str, ports: list[int], handlers: list[ScriptedHandler], workers: int,
                   messages: int, concurrency: int) -> dict[str, Any]:
    for h in handlers:
        h.max_active = 0
    start_at = time.time() + 1.0 + 0.8 * workers  # after every interpreter has started
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--as-worker", config, ",".join(map(str, ports)), str(messages),
            str(concurrency), f"w{workers}-{i}", repr(start_at),
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for i in range(workers)
    ]
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    if any(p.returncode for p in procs):
        raise RuntimeError("a worker failed")
    rows = [json.loads(o.decode().strip().splitlines()[-1]) for o, _ in outs]
    seconds = max(r["ended"] for r in rows) - min(r["started"] for r in rows)
    late = max(r["started"] for r in rows) - start_at
    delivered = sum(r["delivered"] for r in rows)
    return {"workers": workers, "delivered": delivered, "seconds": seconds,
            "per_s": delivered / seconds, "late_s": late, "max_sessions": max(h.max_active for h in handlers)}


async def bench(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    redis = RedisServer(require_redis(), tmp / "redis")
    redis.start()
    handlers = [DelayedHandler(args.delay_ms / 1000) for _ in range(args.destinations)]
    config = tmp / "smtpretry.toml"
    config.write_text(
        f'backend = "{redis.url}"\n[defaults]\nmax_connections = {args.cap}\nidle_timeout = "2s"\n'
        "[defaults.retry]\nbackoff_base = 0.001\nmax_attempts = 50\n"
    )
    rows: list[dict[str, Any]] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            ports = [await stack.enter_async_context(serve(h)) for h in handlers]
            for name, use in ((f"1 destination, cap {args.cap}", 1),
                              (f"{args.destinations} destinations, cap {args.cap} each", args.destinations)):
                for n in args.workers:
                    row = await scenario(str(config), ports[:use], handlers[:use], n, args.messages,
                                         args.concurrency)
                    rows.append({"scenario": name, **row})
    finally:
        redis.stop()
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--as-worker":
        config, ports, count, concurrency, tag, start_at = argv[1:7]
        out = asyncio.run(work(config, [int(p) for p in ports.split(",")], int(count), int(concurrency),
                               tag, float(start_at)))
        print(json.dumps(out), flush=True)
        return [out]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--messages", type=int, default=200, help="messages per worker")
    parser.add_argument("--destinations", type=int, default=4)
    parser.add_argument("--cap", type=int, default=3, help="max_connections per destination")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="server time per message")
    parser.add_argument("--concurrency", type=int, default=3, help="sends at a time per worker")
    args = parser.parse_args(argv)
    os.environ.setdefault(KEY_ENV, generate_key())  # the backend holds the queue too
    with tempfile.TemporaryDirectory(prefix="smtpretry-bench-") as tmp:
        rows = asyncio.run(bench(args, Path(tmp)))
    print(f"{'scenario':<32} {'workers':>7} {'messages':>8} {'seconds':>8} {'msg/s':>8} "
          f"{'max sessions':>12} {'late start s':>12}")
    for r in rows:
        print(f"{r['scenario']:<32} {r['workers']:>7} {r['delivered']:>8} {r['seconds']:>8.2f} "
              f"{r['per_s']:>8.0f} {r['max_sessions']:>12} {r['late_s']:>12.2f}")
    return rows


if __name__ == "__main__":
    main()
