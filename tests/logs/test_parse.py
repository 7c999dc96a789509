"""Reading logs: bad lines are counted and never fatal; gzip, rotated files and stdin."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from smtpretry.cli.logs import logs_group
from smtpretry.logs import ReadStats, read_records, summarize
from tests.logs.conftest import REPO, Scenario, lines


def figures(*paths: Path | str) -> dict[str, object]:
    """The summary without the parts that name the inputs."""
    stats = ReadStats()
    data = summarize(read_records([str(p) for p in paths], stats), stats=stats).as_dict()
    del data["input"]
    return data


def test_bad_lines_are_counted_and_the_rest_is_read(scenario: Scenario, tmp_path: Path) -> None:
    good = lines(scenario.first_log)
    first = json.loads(good[0])
    newer = {**first, "schema_version": 2}
    unknown = {**first, "event": "smtpretry.moon_landed"}
    extra_key = json.dumps({**json.loads(good[1]), "shiny_new_key": [1, 2]}).encode() + b"\n"
    messy = tmp_path / "messy.log"
    messy.write_bytes(
        good[0] + b"this is not json\n" + extra_key + b"[1, 2, 3]\n"
        + json.dumps(newer).encode() + b"\n" + b"\n"
        + json.dumps(unknown).encode() + b"\n"
        + json.dumps({"event": "user logged in", "level": "info"}).encode() + b"\n"
        + json.dumps({k: v for k, v in first.items() if k != "schema_version"}).encode() + b"\n"
        + b"\xff\xfe not utf-8\n"
        + b"".join(good[2:])
        + good[0][: len(good[0]) // 2]  # the writer was cut off mid-line
    )
    stats = ReadStats()
    records = list(read_records([str(messy)], stats))
    assert len(records) == len(good)
    assert (stats.bad_json, stats.newer_schema, stats.unknown_event, stats.no_schema, stats.truncated) == (
        3, 1, 1, 1, 1)
    assert (stats.blank, stats.foreign) == (1, 1)
    assert stats.skipped == 7
    assert stats.samples["bad_json"][0] == f"{messy}:2"
    assert stats.newest_schema == 2
    # Unknown keys are ignored: the figures are those of the clean log.
    assert figures(messy) == figures(scenario.first_log)
    done = CliRunner().invoke(logs_group, ["summary", "--json", str(messy)])
    assert done.exit_code == 0
    assert done.stderr.startswith("smtpretry: warning: skipped 7 of")
    assert "newer schema (up to version 2; this reader knows 1)" in done.stderr
    assert json.loads(done.stdout)["input"]["newer_schema"] == 1


def test_rotated_and_gzipped_files_read_in_the_order_given(scenario: Scenario, tmp_path: Path) -> None:
    good = lines(scenario.first_log)
    third = len(good) // 3
    (tmp_path / "x.log.2.gz").write_bytes(gzip.compress(b"".join(good[:third])))
    (tmp_path / "x.log.1").write_bytes(b"".join(good[third : 2 * third]))
    (tmp_path / "x.log").write_bytes(b"".join(good[2 * third :]))
    rotated = [tmp_path / "x.log.2.gz", tmp_path / "x.log.1", tmp_path / "x.log"]
    assert figures(*rotated) == figures(scenario.first_log)
    order = [(r.source, r.line) for r in read_records([str(p) for p in rotated])]
    assert order[0] == (str(rotated[0]), 1) and order[-1][0] == str(rotated[2])
    # gzip is recognised by its content, not its name.
    (tmp_path / "archive").write_bytes(gzip.compress(scenario.first_log.read_bytes()))
    assert figures(tmp_path / "archive") == figures(scenario.first_log)


def test_a_corrupt_gzip_is_counted_as_unreadable(scenario: Scenario, tmp_path: Path) -> None:
    packed = gzip.compress(scenario.first_log.read_bytes())
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    stats = ReadStats()
    records = list(read_records([str(cut), str(scenario.second_log)], stats))
    assert stats.unreadable == 1
    assert records and records[-1].source == str(scenario.second_log)


def test_stdin_with_cli_runner(scenario: Scenario) -> None:
    done = CliRunner().invoke(logs_group, ["summary", "--json", "-"], input=scenario.first_log.read_bytes())
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["input"]["files"] == ["<stdin>"]
    del data["input"]
    assert data == json.loads(json.dumps(figures(scenario.first_log)))


def test_stdin_of_a_real_process_gzipped(scenario: Scenario) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "from smtpretry.cli.logs import logs_group; logs_group(prog_name='smtpretry logs')"
    done = subprocess.run(
        [sys.executable, "-c", code, "summary", "--json", "-", str(scenario.second_log)],
        input=gzip.compress(scenario.first_log.read_bytes()), capture_output=True, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["input"]["files"] == ["<stdin>", str(scenario.second_log)]
    del data["input"]
    assert data == json.loads(json.dumps(figures(scenario.first_log, scenario.second_log)))
