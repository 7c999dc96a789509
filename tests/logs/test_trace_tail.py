"""``logs trace``: one story in time order across files and a restart; ``logs tail``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from smtpretry.cli.logs import logs_group
from smtpretry.cli.render import line
from smtpretry.logs import ReadStats, Record, read_records, select
from smtpretry.logs.tail import follow
from tests.logs import scenario as script
from tests.logs.conftest import Scenario, lines


def test_a_recipient_retried_then_delivered(scenario: Scenario) -> None:
    story = select(read_records([str(scenario.first_log)]), recipient=script.RETRIED.upper())
    assert [(r.event, r.get("attempt")) for r in story] == [
        ("smtpretry.retry_scheduled", 1),
        ("smtpretry.message_delivered", 2),
    ]
    retry = story[0]
    assert (retry.get("phase"), retry.get("code"), retry.get("category")) == ("rcpt", 421, "throttled")
    assert story[0].ts is not None and story[1].ts is not None and story[0].ts <= story[1].ts


def test_a_deferred_recipient_across_the_restart_in_time_order(scenario: Scenario) -> None:
    rcpt = sorted(script.FULL)[0]
    # Files given newest first: the story is still in time order.
    files = [str(scenario.second_log), str(scenario.first_log)]
    story = select(read_records(files), recipient=rcpt)
    events = [r.event for r in story]
    assert events[-2:] == ["smtpretry.recipient_deferred", "smtpretry.message_delivered"]
    assert set(events[:-2]) <= {"smtpretry.retry_scheduled"}
    assert story[-2].get("category") == "mailbox_full" and story[-2].get("code") == 422
    assert story[-2].source == str(scenario.first_log) and story[-1].source == str(scenario.second_log)
    stamps = [r.ts for r in story]
    assert stamps == sorted(stamps)  # type: ignore[type-var]


def test_cli_trace_message_id_table_and_json(scenario: Scenario) -> None:
    files = [str(scenario.first_log), str(scenario.second_log)]
    runner = CliRunner()
    done = runner.invoke(logs_group, ["trace", "--message-id", "p1@scenario", "--json", *files])
    assert done.exit_code == 0, done.output
    records = [json.loads(x) for x in done.stdout.splitlines()]
    assert [r["event"] for r in records] == [  # the 421 to RCPT lowered the cap: part of the story
        "smtpretry.cap_lowered", "smtpretry.retry_scheduled", "smtpretry.message_delivered",
        "smtpretry.send_completed"]
    assert len({r["send_id"] for r in records}) == 1
    assert all(r["message_id"] == "<p1@scenario>" for r in records)
    assert records[0]["_source"] == f"{scenario.first_log}:{records[0]['_source'].rsplit(':', 1)[1]}"
    table = runner.invoke(logs_group, ["trace", "--recipient", script.RETRIED, *files])
    assert table.exit_code == 0
    assert "retry_scheduled" in table.stdout and "message_delivered" in table.stdout
    assert table.stdout.index("retry_scheduled") < table.stdout.index("message_delivered")
    none = runner.invoke(logs_group, ["trace", "--recipient", "nobody@nowhere.test", *files])
    assert none.exit_code == 1 and none.stdout == ""
    assert none.stderr.startswith("smtpretry: no records for recipient nobody@nowhere.test in the ")


def test_tail_renders_every_record_coloured_by_decision(scenario: Scenario) -> None:
    records = list(read_records([str(scenario.first_log)]))
    styles = {r.event: str(line(r).spans[1].style) for r in records}
    assert styles["smtpretry.message_delivered"] == "green"
    assert styles["smtpretry.retry_scheduled"] == "yellow"
    assert styles["smtpretry.recipient_deferred"] == "magenta"
    assert styles["smtpretry.recipient_failed"] == "bold red"
    console = Console(force_terminal=True, color_system="standard", width=200)
    with console.capture() as out:
        console.print(line(records[0]))
    assert "\x1b[" in out.get()
    done = CliRunner().invoke(logs_group, ["tail", str(scenario.first_log)])
    assert done.exit_code == 0
    assert len(done.stdout.splitlines()) == len(records)
    assert "RETRY" in done.stdout and "DELIVERED" in done.stdout and "CAP DOWN" in done.stdout
    last3 = CliRunner().invoke(logs_group, ["tail", "-n", "3", str(scenario.first_log)])
    assert len(last3.stdout.splitlines()) == 3


def test_follow_reads_lines_as_written_and_across_rotation(scenario: Scenario, tmp_path: Path) -> None:
    good = lines(scenario.first_log)
    path = tmp_path / "live.log"
    path.write_bytes(b"".join(good[:5]))
    done = threading.Event()

    def writer() -> None:
        with path.open("ab") as f:
            for raw in good[5:20]:
                # Written in two pieces: the reader must wait for the newline.
                f.write(raw[:10])
                f.flush()
                time.sleep(0.002)
                f.write(raw[10:])
                f.flush()
        path.rename(tmp_path / "live.log.1")  # rotation: a new file takes the name
        path.write_bytes(b"".join(good[20:30]))
        done.set()

    seen: list[Record] = []
    stats = ReadStats()
    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 20
    for record in follow(str(path), stats=stats, poll_s=0.005,
                         stop=lambda: (done.is_set() and len(seen) >= 30) or time.monotonic() > deadline):
        seen.append(record)
    thread.join()
    assert [json.loads(raw) for raw in good[:30]] == [r.fields for r in seen]
    assert stats.skipped == 0
