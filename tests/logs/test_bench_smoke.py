"""The log benchmark runs (tiny sizes only: timing belongs in benchmarks/, not assertions)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.logs.conftest import REPO


def test_bench_logs_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bench = REPO / "benchmarks" / "bench_logs.py"
    done = subprocess.run([sys.executable, str(bench), "--events", "300", "2000"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert rows[0].split()[0] == "events" and len(rows) == 4
    assert rows[2].split()[0] == "300" and rows[3].split()[0] == "2,000"
