"""`logs summary` and the report follow the pace (``max_messages_per_minute``) as the
Mailer moves it: the events are the ones a real Mailer logs against a server that
rate-limits inside the session, written as JSON lines."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

from click.testing import CliRunner
from structlog.testing import capture_logs

from smtpretry import Limits, Mailer, RetryPolicy
from smtpretry.cli.logs import logs_group
from smtpretry.logs import ReadStats, read_records, summarize
from smtpretry.logs.report import render_report
from tests.servers import ScriptedHandler, serve

RATE_LIMITED = "421 4.7.0 Rate limit exceeded, slow down"


def message(i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", f"r{i}@example.com", "paced"
    msg["Message-ID"] = f"<pace{i}@test>"
    msg.set_content("hi")
    return msg


async def test_pace_changes_are_counted_and_followed_per_destination(tmp_path: Path) -> None:
    handler = ScriptedHandler(mail=[RATE_LIMITED])  # the first MAIL is rate-limited, then all goes
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with Mailer("127.0.0.1", port, tls="none", policy=RetryPolicy(backoff_base=0.001),
                              limits=Limits(max_messages_per_minute=60000.0, cap_recovery=2)) as m:
                for i in range(6):
                    assert (await m.send(message(i))).ok
    log = tmp_path / "app.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in logs))
    moves = [(e["event"], e["messages_per_minute"]) for e in logs if e["event"].startswith("smtpretry.rate_")]
    assert moves[0] == ("smtpretry.rate_lowered", 30000.0) and len(moves) > 1  # down, then back up

    stats = ReadStats()
    summary = summarize(read_records([str(log)], stats), stats=stats)
    pace = summary.destinations[f"127.0.0.1:{port}"].as_dict()["pace"]
    raised = [v for e, v in moves if e == "smtpretry.rate_raised"]
    assert pace == {"lowered": 1, "raised": len(raised), "configured": 60000.0, "min": 30000.0,
                    "last": moves[-1][1]}

    table = CliRunner().invoke(logs_group, ["summary", str(log)])
    assert table.exit_code == 0, table.output
    assert "pace ↓/↑" in table.stdout and f"1/{len(raised)}" in table.stdout
    assert "pace changes" in render_report(summary)
