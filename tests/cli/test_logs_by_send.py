"""Sends without a Message-ID (as unchanged smtplib code often makes them) in the log readers:
counted and drawn by ``send_id`` in ``logs summary`` and ``logs report``, and one send
picked out by ``logs trace --send-id``. The log is written by real sends of the installed
command to a scripted server, and read back by the installed command."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.commands import Smtpretry
from tests.servers import R422_OVER_QUOTA, R550_UNKNOWN, ScriptedHandler, serve_threaded


def _message(*to: str, message_id: str | None = None) -> str:
    head = f"Message-ID: {message_id}\r\n" if message_id else ""
    return f"From: s@example.org\r\nTo: {', '.join(to)}\r\n{head}Subject: x\r\n\r\nhi\r\n"


def _log(smtpretry: Smtpretry, tmp_path: Path) -> tuple[Path, int]:
    """Four sends, three without a Message-ID; b@example.com is in all three."""
    handler = ScriptedHandler(rcpt={"c@example.com": [R422_OVER_QUOTA], "d@example.com": [R550_UNKNOWN]})
    log = tmp_path / "decisions.jsonl"
    with serve_threaded(handler) as port:
        for message in (
            _message("a@example.com", "b@example.com"),  # delivered
            _message("b@example.com", "c@example.com"),  # c deferred (and not queued)
            _message("b@example.com", "d@example.com"),  # d failed
            _message("e@example.com", message_id="<with-id@test>"),  # delivered
        ):
            smtpretry("send", "--host", "127.0.0.1", "--port", str(port), "--tls", "none",
                      "--log-file", log, "-", input=message)
    assert handler.copies["b@example.com"] == 3
    return log, port


def test_summary_and_report_count_each_send_without_a_message_id_as_a_message(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    log, port = _log(smtpretry, tmp_path)
    done = smtpretry("logs", "summary", "--json", log)
    assert done.returncode == 0, done.stderr
    total = json.loads(done.stdout)["total"]
    assert total["messages"] == {"delivered": 2, "deferred": 1, "failed": 1, "pending": 0}
    assert total["recipients"] == {"delivered": 5, "deferred": 1, "failed": 1, "pending": 0}
    page = tmp_path / "report.html"
    drawn = smtpretry("logs", "report", log, "-o", page)
    assert drawn.returncode == 0, drawn.stderr
    row = re.search(rf"<tr><td class=l>127\.0\.0\.1:{port}</td>(.*?)</tr>", page.read_text())
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row[1])
    assert cells[:8] == ["2", "1", "1", "0", "5", "1", "1", "0"]  # messages, then recipients


def test_trace_send_id_selects_one_send(smtpretry: Smtpretry, tmp_path: Path) -> None:
    log, _ = _log(smtpretry, tmp_path)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    sends = list(dict.fromkeys(r["send_id"] for r in records))
    assert len(sends) == 4 and all(sends)
    second = sends[1]
    done = smtpretry("logs", "trace", "--send-id", second, "--json", log)
    assert done.returncode == 0, done.stderr
    story = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["send_id"] for r in story} == {second}
    assert [r["event"] for r in story] == [r["event"] for r in records if r["send_id"] == second]
    assert {r.get("recipient") for r in story if r["event"] == "smtpretry.recipient_deferred"} == {
        "c@example.com"}
    table = smtpretry("logs", "trace", "--send-id", second, log, env={"COLUMNS": "200"})
    assert table.returncode == 0 and f"Story of send {second}, 1 send" in table.stdout
    both = smtpretry("logs", "trace", "--send-id", second, "--recipient", "b@example.com", log)
    assert both.returncode == 2
    assert both.stderr == ("smtpretry: error: give one of --message-id ID, --recipient ADDR or "
                           "--send-id ID\n")
