"""The decision log in a real process: quiet by default, JSON lines on request."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from structlog.testing import capture_logs

from smtpretry import Mailer, RetryPolicy, SendResult, configure_logging
from smtpretry.cli.logs import logs_group
from tests.messages import message
from tests.servers import R250, R421_TOO_MANY, R422_OVER_QUOTA, ScriptedHandler, serve

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


# -- send_id: which events belong to which send ------------------------------------------------

FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=3)
BODY = b"Message-ID: <twice@test>\r\nSubject: x\r\n\r\nhi\r\n"
SEND_ID = re.compile(r"[0-9a-f]{12}")


def _send_ids(logs: Sequence[Mapping[str, Any]], message_id: str = "<twice@test>") -> list[str]:
    """The send_id of every event about ``message_id``, in order (KeyError if one has none)."""
    return [e["send_id"] for e in logs if e.get("message_id") == message_id]


async def test_every_event_of_a_send_carries_one_send_id_and_each_send_its_own() -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R421_TOO_MANY]})
    async with serve(handler) as port, Mailer("127.0.0.1", port, tls="none", policy=FAST) as m:
        with capture_logs() as first:
            one = await m.send(BODY, sender="s@example.org", recipients=["a@example.com", "b@example.com"])
        with capture_logs() as second:
            two = await m.send(BODY, sender="s@example.org", recipients=["a@example.com", "b@example.com"])
    assert one.delivered == two.delivered == ["a@example.com", "b@example.com"]
    assert handler.copies == Counter({"a@example.com": 2, "b@example.com": 2})
    # The first send retried b (421 at RCPT): several events, all with one id, the cap's move
    # that the 421 caused included.
    names = [e["event"] for e in first if e.get("message_id") == "<twice@test>"]
    assert names[:2] == ["smtpretry.cap_lowered", "smtpretry.retry_scheduled"]
    assert names[-1] == "smtpretry.send_completed"
    assert names.count("smtpretry.message_delivered") >= 1
    ids_one, ids_two = _send_ids(first), _send_ids(second)
    assert len(ids_one) == len(names) and len(ids_two) >= 2
    assert len(set(ids_one)) == 1 and len(set(ids_two)) == 1
    assert SEND_ID.fullmatch(ids_one[0]) and SEND_ID.fullmatch(ids_two[0])
    assert ids_one[0] != ids_two[0]  # the same Message-ID, sent twice: two sends


async def test_a_queue_resend_logs_a_new_send_id(tmp_path: Path) -> None:
    handler = ScriptedHandler(rcpt={"full@x": [R422_OVER_QUOTA]})
    now = [1_800_000_000.0]
    async with serve(handler) as port, Mailer(
        "127.0.0.1", port, tls="none", policy=FAST, queue=f"sqlite://{tmp_path}/q.db", clock=lambda: now[0]
    ) as m:
        with capture_logs() as first:
            result = await m.send(BODY, sender="s@example.org", recipients=["ok@example.com", "full@x"])
        assert list(result.deferred) == ["full@x"]
        now[0] += 301
        with capture_logs() as second:
            stats = await m.run_queue(once=True)
    assert (stats.entries, stats.delivered) == (1, 1)
    assert handler.copies == Counter({"ok@example.com": 1, "full@x": 1})
    about = [(e["event"], e["send_id"]) for e in first if e.get("message_id") == "<twice@test>"]
    assert {name for name, _ in about} == {
        "smtpretry.recipient_deferred", "smtpretry.message_delivered", "smtpretry.send_completed",
        "smtpretry.message_queued",
    }
    (sent,) = {sid for _, sid in about}  # message_queued too: it is written by that send
    resent = [(e["event"], e["send_id"]) for e in second if e.get("message_id") == "<twice@test>"]
    assert [name for name, _ in resent] == ["smtpretry.message_delivered", "smtpretry.send_completed"]
    (again,) = {sid for _, sid in resent}
    assert SEND_ID.fullmatch(sent) and SEND_ID.fullmatch(again) and sent != again


QUEUE_RESEND = """
    import asyncio
    from smtpretry import Mailer, RetryPolicy, configure_logging
    from tests.servers import ScriptedHandler, serve, R422_OVER_QUOTA

    now = [1_800_000_000.0]

    async def main():
        handler = ScriptedHandler(rcpt={{"full@x": [R422_OVER_QUOTA]}})
        async with serve(handler) as port:
            async with Mailer("127.0.0.1", port, tls="none", policy=RetryPolicy(backoff_base=0.001),
                              queue={queue!r}, clock=lambda: now[0]) as m:
                r = await m.send({body!r}, sender="s@example.org", recipients=["ok@example.com", "full@x"])
                assert list(r.deferred) == ["full@x"]
                now[0] += 301
                assert (await m.run_queue(once=True)).delivered == 1
    configure_logging(json=True, file={log!r})
    asyncio.run(main())
