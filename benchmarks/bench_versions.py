"""This checkout against another one (an earlier release, the previous main), side by side.

    git worktree add ../smtpretry-prev <ref>        # the version to compare against
    .venv/bin/python -m benchmarks.bench_versions --against ../smtpretry-prev

Two measurements, each run as fresh client processes, the two versions in turn
(A B A B ..., so that a drift of the machine's speed hits both), with the ratio
taken pair by pair:

- **happy path**: ``Mailer`` sending ``--n`` messages (~1 KiB, one recipient) to
  a local sink over K connections (``bench_overhead.py``'s ``mailer`` variant):
  client CPU per message;
- **goodput under throttling**: ``Mailer`` with cap K and with cap 4K against the
  throttling server of ``bench_goodput.py`` (K sessions allowed, 421 beyond, a
  service time per message): messages per second, and 421s, lost and duplicated
  recipients as the server counted them.

Only the ``smtpretry`` package is taken from ``--against``; the clients, the
sink and the server are this checkout's, so both versions do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    ROOT,
    SENDER,
    Sink,
    Table,
    machine_line,
    median,
    message_bytes,
    recipient,
    start_server_process,
    stop_server_process,
)


def _worker(kind: str, root: str, port: int, n: int, k: int) -> dict[str, Any]:
    """In a fresh process: import ``smtpretry`` from ``root`` and run one measurement."""
    sys.path.insert(0, root)
    import smtpretry

    where = Path(smtpretry.__file__).resolve()
    if not where.is_relative_to(Path(root).resolve()):
        raise RuntimeError(f"smtpretry came from {where}, not from {root}")
    if kind == "happy":
        from benchmarks import bench_overhead

        return bench_overhead.worker("mailer", port, n, k, 100, warmup=200)
    import asyncio

    from benchmarks import bench_goodput

    work = [(SENDER, [recipient(i)], message_bytes()) for i in range(n)]
    return asyncio.run(bench_goodput._client(kind, port, work, k, None))


def _spawn(kind: str, root: Path, port: int, n: int, k: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_versions", "--worker", kind, "--root", str(root),
         "--port", str(port), "--n", str(n), "--k", str(k)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=900,
        env={**os.environ, "PYTHONPATH": ""},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} with {root} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _pairs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    return [("previous", Path(args.against).resolve()), ("this checkout", ROOT)]


def happy(args: argparse.Namespace) -> Table:
    cpu: dict[str, list[float]] = {"previous": [], "this checkout": []}
    ratios: list[float] = []
    failed = 0
    with Sink(args.sink) as sink:
        for run in range(args.runs):
            order = _pairs(args) if run % 2 == 0 else _pairs(args)[::-1]
            got: dict[str, float] = {}
            for name, root in order:
                s = _spawn("happy", root, sink.port, args.n, args.k)
                got[name] = s["cpu_s"] / s["n"] * 1e6
                failed += int(s["failed"])
                cpu[name].append(got[name])
                print(f"  versions happy run {run + 1}/{args.runs} {name:<14} {got[name]:7.0f} us CPU/msg",
                      file=sys.stderr)
            ratios.append(got["this checkout"] / got["previous"])
        sink.stop()
    t = Table(f"Happy path, `Mailer` to a local sink: {args.n:,} messages, K={args.k}, "
              f"{args.runs} runs of each version in turn",
              ["version", "CPU µs/msg (median)", "this / previous, pair by pair (median, min-max)"])
    t.add("previous", median(cpu["previous"]), "-")
    t.add("this checkout", median(cpu["this checkout"]),
          f"{median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    t.notes.append(f"- Sink: {sink.kind}; recipients not delivered: {failed}. Each run is a fresh client "
                   "process (200 warm-up messages, then the timed ones); CPU is its `time.process_time()`.")
    return t


def goodput(args: argparse.Namespace) -> Table:
    ideal = args.limit / (args.service_ms / 1000)
    t = Table(f"Goodput under throttling: {args.goodput_n:,} messages, server allows K={args.limit}, "
              f"{args.service_ms:g} ms per message (ideal {ideal:,.0f} msgs/s), {args.runs} runs each",
              ["client", "version", "msgs/s (median)", "vs ideal", "this / previous, pair by pair",
               "turn-around ms", "421s (median)", "lost", "duplicated"])
    for client in ("mailer-k", "mailer-4k"):
        rates: dict[str, list[float]] = {"previous": [], "this checkout": []}
        refused: dict[str, list[int]] = {"previous": [], "this checkout": []}
        gaps: dict[str, list[float]] = {"previous": [], "this checkout": []}
        bad: dict[str, list[int]] = {"previous": [0, 0], "this checkout": [0, 0]}
        ratios: list[float] = []
        for run in range(args.runs):
            order = _pairs(args) if run % 2 == 0 else _pairs(args)[::-1]
            got: dict[str, float] = {}
            for name, root in order:
                proc, port = start_server_process("throttle", "--limit", str(args.limit),
                                                  "--service-ms", str(args.service_ms))
                try:
                    c = _spawn(client, root, port, args.goodput_n, args.limit)
                finally:
                    server = stop_server_process(proc)
                copies: dict[str, int] = server["copies"]
                expected = {recipient(i) for i in range(args.goodput_n)}
                bad[name][0] += len(expected - copies.keys())
                bad[name][1] += sum(1 for v in copies.values() if v > 1)
                got[name] = args.goodput_n / c["wall_s"]
                rates[name].append(got[name])
                refused[name].append(int(server["refused_421"]))
                if server.get("gap_ms") is not None:
                    gaps[name].append(float(server["gap_ms"]))
                print(f"  versions goodput {client} run {run + 1}/{args.runs} {name:<14} "
                      f"{got[name]:7.0f} msg/s 421s={server['refused_421']}", file=sys.stderr)
            ratios.append(got["this checkout"] / got["previous"])
        spread = f"{median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        for name in ("previous", "this checkout"):
            r = median(rates[name])
            t.add(client, name, r, f"{r / ideal:.2f}", "-" if name == "previous" else spread,
                  f"{median(gaps[name]):.2f}" if gaps[name] else "-",
                  int(median(refused[name])), bad[name][0], bad[name][1])
    t.notes.append("- Counted at the server; Mailer with the default RetryPolicy, 4K sends in flight. "
                   "Turn-around: from the server's 250 after one message's final dot to the next MAIL "
                   "on that session (median, measured by the server).")
    t.notes.append(f"- {machine_line()}")
    return t


def run(argv: list[str] | None = None) -> list[Table]:
    args = parser().parse_args(argv)
    return [f(args) for name, f in (("happy", happy), ("goodput", goodput)) if name in args.only]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", help="a checkout of the version to compare with (its smtpretry/ is used)")
    p.add_argument("--runs", type=int, default=5, help="runs of each version (default 5)")
    p.add_argument("--n", type=int, default=5000, help="messages per happy-path run (default 5000)")
    p.add_argument("--k", type=int, default=4, help="connections on the happy path (default 4)")
    p.add_argument("--sink", default="auto", choices=["auto", "smtp-sink", "aiosmtpd"])
    p.add_argument("--goodput-n", type=int, default=1200, help="messages per goodput run (default 1200)")
    p.add_argument("--limit", type=int, default=3, help="sessions the throttling server allows (3)")
    p.add_argument("--service-ms", type=float, default=5.0, help="server time per message (5 ms)")
    p.add_argument("--only", nargs="+", choices=["happy", "goodput"], default=["happy", "goodput"])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.root, args.port, args.n, args.k)))
        return
    if not args.against:
        raise SystemExit("bench_versions: --against DIR (a checkout to compare with) is required")
    for table in run(argv):
        print(table.markdown())


if __name__ == "__main__":
    main()
