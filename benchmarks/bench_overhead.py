"""What smtpretry costs on the happy path, against raw aiosmtplib and smtplib.

    .venv/bin/python -m benchmarks.bench_overhead [--n 5000] [--runs 5] [--k 4]

The same N messages (about 1 KiB, one recipient each) go to the same local sink
(Postfix's ``smtp-sink`` in its own process when installed, else an aiosmtpd sink
in a subprocess), sent by:

- ``aiosmtplib pool``: raw aiosmtplib, K connections each driven by one task
  (concurrency K), each reused for ``--per-connection`` messages (default 100,
  smtpretry's ``max_messages_per_connection``) then QUIT and reopened: the baseline;
- ``Mailer``: ``smtpretry.Mailer`` with ``Limits(max_connections=K)`` and the same
  reuse, K tasks calling ``send()``;
- ``smtplib, one connection`` / ``smtplib, connection per message``: the
  standard library, sequential (``with SMTP(...) as s: s.sendmail(...)``);
- ``smtpretry.SMTP`` used the same two ways (it keeps QUIT connections in a pool,
  so "a connection per message" reuses them under the hood).

Each (variant, run) is a fresh client process: it sends ``--warmup`` messages
(not timed), then the N timed ones, measuring ``time.process_time()`` (the CPU of
all the client's threads, the facade's event-loop thread included; the sink's is
not counted) and wall time. Ratios are to the aiosmtplib pool of the same run;
the table shows medians over ``--runs``. Every client passes
``local_hostname="localhost"`` so that no variant pays for ``socket.getfqdn()``.

Targets: Mailer CPU per message <= 1.15x the aiosmtplib pool; ``smtpretry.SMTP``
with a connection per message >= 3x the throughput of smtplib doing the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    HOST,
    ROOT,
    SENDER,
    Sink,
    Table,
    machine_line,
    median,
    message_bytes,
    recipient,
    verdict,
)

Work = list[tuple[str, list[str], bytes]]

VARIANTS: dict[str, str] = {
    "aiosmtplib": "raw aiosmtplib, pool of K, concurrency K",
    "mailer": "smtpretry `Mailer`, Limits(max_connections=K)",
    "smtplib-one": "smtplib, one connection",
    "smtplib-each": "smtplib, connection per message",
    "compat-one": "`smtpretry.SMTP`, one connection",
    "compat-each": "`smtpretry.SMTP`, connection per message",
}
BASELINE = "aiosmtplib"
MAILER_CPU_TARGET = 1.15
COMPAT_SPEEDUP_TARGET = 3.0


# -- the clients (also used by bench_goodput) ------------------------------------------------------


async def aiosmtplib_pool(port: int, work: Work, k: int, per_connection: int) -> int:
    """Raw aiosmtplib: K tasks, each with one connection reused for
    ``per_connection`` messages. Returns how many messages were refused."""
    import aiosmtplib

    items = iter(work)
    refused = 0

    async def worker() -> None:
        nonlocal refused
        client: aiosmtplib.SMTP | None = None
        used = 0
        for sender, rcpts, data in items:
            if client is None or used >= per_connection:
                if client is not None:
                    await client.quit()
                client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False,
                                         local_hostname="localhost", timeout=30)
                await client.connect()
                used = 0
            errors, _ = await client.sendmail(sender, rcpts, data)
            refused += len(errors)
            used += 1
        if client is not None:
            await client.quit()

    await asyncio.gather(*(worker() for _ in range(k)))
    return refused


async def mailer_tasks(port: int, work: Work, k: int, per_connection: int, **mailer: Any) -> int:
    """smtpretry ``Mailer``: K tasks calling ``send()``. Returns how many
    recipients were not delivered."""
    from smtpretry import Limits, Mailer

    limits = mailer.pop("limits", None) or Limits(
        max_connections=k, max_messages_per_connection=per_connection
    )
    items = iter(work)
    missed = 0
    async with Mailer(HOST, port, tls="none", limits=limits, **mailer) as m:

        async def worker() -> None:
            nonlocal missed
            for sender, rcpts, data in items:
                result = await m.send(data, sender=sender, recipients=rcpts)
                missed += len(rcpts) - len(result.delivered)

        await asyncio.gather(*(worker() for _ in range(k)))
    return missed


def smtp_one(factory: Callable[..., Any], port: int, work: Work) -> int:
    refused = 0
    with factory(HOST, port, local_hostname="localhost") as s:
        for sender, rcpts, data in work:
            refused += len(s.sendmail(sender, rcpts, data))
    return refused


def smtp_each(factory: Callable[..., Any], port: int, work: Work) -> int:
    refused = 0
    for sender, rcpts, data in work:
        with factory(HOST, port, local_hostname="localhost") as s:
            refused += len(s.sendmail(sender, rcpts, data))
    return refused


def run_variant(variant: str, port: int, work: Work, k: int, per_connection: int) -> int:
    if variant == "aiosmtplib":
        return asyncio.run(aiosmtplib_pool(port, work, k, per_connection))
    if variant == "mailer":
        return asyncio.run(mailer_tasks(port, work, k, per_connection))
    if variant.startswith("smtplib-"):
        factory: Callable[..., Any] = smtplib.SMTP
    else:
        import smtpretry

        factory = smtpretry.SMTP
    return (smtp_one if variant.endswith("-one") else smtp_each)(factory, port, work)


def make_work(n: int, start: int = 0) -> Work:
    data = message_bytes()
    return [(SENDER, [recipient(i)], data) for i in range(start, start + n)]


def worker(variant: str, port: int, n: int, k: int, per_connection: int, warmup: int) -> dict[str, Any]:
    """One timed run of one variant, in this (fresh) process."""
    if warmup:
        run_variant(variant, port, make_work(warmup, start=10**8), k, per_connection)
    work = make_work(n)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    failed = run_variant(variant, port, work, k, per_connection)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"variant": variant, "n": n, "cpu_s": cpu, "wall_s": wall, "failed": failed}


def spawn(variant: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_overhead", "--worker", variant, "--port", str(port),
         "--n", str(args.n), "--k", str(args.k), "--per-connection", str(args.per_connection),
         "--warmup", str(args.warmup)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str, int | None, int]:
    """Every (run, variant), the order rotated each run; the sink's kind and count."""
    variants = [v for v in VARIANTS if v in args.variants]
    if BASELINE not in variants:
        variants.insert(0, BASELINE)
    samples: list[dict[str, Any]] = []
    with Sink(args.sink) as sink:
        for run in range(args.runs):
            shift = run % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                sample = spawn(variant, sink.port, args)
                sample["run"] = run
                samples.append(sample)
                print(f"  overhead run {run + 1}/{args.runs} {variant:<13} "
                      f"{sample['n'] / sample['wall_s']:>8.0f} "
                      f"msg/s {sample['cpu_s'] / sample['n'] * 1e6:>7.0f} us CPU/msg", file=sys.stderr)
        received = sink.stop()
    expected = len(samples) * (args.n + args.warmup)
    return samples, sink.kind, received, expected


