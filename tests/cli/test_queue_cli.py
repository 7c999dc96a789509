"""`smtpretry queue ...` in-process through click's CliRunner, on real SQLite files."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from smtpretry.cli.queue import queue_group
from smtpretry.queue import Destination, PendingRecipient, QueueEntry
from smtpretry.queue.crypto import KEY_ENV
from smtpretry.queue.sqlite import SQLiteQueue
from tests.servers import ScriptedHandler, serve_threaded

NOW = 1_800_000_000.0
BODY = b"From: s@example.org\r\nSubject: x\r\n\r\nSECRET-BODY-TEXT\r\n"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("SMTPRETRY_QUEUE", raising=False)
    monkeypatch.delenv("SMTPRETRY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # never the user's own queue


def seed(db: Path, *, port: int = 2525, n: int = 2, at: float = NOW + 3600) -> list[str]:
    dest = Destination("127.0.0.1", port, "none")
    entries = [
        QueueEntry(
            key=f"k{i}", destination=dest, sender="s@example.org", message_id=f"<m{i}@test>",
            recipients=(PendingRecipient(
                f"r{i}@example.com", at, deferrals=1, first_attempt_at=NOW, code=422, enhanced="4.2.2",
                text="Mailbox over quota", phase="rcpt", category="mailbox_full", action="defer",
            ),),
            created_at=NOW, next_attempt_at=at, expires_at=max(at, time.time()) + 86400, data=BODY,
        )
        for i in range(n)
    ]

    async def put() -> list[str]:
        q = SQLiteQueue(db)
        try:
            return await q.put_many(entries)
        finally:
            await q.close()

    return asyncio.run(put())


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(queue_group, list(args))
    assert "Traceback" not in result.output + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_list_table_and_json(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    url = f"sqlite://{db}"
    ids = seed(db)
    code, out, _ = invoke("list", "--queue", url)
    assert code == 0
    for needle in (*ids, "127.0.0.1:2525 (none)", "r0@example.com", "422 Mailbox over quota"):
        assert needle in out
    code, out, _ = invoke("list", "--queue", url, "--json")
    listed = [json.loads(line) for line in out.splitlines()]  # JSON lines, one entry each
    assert [e["id"] for e in listed] == ids
    assert listed[0]["destination"] == {"host": "127.0.0.1", "port": 2525, "tls": "none", "profile": None}
    assert listed[0]["recipients"][0]["address"] == "r0@example.com"
    assert listed[0]["recipients"][0]["enhanced"] == "4.2.2"
    assert "data" not in listed[0] and "SECRET-BODY-TEXT" not in out


def test_show_never_prints_the_body(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    [entry_id] = seed(db, n=1)
    code, out, _ = invoke("show", entry_id, "--queue", str(db))
    assert code == 0
    assert f"id:           {entry_id}" in out and "pending recipients" in out and "r0@example.com" in out
    assert f"size:         {len(BODY)} bytes" in out
    shown = json.loads(invoke("show", entry_id, "--queue", str(db), "--json")[1])
    assert (shown["id"], shown["size"], shown["attempts"], shown["message_id"]) == (
        entry_id, len(BODY), 0, "<m0@test>"
    )
    assert "SECRET-BODY-TEXT" not in out + json.dumps(shown)


def test_retry_delete_and_stats(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    url = f"sqlite://{db}"
    a, b, c = seed(db, n=3)
    stats = json.loads(invoke("stats", "--queue", url, "--json")[1])
    assert (stats["entries"], stats["recipients"], stats["due"], stats["leased"]) == (3, 3, 0, 0)
    assert invoke("retry", a, "--queue", url)[1] == "1 entry due now (1 recipient)\n"
    assert json.loads(invoke("stats", "--queue", url, "--json")[1])["due"] == 1
    assert invoke("retry", "--all", "--queue", url)[1] == "3 entries due now (3 recipients)\n"
    deleted = invoke("delete", b, "--queue", url)[1]
    assert deleted == "deleted 1 entry (1 recipient will not get the message)\n"
    code, out, _ = invoke("stats", "--queue", url)
    assert code == 0 and "entries:      2" in out and "due now:      2" in out
    assert [json.loads(e)["id"] for e in invoke("list", "--queue", url, "--json")[1].splitlines()] == [a, c]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "no entry 'nope'"),
        (["delete", "nope"], "no entry 'nope'"),
        (["retry", "nope"], "no entry 'nope'"),
        (["retry"], "queue retry: give entry IDs, - (IDs on standard input), --all or a filter"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    seed(tmp_path / "q.db", n=1)
    code, out, err = invoke(*args, "--queue", f"sqlite://{tmp_path}/q.db")
    assert code == 2 and out == ""
    assert err.startswith("smtpretry: error: ") and message in err and err.count("\n") == 1


def test_bad_url_and_corrupt_file(tmp_path: Path) -> None:
    code, _, err = invoke("list", "--queue", "mysql://localhost/q")
    assert code == 2
    assert err == (
        "smtpretry: error: queue URL 'mysql://localhost/q': unknown scheme 'mysql' (expected sqlite)\n"
    )
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage " * 200)
    code, _, err = invoke("stats", "--queue", str(bad))
    assert code == 2 and "not a queue database, or corrupt" in err and err.count("\n") == 1


def test_default_path_is_under_the_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    default = tmp_path / "state" / "smtpretry" / "queue.db"
    code, _, err = invoke("stats")
    assert code == 2 and err == f"smtpretry: error: no queue at {default} (the default queue)\n"
    assert not (tmp_path / "state").exists()  # asking created nothing
    seed(default, n=1)
    code, out, _ = invoke("stats")
    assert code == 0 and "entries:      1" in out


def test_run_once_sends_the_due_entries(tmp_path: Path) -> None:
    handler = ScriptedHandler()
    db = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        seed(db, port=port, n=3, at=time.time() - 1)
        code, out, err = invoke("run", "--once", "--queue", str(db), "--concurrency", "2")
    assert (code, err) == (0, "")
    assert out == "entries: 3, delivered: 3, deferred: 0, failed: 0, expired: 0\n"
    assert handler.copies == Counter({f"r{i}@example.com": 1 for i in range(3)})
    assert json.loads(invoke("stats", "--queue", str(db), "--json")[1])["entries"] == 0
