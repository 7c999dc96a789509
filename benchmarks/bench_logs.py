"""How fast ``smtpretry logs summary`` reads a big log, and in how much memory.

    python benchmarks/bench_logs.py                   # 1,000,000 events
    python benchmarks/bench_logs.py --events 10000 100000 1000000

For each size: write that many synthetic decision events (three destinations, interleaved
concurrent sends, 421 bursts that move the cap, over-quota recipients deferred and delivered
by a later send, a few failures) as JSON lines to a temporary file, then summarize it in a
fresh process and report wall time and peak memory (``ru_maxrss``) against the same
process's memory before reading. Memory should stay flat as the log grows: the reader
streams, and keeps only sends in flight and the deferred backlog.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DESTINATIONS = ("mx.big-provider.example:25", "smtp.relay.example:587", "mail.small.example:25")
OVER_QUOTA = "4.2.2 The recipient's mailbox is over its storage limit"
TOO_MANY = "4.7.0 Too many concurrent SMTP connections from this IP address; please try again later"


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _send(rng: random.Random, n: int, dest: str, cap: list[int], t: float,
          rcpts: list[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The events of one send, and the recipients it deferred."""
    mid = f"<{n}@bench>"
    rcpts = rcpts or [f"user{n}-{k}@example.com" for k in range(rng.choice((1, 1, 2, 3)))]
    base = {"destination": dest, "message_id": mid, "schema_version": 1}
    out: list[dict[str, Any]] = []
    attempt = 1
    while rng.random() < 0.12 and attempt < 6:  # throttled at EHLO, retried
        if rng.random() < 0.3 and cap[0] > 1:
            out.append({"destination": dest, "schema_version": 1, "connections_cap": cap[0] // 2,
                        "previous_cap": cap[0], "configured_cap": 10, "connections_active": cap[0],
                        "code": 421, "enhanced": "4.7.0", "text": TOO_MANY, "event": "smtpretry.cap_lowered",
                        "level": "warning"})
            cap[0] //= 2
        out.append({**base, "recipients": rcpts, "attempt": attempt, "delay_s": round(rng.uniform(0.5, 8), 3),
                    "phase": "ehlo", "code": 421, "enhanced": "4.7.0", "text": TOO_MANY, "failure": None,
                    "category": "throttled", "action": "retry", "reason": "enhanced X.7.0 throttling",
                    "connections_active": cap[0], "connections_cap": cap[0],
                    "event": "smtpretry.retry_scheduled", "level": "warning"})
        attempt += 1
    delivered: list[str] = []
    deferred: list[str] = []
    failed: list[str] = []
    for r in rcpts:
        roll = rng.random()
        (deferred if roll < 0.03 else failed if roll < 0.035 else delivered).append(r)
    for r in deferred:
        out.append({**base, "recipient": r, "attempt": attempt, "next_attempt_at": t + 300,
                    "phase": "rcpt", "code": 422, "enhanced": "4.2.2", "text": OVER_QUOTA, "failure": None,
                    "category": "mailbox_full", "action": "defer", "reason": "enhanced X.2.2",
                    "event": "smtpretry.recipient_deferred", "level": "warning"})
    for r in failed:
        out.append({**base, "recipient": r, "attempt": attempt, "expired": False, "phase": "rcpt",
                    "code": 550, "enhanced": "5.1.1", "text": "5.1.1 User unknown", "failure": None,
                    "category": "unknown_recipient", "action": "fail", "reason": "enhanced X.1.1",
                    "event": "smtpretry.recipient_failed", "level": "error"})
    if delivered:
        out.append({**base, "recipients": delivered, "attempt": attempt, "code": 250, "enhanced": "2.0.0",
                    "text": "2.0.0 Message accepted", "assumed": False, "connections_active": cap[0],
                    "connections_cap": cap[0], "event": "smtpretry.message_delivered", "level": "info"})
        if cap[0] < 10 and rng.random() < 0.05:
            out.append({"destination": dest, "schema_version": 1, "connections_cap": cap[0] + 1,
                        "previous_cap": cap[0], "configured_cap": 10, "connections_active": cap[0],
                        "code": None, "enhanced": None, "text": None, "event": "smtpretry.cap_raised",
                        "level": "info"})
            cap[0] += 1
    out.append({**base, "delivered": len(delivered), "deferred": len(deferred), "failed": len(failed),
                "attempts": attempt, "duration_s": round(rng.uniform(0.05, 2.0), 3),
                "event": "smtpretry.send_completed", "level": "info"})
    return out, deferred


