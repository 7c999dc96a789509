"""Routing cost: a Router sending to 5 domains on 2 providers through a local DNS server,
against a single-relay Mailer sending the same recipients, side by side in one run.

    .venv/bin/python -m benchmarks.bench_route                 # 1,000 messages, 3 runs
    .venv/bin/python -m benchmarks.bench_route --n 200 --runs 1

N messages of 3 recipients each, at 3 of 5 domains in turn (d0..d2 hosted by provider A, whose
MX host is 127.0.0.2; d3, d4 by provider B on 127.0.0.3), K sends in flight. Clients, each in a
fresh process (warm-up messages first): a ``Mailer`` to one relay on 127.0.0.1 (one
transaction of 3 recipients per message), and a ``Router`` whose default route is ``via =
"mx"``, with the MX answers' TTL at 300 s (cached) and at 0 (looked up for every delivery,
one lookup in flight per domain). Every sink is the same small aiosmtpd server in its own
process, counting what it accepted; the DNS server is dnslib's (``tests/dns_server.py``) in
this process. Client CPU is ``time.process_time()`` of the client process; DNS queries are
the resolver's own count (each MX, A or AAAA question once), per 1,000 messages. Only
loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, Table, machine_line, median, python_path_env  # noqa: E402

VARIANTS = ("mailer", "router", "router_ttl0")
LABELS = {
    "mailer": "`Mailer`, one relay, 3 recipients in one transaction",
    "router": "`Router`, 5 domains on 2 providers by MX, TTL 300 s",
    "router_ttl0": "`Router`, same, TTL 0 (no DNS cache)",
}
DOMAINS = ("d0.bench", "d1.bench", "d2.bench", "d3.bench", "d4.bench")
PROVIDER_A, PROVIDER_B = "127.0.0.2", "127.0.0.3"


def recipients(i: int) -> list[str]:
    return [f"u{i}-{j}@{DOMAINS[(i + j) % 5]}" for j in range(3)]


def message(i: int) -> bytes:
    """Message ``i``, as the bytes both clients are handed with its envelope (so the timed part
    is the engine's, not the email package's)."""
    msg = EmailMessage()
    msg["From"] = "bench@example.org"
    msg["To"] = ", ".join(recipients(i))
    msg["Subject"] = "Your receipt"
    msg["Message-ID"] = f"<route-{i}@example.org>"
    msg.set_content("The quick brown fox jumps over the lazy dog, again and again.\n" * 16)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


# -- the sink: aiosmtpd in its own process ---------------------------------------------------------


def sink_main(host: str, port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class Count:
        messages = 0
        recipients = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Count.messages += 1
            Count.recipients += len(envelope.rcpt_tos)
            return "250 2.0.0 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Count(), hostname="sink.bench", data_size_limit=None), host, port)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        server.close()

    asyncio.run(serve())
    print(json.dumps({"messages": Count.messages, "recipients": Count.recipients}), flush=True)


class Sink:
    def __init__(self, host: str, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_route", "--sink", host, str(port)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=python_path_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"sink on {host} did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> dict[str, int]:
        out, _ = self.proc.communicate(timeout=30)
        return dict(json.loads(out.strip().splitlines()[-1]))


# -- the clients: one fresh process per (variant, run) --------------------------------------------


async def worker(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    from smtpretry import Limits, Mailer, Router
    from smtpretry.config import parse_config

    gate = asyncio.Semaphore(args.k)
    failed = delivered = 0

    async def send_all(send: Any, data: dict[int, bytes]) -> None:
        nonlocal failed, delivered

        async def one(i: int) -> None:
            nonlocal failed, delivered
            async with gate:
                result = await send(data[i], sender="bench@example.org", recipients=recipients(i))
            delivered += len(result.delivered)
            failed += len(result.outcomes) - len(result.delivered)

        await asyncio.gather(*(one(i) for i in data))

    queries = 0
    if variant == "mailer":
        client: Any = Mailer("127.0.0.1", args.relay_port, tls="none", limits=Limits(max_connections=4),
                             local_hostname="client.example.org")
    else:
        config = parse_config({
            "helo_name": "client.example.org",
            "dns": {"nameservers": ["127.0.0.1"], "port": args.dns_port, "timeout": "5s"},
            "routes": {"default": {"via": "mx", "mx_port": args.mx_port, "allow_private_mx": True}},
            "destinations": {"mx:.a.bench": {"max_connections": 4}, "mx:.b.bench": {"max_connections": 4}},
        })
        client = Router(config)
    async with client:
        await send_all(client.send, {i: message(i) for i in range(10**6, 10**6 + args.warmup)})
        delivered = failed = 0
        before = 0
        if variant != "mailer":
            client.resolver.forget()  # the timed run starts with a cold DNS cache: its lookups count
            before = client.resolver.queries
        data = {i: message(i) for i in range(args.n)}  # built before the clock starts
        cpu, wall = time.process_time(), time.perf_counter()
        await send_all(client.send, data)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if variant != "mailer":
            queries = client.resolver.queries - before
    return {"cpu_s": cpu, "wall_s": wall, "delivered": delivered, "failed": failed, "queries": queries}


def spawn(variant: str, args: argparse.Namespace, **ports: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_route", "--worker", variant, "--n", str(args.n),
           "--k", str(args.k), "--warmup", str(args.warmup)]
    for name, value in ports.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=python_path_env(), timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"worker {variant} failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(argv: list[str] | None = None) -> list[Table]:
    args = parser().parse_args(argv)
    from tests.dns_server import Zone, dns_server

    def zone(ttl: int) -> Zone:
        return Zone(
            mx={d: [(10, "mx1.a.bench" if i < 3 else "mx1.b.bench")] for i, d in enumerate(DOMAINS)},
            a={"mx1.a.bench": [PROVIDER_A], "mx1.b.bench": [PROVIDER_B]}, ttl=ttl,
        )

    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    relay = Sink("127.0.0.1")
    a = Sink(PROVIDER_A)
    b = Sink(PROVIDER_B, a.port)
    sent: dict[str, int] = {}
    try:
        for _ in range(args.runs):
            for variant in VARIANTS:  # interleaved, so that a busy moment hits every variant alike
                if variant == "mailer":
                    samples[variant].append(spawn(variant, args, relay_port=relay.port))
                    continue
                with dns_server(zone(0 if variant == "router_ttl0" else 300)) as dns:
                    samples[variant].append(spawn(variant, args, dns_port=dns.port, mx_port=a.port))
    finally:
        got = {"relay": relay.stop(), "a": a.stop(), "b": b.stop()}
        sent = {k: v["recipients"] for k, v in got.items()}
    base = median([s["cpu_s"] for s in samples["mailer"]]) / args.n
    t = Table(f"Routing by MX: {args.n:,} messages of 3 recipients over 5 domains and 2 providers, "
              f"K={args.k}, median of {args.runs} run(s)",
              ["client", "CPU µs/msg", "CPU vs Mailer", "transactions/msg", "CPU µs/transaction", "msgs/s",
               "DNS queries per 1,000 msgs", "failed"])
    for variant in VARIANTS:
        s = samples[variant]
        cpu = median([x["cpu_s"] for x in s]) / args.n
        per = 1 if variant == "mailer" else 3  # the 3 recipients of a message are at 3 domains
        t.add(LABELS[variant], cpu * 1e6, f"{cpu / base:.2f}x", per, cpu * 1e6 / per,
              args.n / median([x["wall_s"] for x in s]),
              round(median([x["queries"] for x in s]) * 1000 / args.n) if variant != "mailer" else "-",
              sum(x["failed"] for x in s))
    t.notes += [
        "- The 3 recipients of each message are at 3 different domains, so the Router makes 3 "
        "transactions (one per domain, as Postfix does per next-hop domain) where the Mailer to one relay "
        "makes one of 3 recipients: the ratio per message is what splitting by domain costs, the ratio "
        "per transaction what routing adds to each.",
        f"- Recipients accepted at the sinks (warm-ups included): relay {sent.get('relay', 0):,}, "
        f"provider A {sent.get('a', 0):,}, provider B {sent.get('b', 0):,}.",
        "- DNS queries: each MX, A or AAAA question once, counted by the resolver over the timed run, "
        "which starts with an empty cache; with TTL 300 s the 5 domains are looked up once each (MX, then "
        "A and AAAA of the MX host: 15 queries), with TTL 0 once per delivery unless a lookup for that "
        "domain is already in flight (one in flight per domain).",
        f"- {machine_line()}",
    ]
    return [t]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="messages per run (default 1000)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--k", type=int, default=8, help="sends in flight (default 8)")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--relay-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dns-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mx-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sink", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.sink:
        sink_main(args.sink[0], int(args.sink[1]))
        return
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.worker, args))), flush=True)
        return
    for table in run(argv):
        print(table.markdown())


if __name__ == "__main__":
    main()
