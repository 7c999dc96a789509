"""Benchmark the SQLite queue: enqueue rate and the time to pick a due batch,
on queues of 10k and 100k entries.

    .venv/bin/python benchmarks/bench_queue.py [--sizes 10000 100000] [--sample 1000]

For each size, a fresh queue file is filled (in batches, one transaction each),
with one entry in ten due. Then it measures:

- ``put``: single durable enqueues (one transaction and fsync each, as
  ``Mailer.send()`` does for a deferral), per second;
- ``claim``: leasing a batch of 100 due entries (what a runner does each
  round), median and 95th percentile in milliseconds;
- the query plan of the claim, to show it walks the ``entries_due`` index.

Timing belongs here, never in a test assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smtpretry.queue import Destination, PendingRecipient, QueueEntry  # noqa: E402
from smtpretry.queue.crypto import MessageCipher, generate_key  # noqa: E402
from smtpretry.queue.sqlite import SQLiteQueue  # noqa: E402

NOW = 1_800_000_000.0
BODY = b"From: bench@example.org\r\nTo: r@example.com\r\nSubject: bench\r\n\r\n" + b"x" * 2000 + b"\r\n"
DEST = Destination("mx.example.net", 25, "starttls")


def entry(i: int, *, due: bool) -> QueueEntry:
    at = NOW - 1 if due else NOW + 300 + i % 3600
    return QueueEntry(
        key=f"bench-{i}", destination=DEST, sender="bench@example.org", message_id=f"<b{i}@bench>",
        recipients=(PendingRecipient(
            f"r{i}@example.com", at, deferrals=1, first_attempt_at=NOW - 60, code=422,
            enhanced="4.2.2", text="4.2.2 Mailbox over quota", phase="rcpt",
            category="mailbox_full", action="defer",
        ),),
        created_at=NOW - 60, next_attempt_at=at, expires_at=NOW + 5 * 86400, data=BODY,
    )


async def bench(size: int, sample: int, directory: Path) -> dict[str, float]:
    path = directory / f"queue-{size}.db"
    q = SQLiteQueue(path, cipher=MessageCipher(generate_key(), source="benchmark key"))
    t0 = time.perf_counter()
    batch = 5000
    for start in range(0, size, batch):
        await q.put_many([entry(i, due=i % 10 == 0) for i in range(start, min(size, start + batch))])
    fill_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(sample):
        await q.put(entry(size + i, due=False))
    put_s = time.perf_counter() - t0

    picks: list[float] = []
    for round_ in range(50):
        t0 = time.perf_counter()
        got = await q.claim(owner=f"bench-{round_}", now=NOW, lease_s=30, limit=100)
        picks.append(time.perf_counter() - t0)
        await q.release([e.id for e in got], owner=f"bench-{round_}")
    await q.close()

    with sqlite3.connect(path) as conn:
        plan = " | ".join(str(r[-1]) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM entries WHERE next_attempt_at <= ? AND lease_until <= ? "
            "ORDER BY next_attempt_at LIMIT 100", (NOW, NOW),
        ))
    picks.sort()
    return {
        "size": size,
        "fill_per_s": size / fill_s,
        "put_per_s": sample / put_s,
        "claim_median_ms": statistics.median(picks) * 1000,
        "claim_p95_ms": picks[int(len(picks) * 0.95) - 1] * 1000,
        "file_mb": path.stat().st_size / 1e6,
        "plan": plan,  # type: ignore[dict-item]
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sample", type=int, default=1000, help="single puts to time")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="smtpretry-bench-") as tmp:
        for size in args.sizes:
            rows.append(asyncio.run(bench(size, args.sample, Path(tmp))))
    print(f"{'entries':>8} {'bulk fill/s':>12} {'put/s':>8} {'claim100 p50 ms':>16} "
          f"{'p95 ms':>8} {'file MB':>8}  query plan")
    for r in rows:
        print(f"{r['size']:>8} {r['fill_per_s']:>12.0f} {r['put_per_s']:>8.0f} "
              f"{r['claim_median_ms']:>16.2f} {r['claim_p95_ms']:>8.2f} {r['file_mb']:>8.1f}  {r['plan']}")
    return rows


if __name__ == "__main__":
    main()
