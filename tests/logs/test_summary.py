"""``logs summary`` against a real log whose figures are known from the scenario: what the
API returned, and what the scripted servers counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from smtpretry.cli.logs import logs_group
from smtpretry.logs import ReadStats, read_records, summarize
from smtpretry.logs.parse import parse_time
from smtpretry.logs.summary import Summary
from tests.logs import scenario as script
from tests.logs.conftest import Scenario


def summary_of(*paths: Path, **kw: Any) -> Summary:
    stats = ReadStats()
    return summarize(read_records([str(p) for p in paths], stats), stats=stats, **kw)


def statuses(results: dict[str, dict[str, list[str]]]) -> dict[tuple[str, str], str]:
    """(message_id, recipient) -> status, from what ``Mailer.send`` returned."""
    return {(mid, r): status for status, by_id in results.items() for mid, rs in by_id.items() for r in rs}


def tally(by_rcpt: dict[tuple[str, str], str]) -> tuple[dict[str, int], dict[str, int]]:
    """Recipients and messages by status; a message counts by its worst recipient."""
    rank = {"delivered": 0, "failed": 1, "deferred": 2}
    rcpts = {"delivered": 0, "deferred": 0, "failed": 0, "pending": 0}
    worst: dict[str, str] = {}
    for (mid, _), status in by_rcpt.items():
        rcpts[status] += 1
        if rank[status] >= rank[worst.get(mid, "delivered")]:
            worst[mid] = status
    msgs = {"delivered": 0, "deferred": 0, "failed": 0, "pending": 0}
    for status in worst.values():
        msgs[status] += 1
    return rcpts, msgs


def test_first_process_figures_match_the_api_and_the_servers(scenario: Scenario) -> None:
    s = summary_of(scenario.first_log)
    assert s.stats.skipped == 0 and s.stats.records == s.stats.lines
    throttle = s.destinations[scenario.throttle]
    expected_rcpts, expected_msgs = tally(statuses(scenario.first["results"]["throttle"]))
    assert throttle.recipients == expected_rcpts
    assert throttle.messages == expected_msgs
    # ... and the scenario's own numbers, checked at the server.
    copies = scenario.first["throttle"]["copies"]
    assert set(copies.values()) == {1}
    assert throttle.recipients["delivered"] == len(copies) == 2 * script.MESSAGES - len(script.FULL) - len(
        script.BIG)
    assert throttle.recipients["deferred"] == len(script.FULL)
    assert throttle.recipients["failed"] == len(script.BIG)
    # Every session the server refused with 421 is one 421 in the summary.
    refused = scenario.first["throttle"]["sessions_refused"]
    assert refused > 0
    assert throttle.replies_421 == refused
    assert throttle.retries == refused  # each refusal was waited out once (max_attempts is high)
    assert throttle.backoff_s > 0
    plain = s.destinations[scenario.plain]
    assert plain.recipients == {"delivered": 2, "deferred": 0, "failed": 0, "pending": 0}
    assert plain.replies_421 == 1 and plain.retries == 1 and plain.recipient_retries == 2


def test_cap_changes_follow_the_pool(scenario: Scenario) -> None:
    s = summary_of(scenario.first_log)
    throttle = s.destinations[scenario.throttle]
    assert throttle.cap_lowered >= 1
    assert throttle.cap_configured == scenario.first["throttle"]["cap_configured"] == 6
    assert throttle.cap_min is not None and throttle.cap_min < 6
    final = scenario.first["throttle"]["cap_final"]
    if final is not None:
        assert throttle.cap_last == final
    # The moves chain: each change starts where the one before ended.
    moves = [r for r in read_records([str(scenario.first_log)]) if r.destination == scenario.throttle
             and r.event in ("smtpretry.cap_lowered", "smtpretry.cap_raised")]
    assert len(moves) == throttle.cap_lowered + throttle.cap_raised
    for before, after in zip(moves, moves[1:], strict=False):
        assert after.get("previous_cap") == before.get("connections_cap")


def test_after_the_restart_the_deferred_recipients_are_delivered(scenario: Scenario) -> None:
    s = summary_of(scenario.first_log, scenario.second_log)
    assert scenario.second["destination"] == scenario.throttle
    by_rcpt = statuses(scenario.first["results"]["throttle"]) | statuses(scenario.second["results"])
    expected_rcpts, expected_msgs = tally(by_rcpt)
    throttle = s.destinations[scenario.throttle]
    assert throttle.recipients == expected_rcpts
    assert throttle.messages == expected_msgs
    assert throttle.recipients["deferred"] == 0
    assert throttle.recipients["delivered"] == 2 * script.MESSAGES - len(script.BIG)
    # Time to delivery: every delivered recipient has one; the re-sent ones waited across
    # the restart, so the maximum is at least the gap between the two runs.
    q = throttle.delivery_time
    assert q.count == throttle.recipients["delivered"]
    gap = min(r.ts for r in read_records([str(scenario.second_log)]) if r.ts is not None) - max(
        r.ts for r in read_records([str(scenario.first_log)]) if r.ts is not None)
    p50, p95 = q.quantile(0.5), q.quantile(0.95)
    assert p50 is not None and p95 is not None and q.maximum is not None
    assert 0 < p50 <= p95 <= q.maximum
    assert q.maximum >= gap
    # Per category: the over-quota recipients met mailbox_full and ended delivered; the
    # too-large ones met message_too_large and failed.
    full = s.categories[(scenario.throttle, "mailbox_full")]
    assert full.recipients["delivered"] == len(script.FULL) and full.replies == len(script.FULL)
    big = s.categories[(scenario.throttle, "message_too_large")]
    assert big.recipients == {"delivered": 0, "deferred": 0, "failed": len(script.BIG), "pending": 0}
    assert big.messages["failed"] == len(script.BIG)
    # The backlog rose by the deferrals and went back to zero.
    buckets = s.timeline.series[scenario.throttle].values()
    assert sum(b.deferred for b in buckets) == len(script.FULL)
    assert sum(b.backlog_delta for b in buckets) == 0


def test_since_and_until_filter_on_the_timestamp(scenario: Scenario) -> None:
    second = list(read_records([str(scenario.second_log)]))
    start = min(r.ts for r in second if r.ts is not None)
    s = summary_of(scenario.first_log, scenario.second_log, since=start)
    first_count = sum(1 for _ in read_records([str(scenario.first_log)]))
    assert s.filtered == first_count
    assert s.total.recipients["delivered"] == len(script.FULL)
    until = summary_of(scenario.first_log, scenario.second_log, until=start - 1e-6)
    assert until.filtered == len(second)
    assert until.total.recipients["deferred"] == len(script.FULL)


def test_cli_summary_json_and_table(scenario: Scenario) -> None:
    runner = CliRunner()
    files = [str(scenario.first_log), str(scenario.second_log)]
    done = runner.invoke(logs_group, ["summary", "--json", *files])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data == json.loads(json.dumps(summary_of(scenario.first_log, scenario.second_log).as_dict()))
    by_name = {d["destination"]: d for d in data["destinations"]}
    assert by_name[scenario.throttle]["replies_421"] == scenario.first["throttle"]["sessions_refused"]
    assert data["input"]["skipped"] == 0
    table = runner.invoke(logs_group, ["summary", *files])
    assert table.exit_code == 0
    assert scenario.throttle in table.stdout and "mailbox_full" in table.stdout
    # --since takes ISO-8601 with an offset or Z; the figure is the same.
    first_ts = data["total"]["first"]
    again = runner.invoke(logs_group, ["summary", "--json", "--since", first_ts, *files])
    assert json.loads(again.stdout)["input"]["filtered_out"] == 0
    assert parse_time(first_ts) is not None


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, scenario: Scenario) -> None:
    runner = CliRunner()
    cases = [
        ["summary", str(tmp_path / "missing.log")],
        ["summary", str(tmp_path)],
        ["summary", "--since", "last tuesday", str(scenario.first_log)],
        ["trace", str(scenario.first_log)],
        ["tail", str(tmp_path / "missing.log")],
        ["report", str(scenario.first_log), "-o", str(tmp_path / "no" / "such" / "dir.html")],
    ]
    for args in cases:
        done = runner.invoke(logs_group, args)
        assert done.exit_code == 2, (args, done.output)
        assert done.stderr.startswith("smtpretry: error: "), (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1
        assert "Traceback" not in done.output
