"""Goodput under throttling: how close each client gets to the rate a
throttling server allows, and at what cost to the server.

    .venv/bin/python -m benchmarks.bench_goodput [--n 3000] [--limit 3] [--service-ms 5]

The server (``_servers.py throttle``, in a subprocess on 127.0.0.1) allows
``--limit`` (K) sessions at once and answers the greeting of any session beyond
with ``421 4.7.0 Too many concurrent SMTP connections``; each message takes
``--service-ms`` after the final dot. The ideal rate is therefore
K / service time. Every client is offered the same load (4K sends in flight, N
messages of one distinct recipient each):

- ``aiosmtplib pool of K`` (reference): raw aiosmtplib on K reused connections,
  a client that knows the limit; what the protocol round trips leave of the ideal;
- ``Mailer, cap K``: ``Limits(max_connections=K)``, configured right;
- ``Mailer, cap 4K``: misconfigured; it must learn the limit from the 421s;
- ``naive``: aiosmtplib, a new connection per attempt (and per message), and
  an immediate retry after a 421 or a lost connection.

Per client: messages per second (wall time of the whole batch, on the client)
relative to the ideal; the same after adaptation (the rate of the second half
of the deliveries, from the server's own timestamps); the 421s the server gave;
the connections it accepted; and, counted at the server, recipients lost (no
copy) and duplicated (more than one). Mailer uses the default ``RetryPolicy``
(``--backoff-base`` changes it) and default ``Limits`` apart from the cap.

Targets: goodput >= 0.9 of ideal with cap K, >= 0.8 with cap 4K after adaptation;
0 lost, 0 duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    HOST,
    SENDER,
    Table,
    machine_line,
    median,
    message_bytes,
    recipient,
    start_server_process,
    stop_server_process,
    verdict,
)
from benchmarks.bench_overhead import Work, aiosmtplib_pool, mailer_tasks  # noqa: E402

CLIENTS = ("pool", "mailer-k", "mailer-4k", "naive")
TARGET_K = 0.9
TARGET_4K = 0.8


async def naive(port: int, work: Work, concurrency: int) -> int:
    """aiosmtplib, a new connection for every attempt, retried at once after
    a 421 or a lost connection, forever. Returns the attempts that failed."""
    import aiosmtplib

    items = iter(work)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for sender, rcpts, data in items:
            while True:
                client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False,
                                         local_hostname="localhost", timeout=30)
                try:
                    await client.connect()
                    await client.sendmail(sender, rcpts, data)
                    await client.quit()
                    break
                except (aiosmtplib.SMTPException, OSError):
                    failures += 1
                    client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


class _CapWatch:
    """A logger for Mailer that records nothing but the cap moves."""

    def __init__(self, moves: list[tuple[str, int]]) -> None:
        self.moves = moves

    def bind(self, **kw: Any) -> _CapWatch:
        return self

    def info(self, event: str, **kw: Any) -> None:
        if event.startswith("smtpretry.cap_"):
            self.moves.append((event.removeprefix("smtpretry."), int(kw["connections_cap"])))

    warning = error = info


async def _client(name: str, port: int, work: Work, k: int, backoff_base: float | None) -> dict[str, Any]:
    # Mailer too, before the clock starts: `import smtpretry` loads the engine with the
    # first name that needs it (about 0.1 s), which is start-up, not goodput.
    from smtpretry import Limits, Mailer, RetryPolicy  # noqa: F401

    moves: list[tuple[str, int]] = []
    policy = RetryPolicy() if backoff_base is None else RetryPolicy(backoff_base=backoff_base)
    started = time.perf_counter()
    if name == "pool":
        missed = await aiosmtplib_pool(port, work, k, per_connection=10**9)
    elif name == "naive":
        missed = 0
        await naive(port, work, 4 * k)
    else:
        cap = k if name == "mailer-k" else 4 * k
        missed = await mailer_tasks(port, work, 4 * k, 100, limits=Limits(max_connections=cap),
                                    policy=policy, logger=_CapWatch(moves))
    return {"wall_s": time.perf_counter() - started, "missed": missed, "cap_moves": moves}


def measure_one(name: str, args: argparse.Namespace, service_ms: float) -> dict[str, Any]:
    proc, port = start_server_process("throttle", "--limit", str(args.limit), "--service-ms", str(service_ms))
    try:
        data = message_bytes()
        work = [(SENDER, [recipient(i)], data) for i in range(args.n)]
        client = asyncio.run(_client(name, port, work, args.limit, args.backoff_base))
    finally:
        server = stop_server_process(proc)
    copies: dict[str, int] = server["copies"]
    expected = {r for _, rcpts, _ in work for r in rcpts}
    at = sorted(server["delivered_at"])
    half = at[len(at) // 2 :]
    steady = (len(half) - 1) / (half[-1] - half[0]) if len(half) > 1 and half[-1] > half[0] else float("nan")
    return {
        "client": name, "n": args.n, "wall_s": client["wall_s"], "rate": args.n / client["wall_s"],
        "steady_rate": steady, "refused_421": server["refused_421"], "connections": server["connections"],
        "max_active": server["max_active"], "lost": len(expected - copies.keys()),
        "duplicated": sum(1 for c in copies.values() if c > 1), "unexpected": len(copies.keys() - expected),
        "missed": client["missed"], "cap_moves": client["cap_moves"], "held_ms": server["held_ms"],
        "gap_ms": server["gap_ms"],
    }


LABELS = {
    "pool": "raw aiosmtplib, pool of K (reference)",
    "mailer-k": "smtpretry `Mailer`, cap K",
    "mailer-4k": "smtpretry `Mailer`, cap 4K",
    "naive": "naive: new connection per attempt, immediate retry",
}


def run(argv: list[str] | None = None) -> list[Table]:
    args = parser().parse_args(argv)
    return [measure(args, service_ms) for service_ms in args.service_ms]


def measure(args: argparse.Namespace, service_ms: float) -> Table:
    ideal = args.limit / (service_ms / 1000)
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in args.clients}
    for run_ in range(args.runs):
        for name in args.clients:
            s = measure_one(name, args, service_ms)
            samples[name].append(s)
            print(f"  goodput {service_ms:g} ms run {run_ + 1}/{args.runs} {name:<10} "
                  f"{s['rate']:>6.0f} msg/s "
                  f"(steady {s['steady_rate']:.0f}) 421s={s['refused_421']} conns={s['connections']} "
                  f"lost={s['lost']} dup={s['duplicated']} held={s['held_ms']:.2f} ms "
                  f"turn-around={s['gap_ms'] or 0:.2f} ms "
                  f"caps={_moves(s['cap_moves'])}", file=sys.stderr)
    t = Table(
        f"Goodput under throttling: {args.n:,} messages, server allows K={args.limit} sessions, "
        f"{service_ms:g} ms per message (ideal {ideal:,.0f} msgs/s), median of {args.runs} run(s)",
        ["client", "msgs/s", "vs ideal", "vs reference", "after adaptation, vs ideal", "turn-around ms",
         "421s", "connections", "max open", "lost", "duplicated"],
    )
    got: dict[str, tuple[float, float, int, int]] = {}
    reference = median([s["rate"] for s in samples["pool"]]) if "pool" in samples else float("nan")
    for name in args.clients:
        ss = samples[name]
        rate, steady = median([s["rate"] for s in ss]), median([s["steady_rate"] for s in ss])
        lost = sum(s["lost"] + s["unexpected"] for s in ss)
        dup = sum(s["duplicated"] for s in ss)
        got[name] = (rate / ideal, steady / ideal, lost, dup)
        gaps = [s["gap_ms"] for s in ss if s["gap_ms"] is not None]
        t.add(LABELS[name], rate, f"{rate / ideal:.2f}", f"{rate / reference:.2f}", f"{steady / ideal:.2f}",
              f"{median(gaps):.2f}" if gaps else "-", int(median([s["refused_421"] for s in ss])),
              int(median([s["connections"] for s in ss])),
              max(s["max_active"] for s in ss), lost, dup)
    if "mailer-k" in got:
        overall, _, lost, dup = got["mailer-k"]
        t.notes.append(f"- Target: cap K >= {TARGET_K} of ideal: {overall:.2f}, "
                       f"{verdict(overall >= TARGET_K)}; lost {lost}, duplicated {dup}: "
                       f"{verdict(lost == dup == 0)}.")
    if "mailer-4k" in got:
        _, steady, lost, dup = got["mailer-4k"]
        t.notes.append(f"- Target: cap 4K >= {TARGET_4K} of ideal after adaptation: {steady:.2f}, "
                       f"{verdict(steady >= TARGET_4K)}; lost {lost}, duplicated {dup}: "
                       f"{verdict(lost == dup == 0)}.")
        t.notes.append(f"- Effective cap of `Mailer` cap 4K (last run, each move): "
                       f"{_moves(samples['mailer-4k'][-1]['cap_moves'])}.")
    if "pool" in got:
        t.notes.append("- The reference (a client that knows the limit) reaches "
                       f"{got['pool'][0]:.2f} of ideal; "
                       "what it misses is the turn-around: the time from the server's 250 after one "
                       "message's final dot to the next MAIL on that session (median, measured by the "
                       "server; client and server share 2 cores), plus connection set-up.")
    held = [s["held_ms"] for ss in samples.values() for s in ss if s["held_ms"] is not None]
    t.notes.append("- msgs/s is N over the client's wall time for the whole batch (start-up and adaptation "
                   "included); after adaptation is the server's delivery rate over the second half of the "
                   "deliveries. 421s, connections, lost and duplicated are counted by the server; a message "
                   f"held its session {median(held):.2f} ms (median over clients) from MAIL to the final "
                   "reply. The naive client never reuses a session, so it has no turn-around. "
                   "Mailer: default RetryPolicy"
                   f"{'' if args.backoff_base is None else f'(backoff_base={args.backoff_base})'} and Limits "
                   "apart from the cap; every client has 4K sends in flight.")
    t.notes.append(f"- {machine_line()}")
    return t


def _moves(moves: list[tuple[str, int]]) -> str:
    if not moves:
        return "none"
    text = " → ".join(str(cap) for _, cap in moves[:12])
    return text + (f" … ({len(moves)} moves)" if len(moves) > 12 else "")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000, help="messages per client (default 3000)")
    p.add_argument("--limit", type=int, default=3, help="sessions the server allows at once (K)")
    p.add_argument("--service-ms", type=_positive, nargs="+", default=[5.0],
                   help="server time per message, ms; one table for each (default 5)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--backoff-base", type=float, default=None, help="Mailer's RetryPolicy.backoff_base")
    p.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=CLIENTS)
    return p


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("expected a number > 0")
    return value


def main(argv: list[str] | None = None) -> None:
    for t in run(argv):
        print(t.markdown())


if __name__ == "__main__":
    main()