def table(samples: list[dict[str, Any]], sink_kind: str, received: int | None, expected: int,
          args: argparse.Namespace) -> Table:
    runs = sorted({s["run"] for s in samples})
    by = {(s["run"], s["variant"]): s for s in samples}

    def cpu(s: dict[str, Any]) -> float:
        return float(s["cpu_s"]) / s["n"]

    def rate(s: dict[str, Any]) -> float:
        return s["n"] / float(s["wall_s"])

    t = Table(
        f"Overhead on the happy path: {args.n:,} messages, K={args.k}, median of {len(runs)} runs",
        ["client", "CPU µs/msg", "CPU vs aiosmtplib", "msgs/s", "throughput vs aiosmtplib", "failed"],
    )
    ratios: dict[str, tuple[float, float]] = {}
    for variant, label in VARIANTS.items():
        mine = [by[(r, variant)] for r in runs if (r, variant) in by]
        if not mine:
            continue
        base = [by[(r, BASELINE)] for r in runs if (r, variant) in by]
        cpu_ratio = median([cpu(m) / cpu(b) for m, b in zip(mine, base, strict=True)])
        rate_ratio = median([rate(m) / rate(b) for m, b in zip(mine, base, strict=True)])
        ratios[variant] = (cpu_ratio, rate_ratio)
        t.add(label, median([cpu(m) * 1e6 for m in mine]), f"{cpu_ratio:.2f}x",
              median([rate(m) for m in mine]), f"{rate_ratio:.2f}x", sum(m["failed"] for m in mine))
    if "mailer" in ratios:
        c = ratios["mailer"][0]
        t.notes.append(f"- Target: `Mailer` CPU per message <= {MAILER_CPU_TARGET}x raw aiosmtplib: "
                       f"{c:.2f}x, {verdict(c <= MAILER_CPU_TARGET)}.")
    if {"compat-each", "smtplib-each"} <= ratios.keys():
        speedup = median([rate(by[(r, "compat-each")]) / rate(by[(r, "smtplib-each")]) for r in runs
                          if (r, "compat-each") in by and (r, "smtplib-each") in by])
        t.notes.append(f"- Target: `smtpretry.SMTP` (connection per message) >= {COMPAT_SPEEDUP_TARGET}x the "
                       f"throughput of smtplib doing the same: {speedup:.2f}x, "
                       f"{verdict(speedup >= COMPAT_SPEEDUP_TARGET)}.")
    seen = f"{received:,}" if received is not None else "an unknown number of"
    t.notes.append(f"- Sink: `{sink_kind}` on 127.0.0.1 in its own process; it accepted {seen} messages of "
                   f"{expected:,} sent (warm-ups included). Each (variant, run) is a fresh client process: "
                   f"{args.warmup} warm-up messages, then the timed ones; connections reused for "
                   f"{args.per_connection} messages (pool and Mailer). CPU is `time.process_time()` of the "
                   "client process (all its threads).")
    t.notes.append(f"- {machine_line()}")
    return t


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="timed messages per run (default 5000)")
    p.add_argument("--runs", type=int, default=5, help="runs; the table shows medians (default 5)")
    p.add_argument("--k", type=int, default=4, help="connections and concurrency of the pooled clients")
    p.add_argument("--per-connection", type=int, default=100, help="messages per pooled connection")
    p.add_argument("--warmup", type=int, default=200, help="untimed messages first, per client process")
    p.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p


def run(argv: list[str] | None = None) -> Table:
    args = parser().parse_args(argv)
    return table(*measure(args), args)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.port, args.n, args.k, args.per_connection, args.warmup)))
        return
    print(table(*measure(args), args).markdown())


if __name__ == "__main__":
    main()