"""


def test_trace_shows_a_queue_resend_as_a_second_send(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    code = QUEUE_RESEND.format(queue=f"sqlite://{tmp_path}/q.db", body=BODY, log=str(log))
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    written = [json.loads(line) for line in log.read_text().splitlines()]
    ids = list(dict.fromkeys(r["send_id"] for r in written if r.get("message_id") == "<twice@test>"))
    assert len(ids) == 2  # the send, then the queue runner's resend

    runner = CliRunner()
    story = runner.invoke(logs_group, ["trace", "--json", "--message-id", "twice@test", str(log)])
    assert story.exit_code == 0, story.output
    records = [json.loads(x) for x in story.stdout.splitlines()]
    assert [(r["event"], r["send_id"]) for r in records] == [
        ("smtpretry.recipient_deferred", ids[0]),
        ("smtpretry.message_delivered", ids[0]),
        ("smtpretry.send_completed", ids[0]),
        ("smtpretry.message_queued", ids[0]),
        ("smtpretry.message_delivered", ids[1]),
        ("smtpretry.send_completed", ids[1]),
    ]

    table = runner.invoke(logs_group, ["trace", "--message-id", "twice@test", str(log)])
    assert table.exit_code == 0, table.output
    out = table.stdout
    assert out.splitlines()[0].strip() == "Story of message twice@test, 2 sends"
    heads = [out.index("send 1 of 2"), out.index("send 2 of 2")]
    assert out.index(ids[0]) > heads[0] and out.index(ids[1]) > heads[1] > out.index(ids[0])
    # The first send's story (through its queueing) comes before the second heading.
    assert heads[0] < out.index("recipient_deferred") < out.index("message_queued") < heads[1]
    assert out.rindex("message_delivered") > heads[1] and out.count("send_completed") == 2


# -- a second configure_logging() ---------------------------------------------------------------


@pytest.fixture
def logging_reset() -> Iterator[None]:
    """This test configures logging in-process: afterwards, close its file and reset structlog."""
    yield
    configure_logging(level="none")  # closes the file the last call opened
    structlog.reset_defaults()


async def test_sends_after_logging_is_reconfigured_return_and_log_to_the_new_file(
    tmp_path: Path, logging_reset: None
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    handler = ScriptedHandler(rcpt=[R250, R250, R421_TOO_MANY] * 8)  # 421 to every third RCPT
    results: list[SendResult | BaseException] = []
    async with serve(handler) as port, Mailer("127.0.0.1", port, tls="none", policy=FAST) as m:
        configure_logging(json=True, file=first)
        results.append(await m.send(message("r0@example.com", msgid="<m0@test>")))
        configure_logging(json=True, file=second)
        for i in range(1, 8):
            try:
                results.append(await m.send(message(f"r{i}@example.com", msgid=f"<m{i}@test>")))
            except Exception as exc:  # what the defect did: the send raised
                results.append(exc)
    assert [type(r).__name__ for r in results] == ["SendResult"] * 8
    delivered = [r.delivered for r in results if isinstance(r, SendResult)]
    assert delivered == [[f"r{i}@example.com"] for i in range(8)]
    # At the server: each recipient got its one copy.
    assert handler.copies == Counter({f"r{i}@example.com": 1 for i in range(8)})
    written = [json.loads(line) for line in second.read_text().splitlines()]
    # Everything after the second call is in the second file, the cap's moves included.
    assert {r["message_id"] for r in written if "message_id" in r} == {f"<m{i}@test>" for i in range(1, 8)}
    assert "smtpretry.cap_lowered" in {r["event"] for r in written}
    assert sum(r["event"] == "smtpretry.send_completed" for r in written) == 7
    before = [json.loads(line) for line in first.read_text().splitlines()]
    assert {r.get("message_id") for r in before if r["event"] == "smtpretry.send_completed"} == {"<m0@test>"}
