"""The decision log in a real process: quiet by default, JSON lines on request."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60, cwd=REPO
    )


SEND = """
    import asyncio
    from smtpretry import Mailer, RetryPolicy
    from tests.servers import ScriptedHandler, serve, R421_TOO_MANY, R422_OVER_QUOTA

    async def main():
        handler = ScriptedHandler(greeting=[R421_TOO_MANY], rcpt={"b@example.com": [R422_OVER_QUOTA]})
        async with serve(handler) as port:
            async with Mailer("127.0.0.1", port, tls="none",
                              policy=RetryPolicy(backoff_base=0.001)) as m:
                r = await m.send(b"Subject: x\\r\\n\\r\\nhi\\r\\n", sender="s@example.org",
                                 recipients=["a@example.com", "b@example.com"])
        assert r.delivered == ["a@example.com"] and list(r.deferred) == ["b@example.com"]
    {setup}
    asyncio.run(main())
"""


def test_the_library_prints_nothing_unless_asked(tmp_path: Path) -> None:
    done = _run(SEND.replace("{setup}", ""), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_configure_logging_writes_json_lines_to_a_private_file(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    setup = f"from smtpretry import configure_logging; configure_logging(json=True, file={str(log)!r})"
    done = _run(SEND.replace("{setup}", setup), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    records = [json.loads(line) for line in log.read_text().splitlines()]
    names = [r["event"] for r in records]
    assert names == [
        "smtpretry.cap_lowered",  # the 421 at the greeting says too many connections
        "smtpretry.retry_scheduled",
        "smtpretry.recipient_deferred",
        "smtpretry.message_delivered",
        "smtpretry.send_completed",
    ]
    assert all(r["schema_version"] == 1 and "timestamp" in r for r in records)
    assert records[1]["phase"] == "greeting" and records[1]["code"] == 421
    assert "hi\\r\\n" not in log.read_text()  # no message body


def test_standard_logging_receives_events_when_the_app_configures_only_logging(tmp_path: Path) -> None:
    setup = (
        "import logging, sys; "
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='%(name)s %(message)s')"
    )
    done = _run(SEND.replace("{setup}", setup), tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "smtpretry smtpretry.retry_scheduled" in lines
    assert "smtpretry smtpretry.send_completed" in lines


def test_recipients_can_be_hashed_in_the_log_and_traced_with_the_key(tmp_path: Path) -> None:
    log = tmp_path / "private.jsonl"
    setup = (
        f"from smtpretry import configure_logging; configure_logging(file={str(log)!r}, hash_recipients=True)"
    )
    env_key = "SMTPRETRY_LOG_HASH_KEY"
    os.environ[env_key] = "k3y"
    try:
        done = _run(SEND.replace("{setup}", setup), tmp_path)
        assert done.returncode == 0, done.stderr
        text = log.read_text()
        assert "a@example.com" not in text and "b@example.com" not in text
        from smtpretry.events import hash_address

        assert hash_address("b@example.com") in text
        from smtpretry.logs.parse import read_records
        from smtpretry.logs.trace import select

        story = select(read_records([str(log)]), recipient="B@example.com")
        assert [r.event for r in story] == ["smtpretry.retry_scheduled", "smtpretry.recipient_deferred"]
    finally:
        del os.environ[env_key]
