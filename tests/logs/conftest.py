"""A real decision log, written by real processes, shared by the log-reader tests.

``scenario.py`` runs twice, as two processes (structlog's configuration is process-global):
the first sends to a throttling server and a plain one, the second (after a "restart")
sends the deferred recipients again to the same destination. Each writes what the API
returned and what the servers counted next to its log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.schema_check import record_problems

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Scenario:
    first_log: Path
    second_log: Path
    first: dict[str, Any]
    second: dict[str, Any]

    @property
    def throttle(self) -> str:
        return str(self.first["destinations"]["throttle"])

    @property
    def plain(self) -> str:
        return str(self.first["destinations"]["plain"])


def _run(log: Path, expected: Path, which: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.logs.scenario", str(log), str(expected), which],
        capture_output=True, text=True, env=env, timeout=120, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    # What a real process wrote follows the schema too, line by line.
    wrong = [p for line in log.read_text().splitlines() for p in record_problems(json.loads(line))]
    assert wrong == [], wrong
    figures: dict[str, Any] = json.loads(expected.read_text())
    return figures


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    tmp = tmp_path_factory.mktemp("scenario")
    first = _run(tmp / "first.log", tmp / "first.json", "first")
    second = _run(tmp / "second.log", tmp / "second.json", "second")
    return Scenario(tmp / "first.log", tmp / "second.log", first, second)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)
