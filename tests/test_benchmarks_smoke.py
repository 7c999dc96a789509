"""Each benchmark runs with tiny sizes and produces well-formed Markdown rows.

No timing is asserted here: numbers belong in benchmarks/results.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_classify, bench_goodput, bench_overhead, bench_route, run
from benchmarks._common import Table


def _well_formed(tables: list[Table], min_rows: int = 1) -> None:
    assert tables
    for t in tables:
        assert t.title and t.headers
        assert len(t.rows) >= min_rows, t.title
        for row in t.rows:
            assert len(row) == len(t.headers), (t.title, row)
            assert all(isinstance(c, str) and c for c in row), (t.title, row)
        lines = t.markdown().splitlines()
        table_lines = [line for line in lines if line.startswith("|")]
        assert len(table_lines) == 2 + len(t.rows)
        assert all(line.count("|") - line.count("\\|") == len(t.headers) + 1 for line in table_lines)


def test_overhead() -> None:
    (table,) = bench_overhead.run(["--n", "20", "--runs", "1", "--warmup", "2", "--k", "2",
                                   "--scenario", "loopback"])
    _well_formed([table], min_rows=len(bench_overhead.VARIANTS))
    assert any("Target" in n for n in table.notes)


def test_overhead_submission() -> None:
    """STARTTLS, AUTH and round trips: every client, a few messages each, no delay."""
    (table,) = bench_overhead.run(["--tls-n", "6", "--tls-warmup", "1", "--runs", "1", "--k", "2",
                                   "--rtt-ms", "0", "--scenario", "submission"])
    _well_formed([table], min_rows=len(bench_overhead.SUBMISSION_VARIANTS))
    assert sum("Target" in n for n in table.notes) == 3
    assert all(row[-1] == "0" for row in table.rows)  # nothing failed


def test_goodput() -> None:
    tables = bench_goodput.run(["--n", "30", "--service-ms", "2", "--backoff-base", "0.01"])
    _well_formed(tables, min_rows=len(bench_goodput.CLIENTS))


def test_route() -> None:
    (table,) = bench_route.run(["--n", "12", "--runs", "1", "--warmup", "2", "--k", "2"])
    _well_formed([table], min_rows=len(bench_route.VARIANTS))
    assert all(row[-1] == "0" for row in table.rows)  # nothing failed


def test_classify() -> None:
    _well_formed(bench_classify.run(["--seconds", "0.02", "--repeat", "1"]), min_rows=3)


def test_queue_and_logs_in_the_runner() -> None:
    tables = run.queue_tables([200], 5) + run.logs_tables([1000])
    _well_formed(tables)
    text = run.render([("queue", tables[:1], 0.1), ("logs", tables[1:], 0.1)], ["--only", "queue", "logs"])
    assert text.startswith("# smtpretry benchmarks")


def test_runner_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.md"
    run.main(["--only", "classify", "--classify-seconds", "0.02", "--output", str(out)])
    assert out.read_text(encoding="utf-8") in capsys.readouterr().out + "\n"


def test_versions_side_by_side() -> None:
    """This checkout against itself: every row there, nothing lost or duplicated."""
    from benchmarks import bench_versions
    from benchmarks._common import ROOT

    tables = bench_versions.run(["--against", str(ROOT), "--runs", "1", "--n", "20", "--k", "2",
                                 "--goodput-n", "20", "--service-ms", "1"])
    _well_formed(tables[:1], min_rows=2)
    _well_formed(tables[1:], min_rows=4)
    assert all(row[-2:] == ["0", "0"] for row in tables[1].rows)  # lost, duplicated
