"""How many replies a second the classifier gets through, over the public reply corpus.

    .venv/bin/python -m benchmarks.bench_classify [--seconds 1.0] [--repeat 5]

The corpus is the project's copy, ``tests/data/replies_public.tsv``, as the unit
tests read it. Three measurements, each the best of ``--repeat``
passes of about ``--seconds``:

- ``classify_reply(text)``: parse the raw reply line, then walk the rule table;
- ``classify(code, enhanced, text)``: the table walk alone, on pre-parsed parts;
- ``parse_reply(text)``: parsing alone.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import Table, machine_line  # noqa: E402

_TSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "replies_public.tsv"


def find_tsv() -> Path:
    """The project's copy of the reply corpus, as tests/unit/test_classify.py reads it."""
    return _TSV


def load_replies(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def rate(fn: Callable[[], int], seconds: float, repeat: int) -> float:
    """Items per second: the best of ``repeat`` passes of at least ``seconds``."""
    best = 0.0
    for _ in range(repeat):
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            done += fn()
        best = max(best, done / elapsed)
    return best


def run(argv: list[str] | None = None) -> list[Table]:
    from smtpretry.classify import classify, classify_reply
    from smtpretry.reply import parse_reply

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=1.0, help="length of one timed pass")
    p.add_argument("--repeat", type=int, default=5, help="passes; the best counts")
    args = p.parse_args(argv)

    path = find_tsv()
    texts = load_replies(path)
    parsed = [parse_reply(t) for t in texts]
    parts = [(r.code, r.enhanced, r.text, r.phase) for r in parsed]

    def whole() -> int:
        for text in texts:
            classify_reply(text)
        return len(texts)

    def table_walk() -> int:
        for code, enhanced, text, phase in parts:
            classify(code, enhanced, text, phase=phase)
        return len(parts)

    def parse_only() -> int:
        for text in texts:
            parse_reply(text)
        return len(texts)

    where = _TSV.relative_to(_TSV.parents[2])
    t = Table(f"Classifier: {len(texts)} replies from `{where}`, best of {args.repeat} passes",
              ["operation", "replies/s", "µs/reply"])
    for label, fn in (("`classify_reply(text)`: parse + classify", whole),
                      ("`classify(code, enhanced, text)`: rule table only", table_walk),
                      ("`parse_reply(text)`: parse only", parse_only)):
        r = rate(fn, args.seconds, args.repeat)
        t.add(label, r, 1e6 / r)
        print(f"  classify {label}: {r:,.0f}/s", file=sys.stderr)
    t.notes.append(f"- {machine_line()}")
    return [t]


def main(argv: list[str] | None = None) -> None:
    for t in run(argv):
        print(t.markdown())


if __name__ == "__main__":
    main()