def events(total: int, seed: int = 0) -> Iterator[str]:
    """``total`` JSON lines, about 50 events a second, sends interleaved 16 at a time."""
    rng = random.Random(seed)
    caps = {d: [10] for d in DESTINATIONS}
    active: list[list[dict[str, Any]]] = []
    later: list[tuple[float, int, str, list[str]]] = []  # deferred: (due, n, dest, rcpts)
    t, n, written = START, 0, 0
    while written < total:
        while len(active) < 16:
            if later and later[0][0] <= t:
                _, old, dest, rcpts = later.pop(0)
                evs, _ = _send(rng, old, dest, caps[dest], t, rcpts)  # the queue sends them again
            else:
                n += 1
                dest = rng.choices(DESTINATIONS, (6, 3, 1))[0]
                evs, deferred = _send(rng, n, dest, caps[dest], t)
                if deferred:
                    later.append((t + 300, n, dest, deferred))
            active.append(evs)
        i = rng.randrange(len(active))
        record = active[i].pop(0)
        if not active[i]:
            active.pop(i)
        t += rng.expovariate(50.0)
        record["timestamp"] = _stamp(t)
        written += 1
        yield json.dumps(record)


def _rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024


def measure(path: str) -> dict[str, float]:
    """Summarize ``path`` (and render the report) in this process; print figures as JSON."""
    from smtpretry.logs import ReadStats, read_records, summarize
    from smtpretry.logs.report import render_report

    before = _rss_mb()
    started = time.perf_counter()
    stats = ReadStats()
    summary = summarize(read_records([path], stats), stats=stats)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    page = render_report(summary)
    report_s = time.perf_counter() - started
    return {"records": stats.records, "summary_s": seconds, "report_s": report_s,
            "report_kib": len(page.encode()) / 1024, "rss_before_mb": before, "rss_peak_mb": _rss_mb(),
            "delivered": summary.total.recipients["delivered"]}


def run(sizes: list[int]) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = os.path.join(tmp, f"bench-{size}.log")
            started = time.perf_counter()
            with open(path, "w", encoding="utf-8") as f:
                for text in events(size):
                    f.write(text + "\n")
            generated = time.perf_counter() - started
            done = subprocess.run([sys.executable, __file__, "--measure", path],
                                  capture_output=True, text=True, check=True)
            row = json.loads(done.stdout)
            row.update(events=size, file_mb=os.path.getsize(path) / 2**20, generate_s=generated)
            rows.append(row)
            os.unlink(path)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--measure", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    rows = run(args.events)
    head = (f"{'events':>10} {'file MB':>8} {'generate s':>10} {'summary s':>9} {'events/s':>10} "
            f"{'report s':>8} {'RSS before':>10} {'RSS peak':>9} {'growth MB':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['events']:>10,} {r['file_mb']:>8.1f} {r['generate_s']:>10.1f} {r['summary_s']:>9.2f} "
              f"{r['records'] / r['summary_s']:>10,.0f} {r['report_s']:>8.2f} {r['rss_before_mb']:>10.1f} "
              f"{r['rss_peak_mb']:>9.1f} {r['rss_peak_mb'] - r['rss_before_mb']:>9.1f}")


if __name__ == "__main__":
    main()
