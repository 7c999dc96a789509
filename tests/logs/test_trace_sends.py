"""``logs trace`` by send: a story split along ``send_id``; logs without it read as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from smtpretry import events as ev
from smtpretry.cli.logs import logs_group
from smtpretry.logs import read_records, select
from smtpretry.logs.parse import Record
from smtpretry.logs.trace import group_sends
from tests.logs import scenario as script
from tests.logs.conftest import Scenario

T0 = 1_800_000_000.0


def _record(seq: int, event: str, ts: float | None, send_id: str | None = None, **keys: Any) -> Record:
    fields: dict[str, Any] = {"event": event, "schema_version": 1, "destination": "mx:25",
                              "message_id": "<m@test>", **keys}
    if send_id is not None:
        fields["send_id"] = send_id
    return Record(event, fields, ts, "x.log", seq + 1, seq)


def test_group_sends_splits_along_send_id_and_keeps_records_without_one() -> None:
    story = [
        _record(0, ev.RETRY_SCHEDULED, T0 + 1, recipients=["a@x"]),  # an older process: no send_id
        _record(1, ev.RECIPIENT_DEFERRED, T0 + 2, recipient="a@x"),
        _record(2, ev.RETRY_SCHEDULED, T0 + 10, "aaaaaaaaaaaa", recipients=["a@x"]),
        _record(3, ev.RETRY_SCHEDULED, T0 + 11, "bbbbbbbbbbbb", recipients=["b@x"]),  # a reused id, at once
        _record(4, ev.MESSAGE_DELIVERED, T0 + 12, "aaaaaaaaaaaa", recipients=["a@x"]),
        _record(5, ev.SEND_COMPLETED, T0 + 13, "bbbbbbbbbbbb", duration_s=4.0),  # began at T0 + 9
        _record(6, ev.SEND_COMPLETED, T0 + 14, "aaaaaaaaaaaa", duration_s=4.5),
        _record(7, ev.EXPIRED, T0 + 20, recipients=["c@x"]),
    ]
    groups = group_sends(story)
    assert [(g.send_id, [r.seq for r in g.records], g.start) for g in groups] == [
        (None, [0, 1], T0 + 1),
        ("bbbbbbbbbbbb", [3, 5], T0 + 9),  # started before the other, by its send_completed
        ("aaaaaaaaaaaa", [2, 4, 6], T0 + 9.5),
        (None, [7], T0 + 20),
    ]
    assert groups[1].destination == "mx:25"
    old = [_record(i, ev.RETRY_SCHEDULED, T0 + i) for i in range(3)]
    assert [(g.send_id, g.records) for g in group_sends(old)] == [(None, old)]


def _deferred_message(scenario: Scenario) -> str:
    """A message of the first run with a deferred recipient, sent again by the second."""
    msgid = next(m for m, rcpts in scenario.first["results"]["throttle"]["deferred"].items() if rcpts)
    return str(msgid).strip("<>")


def test_cli_trace_shows_the_resend_after_the_restart_as_a_second_send(scenario: Scenario) -> None:
    msgid = _deferred_message(scenario)
    files = [str(scenario.first_log), str(scenario.second_log)]
    story = select(read_records(files), message_id=msgid)
    first = {r.send_id for r in story if r.source == str(scenario.first_log)}
    second = {r.send_id for r in story if r.source == str(scenario.second_log)}
    assert len(first) == len(second) == 1 and first != second and None not in first | second
    (one,), (two,) = first, second

    runner = CliRunner()
    table = runner.invoke(logs_group, ["trace", "--message-id", msgid, *files])
    assert table.exit_code == 0, table.output
    out = table.stdout
    assert out.splitlines()[0].strip() == f"Story of message {msgid}, 2 sends"
    heads = [out.index("send 1 of 2"), out.index("send 2 of 2")]
    assert heads[0] < out.index(f"send_id {one}") < heads[1] < out.index(f"send_id {two}")
    assert "send 3" not in out
    # Every record of the first process sits under the first heading, the second's under the second.
    first_rows, second_rows = f"{scenario.first_log.name}:", f"{scenario.second_log.name}:"
    assert heads[0] < out.rindex(first_rows) < heads[1] < out.index(second_rows)
    assert out.count("├") == 1  # one rule between the two sends

    js = runner.invoke(logs_group, ["trace", "--json", "--message-id", msgid, *files])
    assert js.exit_code == 0, js.output
    records = [json.loads(x) for x in js.stdout.splitlines()]
    assert len(records) == len(story)
    ids = [r["send_id"] for r in records]
    assert ids == [one if r["_source"].startswith(f"{scenario.first_log}:") else two for r in records]
    assert ids == sorted(ids, key=[one, two].index)  # in time order: the first send, then the second


def test_cli_trace_by_recipient_groups_by_send_too(scenario: Scenario) -> None:
    rcpt = sorted(script.FULL)[0]
    files = [str(scenario.first_log), str(scenario.second_log)]
    done = CliRunner().invoke(logs_group, ["trace", "--recipient", rcpt, *files])
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert out.splitlines()[0].strip() == f"Story of recipient {rcpt}, 2 sends"
    assert out.index("send 1 of 2") < out.index("recipient_deferred") < out.index("send 2 of 2") < out.rindex(
        "message_delivered")


def _without_send_id(source: Path, target: Path) -> None:
    with source.open(encoding="utf-8") as f, target.open("w", encoding="utf-8") as out:
        for raw in f:
            record = json.loads(raw)
            record.pop("send_id", None)
            out.write(json.dumps(record) + "\n")


def test_cli_trace_of_a_log_without_send_id_reads_as_one_story(scenario: Scenario, tmp_path: Path) -> None:
    old = [tmp_path / "first.log", tmp_path / "second.log"]
    _without_send_id(scenario.first_log, old[0])
    _without_send_id(scenario.second_log, old[1])
    msgid = _deferred_message(scenario)
    runner = CliRunner()
    done = runner.invoke(logs_group, ["trace", "--message-id", msgid, *map(str, old)])
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert out.splitlines()[0].strip() == f"Story of message {msgid}"
    assert "send_id" not in out and " of 2 " not in out and "├" not in out
    story = select(read_records(list(map(str, old))), message_id=msgid)
    rows = [ln for ln in out.splitlines() if ln.startswith("│ 20") or ln.startswith("│ ??")]
    assert len(rows) == len(story)  # one row per record, no heading rows
    assert [ln.split("│")[3].strip() for ln in rows] == [r.event.removeprefix("smtpretry.") for r in story]
    js = runner.invoke(logs_group, ["trace", "--json", "--message-id", msgid, *map(str, old)])
    assert [json.loads(x).get("send_id") for x in js.stdout.splitlines()] == [None] * len(story)
