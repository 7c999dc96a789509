"""The log readers as a user runs them: the installed ``smtpretry logs ...`` in a process of
its own, on the scenario's real logs and on files that are not decision logs.

A file that holds no smtpretry record is a warning and exit status 1; ``trace`` that finds
nothing exits 1; ``tail`` takes several files, and ``-F`` waits for one that does not exist
yet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.cli.conftest import SMTPRETRY, run
from tests.logs.conftest import Scenario, lines

NOT_A_LOG = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def test_a_file_without_smtpretry_records_is_a_warning_and_exit_1(
    scenario: Scenario, tmp_path: Path
) -> None:
    other = tmp_path / "passwd"
    other.write_text(NOT_A_LOG)
    empty = tmp_path / "empty.log"
    empty.write_text("")
    done = run("logs", "summary", str(other))
    assert (done.returncode, done.stdout) == (1, "")  # no tables of question marks
    assert done.stderr.splitlines()[-1] == (
        f"smtpretry: warning: {other}: no smtpretry records: it has 2 lines, none of them one "
        "(a decision log is the JSON lines configure_logging(json=True, file=...) writes)")
    assert run("logs", "summary", str(empty)).stderr.endswith(f"{empty}: no smtpretry records: it is empty "
                                                              "(a decision log is the JSON lines "
                                                              "configure_logging(json=True, file=...) "
                                                              "writes)\n")
    # With a real log beside it: the summary of what there is, the warning, still exit 1.
    mixed = run("logs", "summary", str(scenario.first_log), str(other))
    assert mixed.returncode == 1 and "Per destination" in mixed.stdout
    assert mixed.stderr.splitlines()[-1].startswith(f"smtpretry: warning: {other}: no smtpretry records")
    as_json = run("logs", "summary", "--json", str(other))
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["input"]["records"] == 0
    report = run("logs", "report", str(other), "-o", str(tmp_path / "r.html"))
    assert report.returncode == 1 and not (tmp_path / "r.html").exists()
    assert run("logs", "tail", str(other)).returncode == 1
    assert run("logs", "summary", str(scenario.first_log)).returncode == 0


def test_trace_that_finds_nothing_exits_1(scenario: Scenario) -> None:
    done = run("logs", "trace", "--recipient", "nobody@nowhere.test", str(scenario.first_log))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("smtpretry: no records for recipient nobody@nowhere.test in the ")
    found = run("logs", "trace", "--message-id", "p1@scenario", str(scenario.first_log))
    assert found.returncode == 0 and "message_delivered" in found.stdout


def test_tail_reads_several_files_each_line_naming_its_file(scenario: Scenario) -> None:
    done = run("logs", "tail", "-n", "2", str(scenario.first_log), str(scenario.second_log))
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert [ln.split(": ", 1)[0] for ln in out] == ["first.log"] * 2 + ["second.log"] * 2
    assert run("logs", "tail", str(scenario.first_log), "missing.log").returncode == 2


def test_tail_capital_f_waits_for_a_file_that_does_not_exist_yet(
    scenario: Scenario, tmp_path: Path
) -> None:
    path = tmp_path / "later.log"
    good = lines(scenario.first_log)
    proc = subprocess.Popen([str(SMTPRETRY), "logs", "tail", "-F", "--poll", "0.02", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "300"})
    seen: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            seen.append(text)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # It says it waits (tail -f would have exited 2), and waits: the file comes after.
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first == f"smtpretry: warning: {path}: no such file yet; waiting for it to appear\n"
        time.sleep(0.1)
        assert proc.poll() is None
        path.write_bytes(b"".join(good[:4]))
        deadline = time.monotonic() + 30
        while len(seen) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(seen) == 4, seen
        with path.open("ab") as f:
            f.write(b"".join(good[4:6]))
        while len(seen) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(seen) == 6, seen
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=5)  # stdout is the reader's alone
    assert proc.returncode == 0
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err
    plain = run("logs", "tail", "-f", str(tmp_path / "never.log"))
    assert plain.returncode == 2
    assert plain.stderr == f"smtpretry: error: {tmp_path / 'never.log'}: no such file\n"
