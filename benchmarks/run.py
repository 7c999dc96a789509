"""Run every benchmark and write one Markdown report to stdout and benchmarks/results.md.

    .venv/bin/python -m benchmarks.run                 # about 10 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --quick         # queue 10k entries, log 100k events
    .venv/bin/python -m benchmarks.run --only overhead goodput --n 20000

Progress goes to stderr. Sections: ``overhead`` (bench_overhead.py: the loopback
and the submission scenario), ``goodput``
(bench_goodput.py), ``classify`` (bench_classify.py), ``queue`` (bench_queue.py),
``logs`` (bench_logs.py), ``route`` (bench_route.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import Table, machine, machine_line, stdout_to_stderr  # noqa: E402

SECTIONS = ("overhead", "goodput", "route", "classify", "queue", "logs")
RESULTS = Path(__file__).resolve().parent / "results.md"


def queue_tables(sizes: list[int], sample: int) -> list[Table]:
    from benchmarks import bench_queue

    with stdout_to_stderr():
        rows = bench_queue.main(["--sizes", *map(str, sizes), "--sample", str(sample)])
    t = Table("SQLite queue (bench_queue.py)",
              ["entries", "bulk fill/s", "durable put/s", "claim 100: p50 ms", "p95 ms", "file MB",
               "query plan"])
    for r in rows:
        t.add(int(r["size"]), r["fill_per_s"], r["put_per_s"], r["claim_median_ms"], r["claim_p95_ms"],
              r["file_mb"], f"`{r['plan']}`")
    t.notes.append(f"- put: {sample} single enqueues, one transaction and fsync each; claim: leasing 100 due "
                   "entries (one in ten is due).")
    return [t]


def logs_tables(sizes: list[int]) -> list[Table]:
    from benchmarks import bench_logs

    rows = bench_logs.run(sizes)
    t = Table("Log reader: `smtpretry logs summary` (bench_logs.py)",
              ["events", "file MB", "summary s", "events/s", "report s", "RSS before MB", "RSS peak MB",
               "growth MB"])
    for r in rows:
        t.add(int(r["events"]), r["file_mb"], r["summary_s"], r["records"] / r["summary_s"], r["report_s"],
              r["rss_before_mb"], r["rss_peak_mb"], r["rss_peak_mb"] - r["rss_before_mb"])
    t.notes.append("- Summarized in a fresh process; memory should stay flat as the log grows.")
    return [t]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--n", type=int, default=5000, help="overhead: timed messages per run")
    p.add_argument("--runs", type=int, default=5, help="overhead: runs (medians reported)")
    p.add_argument("--k", type=int, default=4, help="overhead: connections of the pooled clients")
    p.add_argument("--scenario", choices=["loopback", "submission", "both"], default="both",
                   help="overhead: loopback sink, submission server (STARTTLS + AUTH, round trips), or both")
    p.add_argument("--rtt-ms", type=float, default=1.0, help="overhead, submission: round trip per reply")
    p.add_argument("--tls-n", type=int, default=600, help="overhead, submission: timed messages per run")
    p.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto")
    p.add_argument("--goodput-n", type=int, default=2400, help="goodput: messages per client")
    p.add_argument("--goodput-runs", type=int, default=3, help="goodput: runs (medians reported)")
    p.add_argument("--service-ms", type=float, nargs="+", default=[5.0, 20.0],
                   help="goodput: server time per message, one table each")
    p.add_argument("--backoff-base", type=float, default=None,
                   help="goodput: Mailer RetryPolicy.backoff_base")
    p.add_argument("--route-n", type=int, default=1000, help="route: messages of 3 recipients per run")
    p.add_argument("--route-runs", type=int, default=3, help="route: runs (medians reported)")
    p.add_argument("--classify-seconds", type=float, default=1.0)
    p.add_argument("--queue-sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--queue-sample", type=int, default=500)
    p.add_argument("--log-events", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--quick", action="store_true",
                   help="queue 10k entries, log 100k events (instead of 10k and 100k, 1M)")
    p.add_argument("--output", type=Path, default=RESULTS, help="where the Markdown goes (besides stdout)")
    return p


def collect(args: argparse.Namespace) -> list[tuple[str, list[Table], float]]:
    from benchmarks import bench_classify, bench_goodput, bench_overhead, bench_route

    if args.quick:
        args.queue_sizes, args.log_events = [10_000], [100_000]
    out: list[tuple[str, list[Table], float]] = []
    for section in args.only:
        print(f"== {section}", file=sys.stderr)
        started = time.perf_counter()
        tables: list[Table]
        if section == "overhead":
            tables = bench_overhead.run(["--n", str(args.n), "--runs", str(args.runs), "--k", str(args.k),
                                         "--sink", args.sink, "--scenario", args.scenario,
                                         "--rtt-ms", str(args.rtt_ms), "--tls-n", str(args.tls_n)])
        elif section == "goodput":
            extra = [] if args.backoff_base is None else ["--backoff-base", str(args.backoff_base)]
            tables = bench_goodput.run(["--n", str(args.goodput_n), "--runs", str(args.goodput_runs),
                                        "--service-ms", *map(str, args.service_ms), *extra])
        elif section == "route":
            tables = bench_route.run(["--n", str(args.route_n), "--runs", str(args.route_runs)])
        elif section == "classify":
            tables = bench_classify.run(["--seconds", str(args.classify_seconds)])
        elif section == "queue":
            tables = queue_tables(args.queue_sizes, args.queue_sample)
        else:
            tables = logs_tables(args.log_events)
        out.append((section, tables, time.perf_counter() - started))
    return out


def render(results: list[tuple[str, list[Table], float]], argv: list[str]) -> str:
    m = machine()
    head = [
        "# smtpretry benchmarks",
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with "
        f"`.venv/bin/python -m benchmarks.run{''.join(' ' + a for a in argv)}`.",
        "",
        f"Machine: {m['nproc']} CPUs, {m['cpu']}; {m['python']}; {m['os']}.",
        f"Libraries: {m['libraries']}.",
        "",
    ]
    body = []
    for section, tables, seconds in results:
        for t in tables:
            t.notes = [n for n in t.notes if not n.startswith(f"- {machine_line()}")]
            body.append(t.markdown())
        body.append(f"_{section}: {seconds:.0f} s_\n")
    return "\n".join(head) + "\n" + "\n".join(body)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    text = render(collect(args), argv)
    print(text)
    args.output.write_text(text, encoding="utf-8")
    print(f"written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
