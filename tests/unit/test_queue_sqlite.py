"""The SQLite queue on real files under tmp_path: put/merge, claim and leases,
update, expiry, migrations, file modes, encryption at rest, and the errors
(corrupt, locked, wrong key, bad URL) as one-line QueueErrors.

The Queue contract tests (put/get, merge, claim, leases, update, expiry,
retry) take ``make_queue`` and run against every backend: SQLite, and Redis
(a private redis-server, tests/redis_server.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import sqlite3
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from smtpretry import QueueError
from smtpretry.queue import Destination, PendingRecipient, QueueEntry, default_queue_path, open_queue
from smtpretry.queue.crypto import KEY_ENV, MessageCipher, generate_key
from smtpretry.queue.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteQueue
from tests.unit.conftest import MakeQueue

NOW = 1_800_000_000.0
BODY = b"Subject: hi\r\n\r\nTOP-SECRET-BODY-TEXT the queue must never hold in clear\r\n"
DEST = Destination("mx.example.net", 25, "starttls")


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def rcpt(address: str, at: float = NOW, **kw: object) -> PendingRecipient:
    kw.setdefault("code", 422)
    kw.setdefault("enhanced", "4.2.2")
    kw.setdefault("text", "Mailbox over quota")
    kw.setdefault("phase", "rcpt")
    kw.setdefault("category", "mailbox_full")
    kw.setdefault("action", "defer")
    kw.setdefault("deferrals", 1)
    return PendingRecipient(address, at, first_attempt_at=NOW - 10, **kw)  # type: ignore[arg-type]


def entry(key: str = "k1", *recipients: PendingRecipient, data: bytes = BODY,
          expires_at: float = NOW + 86400) -> QueueEntry:
    recipients = recipients or (rcpt("a@example.com"),)
    return QueueEntry(
        key=key, destination=DEST, sender="s@example.org", message_id=f"<{key}@test>",
        recipients=recipients, created_at=NOW - 10,
        next_attempt_at=min(r.next_attempt_at for r in recipients), expires_at=expires_at, data=data,
    )


async def test_put_and_get_round_trip_with_the_message_decrypted(make_queue: MakeQueue) -> None:
    q = make_queue()
    entry_id = await q.put(entry())
    got = await q.get(entry_id)
    assert got.data == BODY
    assert got.recipients == (rcpt("a@example.com"),)
    assert (got.destination, got.sender, got.message_id) == (DEST, "s@example.org", "<k1@test>")
    assert (got.created_at, got.next_attempt_at, got.expires_at, got.attempts) == (
        NOW - 10, NOW, NOW + 86400, 0
    )
    listed = await q.entries()
    assert [e.id for e in listed] == [entry_id] and listed[0].data is None
    await q.close()


async def test_a_routers_entry_keeps_its_route_domain_and_provider(make_queue: MakeQueue) -> None:
    routed = Destination("a.test", 25, "opportunistic", None, "default", "a.test", "mx:.p.test")
    q = make_queue()
    first = await q.put(dataclasses.replace(entry("r1"), destination=routed))
    plain = await q.put(entry("r2"))
    got = await q.get(first)
    assert got.destination == routed and got.destination.is_mx
    assert got.destination.describe() == "a.test by MX (route default, opportunistic, port 25)"
    assert (await q.get(plain)).destination == DEST and not DEST.is_mx  # a Mailer's, as before
    [claimed] = await q.claim(owner="o", now=NOW, lease_s=30, limit=10, destination="a.test:25")
    assert claimed.id == first and claimed.destination == routed
    assert {e.id: e.destination for e in await q.entries()} == {first: routed, plain: DEST}
    await q.close()


def test_the_entries_of_two_routed_domains_of_one_message_do_not_merge() -> None:
    from smtpretry.envelope import Envelope
    from smtpretry.queue.base import entry_key

    env = Envelope("s@example.org", ("a@a.test",), BODY, "<m@test>", False, False)
    a = Destination("a.test", 25, "opportunistic", None, "default", "a.test")
    b = Destination("b.test", 25, "opportunistic", None, "default", "b.test")
    assert len({entry_key(a, env), entry_key(b, env), entry_key(DEST, env)}) == 3
    # A Mailer's entry keeps the key it had before routes existed.
    assert entry_key(DEST, env) == entry_key(Destination("mx.example.net", 25, "starttls"), env)


async def test_files_are_private_and_the_body_is_never_in_clear(db: Path) -> None:
    q = SQLiteQueue(db)
    await q.put(entry())
    await q.put(entry("k2", rcpt("b@example.com")))
    for path in (db, db.parent / "queue.key", *db.parent.glob("queue.db-*")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    on_disk = b"".join(p.read_bytes() for p in db.parent.glob("queue.db*"))
    assert b"TOP-SECRET-BODY-TEXT" not in on_disk
    assert b"a@example.com" in on_disk  # the envelope is readable, for `queue list`
    await q.close()
    # Closing checkpoints the WAL into the main file: still no clear text.
    assert b"TOP-SECRET-BODY-TEXT" not in db.read_bytes()


async def test_the_key_comes_from_the_environment_when_set(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, generate_key())
    q = SQLiteQueue(db)
    entry_id = await q.put(entry())
    assert (await q.get(entry_id)).data == BODY
    assert not (db.parent / "queue.key").exists()
    await q.close()


async def test_a_wrong_key_is_one_clear_error_at_open(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q = SQLiteQueue(db)
    await q.put(entry())
    await q.close()
    monkeypatch.setenv(KEY_ENV, generate_key())
    with pytest.raises(QueueError, match="cannot decrypt .* key from SMTPRETRY_QUEUE_KEY"):
        await SQLiteQueue(db).entries()
    monkeypatch.setenv(KEY_ENV, "not a key")
    with pytest.raises(QueueError, match="SMTPRETRY_QUEUE_KEY: not a queue key"):
        await SQLiteQueue(db).entries()


async def test_deferrals_of_one_message_merge_into_one_entry(make_queue: MakeQueue) -> None:
    q = make_queue()
    first = await q.put(entry("k", rcpt("a@example.com", NOW + 300), rcpt("b@example.com", NOW + 300)))
    later = rcpt("b@example.com", NOW + 900, code=450, enhanced=None, text="later")
    second = await q.put(entry("k", later, rcpt("c@example.com", NOW + 100)))
    assert second == first
    [merged] = await q.entries()
    assert {r.address: r for r in merged.recipients} == {
        "a@example.com": rcpt("a@example.com", NOW + 300),
        "b@example.com": later,
        "c@example.com": rcpt("c@example.com", NOW + 100),
    }
    assert merged.next_attempt_at == NOW + 100
    await q.close()


async def test_claim_takes_due_entries_earliest_first_and_leases_them(make_queue: MakeQueue) -> None:
    q = make_queue()
    late = await q.put(entry("late", rcpt("a@example.com", NOW - 1)))
    early = await q.put(entry("early", rcpt("b@example.com", NOW - 5)))
    await q.put(entry("future", rcpt("c@example.com", NOW + 60)))
    claimed = await q.claim(owner="r1", now=NOW, lease_s=30, limit=10)
    assert [e.id for e in claimed] == [early, late]
    assert all(e.owner == "r1" and e.lease_until == NOW + 30 and e.data == BODY for e in claimed)
    assert await q.claim(owner="r2", now=NOW + 1, lease_s=30, limit=10) == []
    # The lease runs out (the runner died): another runner takes the entries.
    again = await q.claim(owner="r2", now=NOW + 31, lease_s=30, limit=1)
    assert [e.id for e in again] == [early]
    other = make_queue()  # a second connection sees the same leases
    assert [e.id for e in await other.claim(owner="r3", now=NOW + 31, lease_s=30, limit=10)] == [late]
    await q.close()
    await other.close()


async def test_a_claim_says_when_the_previous_lease_ran_out_unreleased(make_queue: MakeQueue) -> None:
    q = make_queue()
    a = await q.put(entry("a"))
    b = await q.put(entry("b", rcpt("b@example.com")))
    first = await q.claim(owner="r1", now=NOW, lease_s=5, limit=10)
    assert [e.interrupted for e in first] == [False, False]  # never held before
    await q.release([b], owner="r1")  # r1 gives b back; a it keeps, and dies
    again = await q.claim(owner="r2", now=NOW + 6, lease_s=5, limit=10)
    assert {e.id: e.interrupted for e in again} == {a: True, b: False}
    await q.update(a, owner="r2", remove=(), defer=[rcpt("a@example.com", NOW + 7)], now=NOW + 6)
    after_update = await q.claim(owner="r3", now=NOW + 20, lease_s=5, limit=10)
    assert {e.id: e.interrupted for e in after_update} == {a: False, b: True}  # r2 never let b go
    await q.close()


async def test_claim_for_one_destination(make_queue: MakeQueue) -> None:
    q = make_queue()
    await q.put(entry("x"))
    other = dataclasses.replace(entry("y"), destination=Destination("127.0.0.1", 2525, "none"))
    wanted = await q.put(other)
    claimed = await q.claim(owner="r", now=NOW, lease_s=5, limit=10, destination="127.0.0.1:2525")
    assert [e.id for e in claimed] == [wanted]
    await q.close()


async def test_renew_keeps_only_leases_still_held(make_queue: MakeQueue) -> None:
    q = make_queue()
    a = await q.put(entry("a"))
    b = await q.put(entry("b", rcpt("b@example.com")))
    await q.claim(owner="r1", now=NOW, lease_s=1, limit=10)
    assert await q.renew([a, b], owner="r1", now=NOW + 0.5, lease_s=1) == {a, b}
    assert await q.claim(owner="r2", now=NOW + 1.2, lease_s=1, limit=10) == []  # renewed to NOW + 1.5
    taken = await q.claim(owner="r2", now=NOW + 2, lease_s=1, limit=1)
    assert await q.renew([a, b], owner="r1", now=NOW + 2, lease_s=1) == {a, b} - {taken[0].id}
    await q.release([a, b], owner="r1")
    assert {e.id for e in await q.claim(owner="r3", now=NOW + 2, lease_s=1, limit=10)} == (
        {a, b} - {taken[0].id}
    )
    await q.close()


async def test_update_removes_done_recipients_keeps_deferred_and_deletes_when_empty(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()
    entry_id = await q.put(entry("k", rcpt("a@example.com"), rcpt("b@example.com"), rcpt("c@example.com")))
    await q.claim(owner="r1", now=NOW, lease_s=30, limit=1)
    # Meanwhile a new send of the same message defers d: merged, and kept by the update.
    await q.put(entry("k", rcpt("d@example.com", NOW + 50)))
    b_again = rcpt("b@example.com", NOW + 900, deferrals=2)  # type: ignore[arg-type]
    left = await q.update(entry_id, owner="r1", remove=["a@example.com", "c@example.com"],
                          defer=[b_again, rcpt("zz@example.com")], now=NOW)
    assert left is not None
    assert [r.address for r in left.recipients] == ["b@example.com", "d@example.com"]
    assert left.recipients[0] == b_again
    assert (left.next_attempt_at, left.attempts, left.owner, left.lease_until) == (NOW + 50, 1, None, 0.0)
    assert await q.update(entry_id, owner="r1", remove=["b@example.com", "d@example.com"], defer=[],
                          now=NOW) is None
    assert await q.entries() == []
    with pytest.raises(QueueError, match="no entry"):
        await q.get(entry_id)
    await q.close()


async def test_marking_flags_what_is_about_to_be_sent_until_an_update_records_it(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()
    entry_id = await q.put(entry("k", rcpt("a@example.com"), rcpt("b@example.com"), rcpt("c@example.com")))
    assert not await q.mark_sending(entry_id, owner="r1", recipients=["a@example.com"])  # not claimed
    await q.claim(owner="r1", now=NOW, lease_s=30, limit=1)
    assert not await q.mark_sending(entry_id, owner="r2", recipients=["a@example.com"])  # not r2's
    assert not await q.mark_sending("nope", owner="r1", recipients=["a@example.com"])
    assert all(not r.possible_duplicate for r in (await q.get(entry_id)).recipients)
    assert await q.mark_sending(entry_id, owner="r1", recipients=["a@example.com", "b@example.com"])
    flags = {r.address: r.possible_duplicate for r in (await q.get(entry_id)).recipients}
    assert flags == {"a@example.com": True, "b@example.com": True, "c@example.com": False}
    # A new deferral of the same message keeps the flag: a copy may be at the server.
    await q.put(entry("k", rcpt("b@example.com", NOW + 60)))
    [b] = [r for r in (await q.get(entry_id)).recipients if r.address == "b@example.com"]
    assert b.possible_duplicate
    # The update records the outcome: a is gone, b deferred with a fresh record, c untouched.
    left = await q.update(entry_id, owner="r1", remove=["a@example.com"],
                          defer=[rcpt("b@example.com", NOW + 300)], now=NOW)
    assert left is not None
    assert {r.address: r.possible_duplicate for r in left.recipients} == {
        "b@example.com": False, "c@example.com": False,
    }
    await q.close()


async def test_next_attempt_never_later_than_expiry_and_stats_count_expired(make_queue: MakeQueue) -> None:
    q = make_queue()
    entry_id = await q.put(entry("k", rcpt("a@example.com", NOW + 500), expires_at=NOW + 100))
    [e] = await q.entries()
    assert e.next_attempt_at == NOW + 100
    assert [c.id for c in await q.claim(owner="r", now=NOW + 100, lease_s=5, limit=5)] == [entry_id]
    s = await q.stats(now=NOW + 101)
    assert (s.entries, s.recipients, s.due, s.leased, s.expired) == (1, 1, 0, 1, 1)
    await q.close()


async def test_retry_makes_entries_and_their_recipients_due_now(make_queue: MakeQueue) -> None:
    q = make_queue()
    a = await q.put(entry("a", rcpt("a@example.com", NOW + 900), rcpt("b@example.com", NOW + 500)))
    await q.put(entry("b", rcpt("c@example.com", NOW + 900)))
    assert await q.retry(a, now=NOW) == 1
    got = await q.get(a)
    assert got.next_attempt_at == NOW and {r.next_attempt_at for r in got.recipients} == {NOW}
    assert await q.retry(None, now=NOW) == 2
    assert (await q.stats(now=NOW)).due == 2
    with pytest.raises(QueueError, match="no entry 'nope'"):
        await q.retry("nope", now=NOW)
    with pytest.raises(QueueError, match="no entry 'nope'"):
        await q.delete("nope")
    await q.delete(a)
    assert len(await q.entries()) == 1
    await q.close()


async def test_a_new_file_is_migrated_to_the_current_schema(db: Path) -> None:
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:  # an empty database at version 0
        conn.execute("PRAGMA user_version = 0")
    q = SQLiteQueue(db)
    await q.put(entry())
    await q.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM entries WHERE next_attempt_at <= 1 AND lease_until <= 1 "
            "ORDER BY next_attempt_at LIMIT 10"
        ))
    assert "entries_due" in plan


async def test_a_newer_schema_is_refused(db: Path) -> None:
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(QueueError, match="schema version 99 is newer"):
        await SQLiteQueue(db).entries()


async def test_a_corrupt_file_is_a_queue_error(db: Path) -> None:
    db.parent.mkdir()
    db.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(QueueError, match="not a queue database, or corrupt") as info:
        await SQLiteQueue(db).entries()
    assert "\n" not in str(info.value)


async def test_a_locked_file_is_a_queue_error(db: Path) -> None:
    q = open_queue(f"sqlite://{db}?busy_timeout=0.05")
    await q.put(entry())
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(QueueError, match="locked by another process"):
            await q.put(entry("k2", rcpt("b@example.com")))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await q.put(entry("k2", rcpt("b@example.com")))
    await q.close()


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q = open_queue(f"sqlite://{tmp_path}/q.db")
    assert isinstance(q, SQLiteQueue) and q.path == tmp_path / "q.db"
    assert q.url == f"sqlite://{tmp_path}/q.db"
    assert isinstance(q2 := open_queue(str(tmp_path / "p.db")), SQLiteQueue) and q2.path == tmp_path / "p.db"
    assert open_queue("sqlite:rel/q.db").path == Path("rel/q.db")  # type: ignore[attr-defined]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_queue_path() == tmp_path / "xdg" / "smtpretry" / "queue.db"
    assert open_queue().path == tmp_path / "xdg" / "smtpretry" / "queue.db"  # type: ignore[attr-defined]
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_queue_path() == Path.home() / ".local" / "state" / "smtpretry" / "queue.db"
    with pytest.raises(QueueError, match="set SMTPRETRY_QUEUE_KEY") as info:
        open_queue("redis://user:hunter2@localhost:6379/0")
    assert "hunter2" not in str(info.value)
    with pytest.raises(QueueError, match="unknown scheme 'mysql'"):
        open_queue("mysql://localhost/q")
    with pytest.raises(QueueError, match="no database path"):
        open_queue("sqlite://")
    with pytest.raises(QueueError, match="busy_timeout"):
        open_queue(f"sqlite://{tmp_path}/q.db?busy_timeout=soon")


async def test_a_queue_opened_without_create_never_creates_anything(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "q.db"
    for url in (str(missing), f"sqlite://{missing}"):
        q = open_queue(url, create=False)
        for call in (q.entries(), q.stats(now=NOW), q.get("x"), q.retry(None, now=NOW)):
            with pytest.raises(QueueError) as info:
                await call
            assert str(info.value) == f"no queue at {missing}"
    assert list(tmp_path.iterdir()) == []  # no directory, no database, no key
    made = SQLiteQueue(tmp_path / "q.db")
    await made.put(entry())
    await made.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    existing = open_queue(tmp_path / "q.db", create=False)
    assert [e.key for e in await existing.entries()] == ["k1"]  # an existing queue opens as ever
    await existing.close()
    (tmp_path / "queue.key").unlink()
    with pytest.raises(QueueError, match="no queue key here, and SMTPRETRY_QUEUE_KEY is not set"):
        await SQLiteQueue(tmp_path / "q.db", create=False).entries()
    assert not (tmp_path / "queue.key").exists()  # a lost key is not replaced by a new one
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(files) - {"queue.key"})


async def test_an_unwritable_place_is_a_queue_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "file"
        blocked.write_text("x")
        path = blocked / "queue.db"  # a directory that is a file: fails even for root
    else:
        tmp_path.chmod(0o500)
        path = tmp_path / "sub" / "queue.db"
    with pytest.raises(QueueError, match="cannot create the database"):
        await SQLiteQueue(path).entries()


def test_the_benchmark_runs_with_a_tiny_queue(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_queue", Path(__file__).resolve().parents[2] / "benchmarks" / "bench_queue.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    [row] = bench.main(["--sizes", "50", "--sample", "5"])
    assert row["size"] == 50 and "entries_due" in str(row["plan"])
    assert "claim100 p50 ms" in capsys.readouterr().out


# -- message bytes apart from what changes (schema 2) -----------------------------------------

# The schema as version 1 of this code created it, kept here as it was written in the
# field (MIGRATIONS[0] must never change: files exist that ran it).
V1_DDL = (
    """CREATE TABLE entries (
            id              TEXT PRIMARY KEY,
            key             TEXT NOT NULL UNIQUE,   -- merge key: destination, sender, message
            destination     TEXT NOT NULL,          -- Destination.key, host:port
            host            TEXT NOT NULL,
            port            INTEGER NOT NULL,
            tls             TEXT NOT NULL,
            profile         TEXT,
            sender          TEXT NOT NULL,
            message_id      TEXT,
            recipients      TEXT NOT NULL,          -- JSON list of PendingRecipient
            attempts        INTEGER NOT NULL DEFAULT 0,
            created_at      REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            expires_at      REAL NOT NULL,
            owner           TEXT,
            lease_until     REAL NOT NULL DEFAULT 0,
            data            BLOB NOT NULL           -- Fernet token; last, so scans skip it
        )""",
    "CREATE INDEX entries_due ON entries (next_attempt_at, lease_until)",
    "CREATE INDEX entries_destination_due ON entries (destination, next_attempt_at, lease_until)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
)

BIG = b"Subject: big\r\n\r\n" + os.urandom(30_000).hex().encode()  # 60 KB that do not compress


def make_v1_file(db: Path, rows: list[dict[str, object]]) -> MessageCipher:
    """A queue file as version 1 wrote it (schema 1, the message in the entry's row),
    with its key file beside it."""
    db.parent.mkdir(mode=0o700, exist_ok=True)
    cipher = MessageCipher.for_directory(db.parent)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in V1_DDL:
            conn.execute(statement)
        check = cipher.encrypt(b"smtpretry queue key check")
        conn.execute("INSERT INTO meta VALUES ('key_check', ?)", (check,))
        for row in rows:
            conn.execute(
                "INSERT INTO entries (id, key, destination, host, port, tls, profile, sender, message_id, "
                "recipients, attempts, created_at, next_attempt_at, expires_at, owner, lease_until, data) "
                "VALUES (:id, :key, :destination, :host, :port, :tls, :profile, :sender, :message_id, "
                ":recipients, :attempts, :created_at, :next_attempt_at, :expires_at, :owner, :lease_until, "
                ":data)",
                {**row, "data": cipher.encrypt(row["data"])},  # type: ignore[arg-type]
            )
        conn.execute("PRAGMA user_version = 1")
    return cipher


def v1_row(n: int, data: bytes, **kw: object) -> dict[str, object]:
    recipients = [
        {"address": f"r{n}-{i}@example.com", "next_attempt_at": NOW - n, "deferrals": 1 + i,
         "first_attempt_at": NOW - 600, "code": 422, "enhanced": "4.2.2", "text": "Mailbox over quota",
         "phase": "rcpt", "failure": None, "category": "mailbox_full", "action": "defer"}
        for i in range(2)
    ]
    row: dict[str, object] = {
        "id": f"{n:016x}", "key": f"key{n}", "destination": "mx.example.net:25", "host": "mx.example.net",
        "port": 25, "tls": "starttls", "profile": "isp" if n % 2 else None, "sender": "s@example.org",
        "message_id": f"<v1-{n}@test>", "recipients": json.dumps(recipients), "attempts": n,
        "created_at": NOW - 600, "next_attempt_at": NOW - n, "expires_at": NOW + 86400, "owner": None,
        "lease_until": 0.0, "data": data,
    }
    row.update(kw)
    return row


def test_the_v1_schema_the_fixture_builds_is_the_first_migration() -> None:
    assert MIGRATIONS[0] == V1_DDL  # a migration that ran in the field is never edited


async def test_a_version_1_file_is_migrated_with_every_entry_and_message_intact(db: Path) -> None:
    bodies = {n: (BIG if n == 0 else BODY + str(n).encode()) for n in range(5)}
    rows = [v1_row(n, bodies[n]) for n in range(5)]
    rows[3].update(owner="old-runner", lease_until=NOW + 30)  # held by a runner when the file moved
    make_v1_file(db, rows)
    q = SQLiteQueue(db)
    listed = {e.id: e for e in await q.entries()}
    assert set(listed) == {f"{n:016x}" for n in range(5)}
    for n, row in enumerate(rows):
        got = await q.get(f"{n:016x}")
        assert got.data == bodies[n]
        assert dataclasses.replace(got, data=None) == listed[got.id]
        assert (got.key, got.destination, got.sender, got.message_id, got.attempts) == (
            row["key"], Destination("mx.example.net", 25, "starttls", row["profile"]),  # type: ignore[arg-type]
            "s@example.org", row["message_id"], n,
        )
        assert (got.created_at, got.next_attempt_at, got.expires_at, got.owner, got.lease_until) == (
            row["created_at"], row["next_attempt_at"], row["expires_at"], row["owner"], row["lease_until"]
        )
        assert [(r.address, r.deferrals, r.code, r.enhanced, r.first_attempt_at) for r in got.recipients] == [
            (f"r{n}-{i}@example.com", 1 + i, 422, "4.2.2", NOW - 600) for i in range(2)
        ]
        # The runner that held entry 3 (a version that marked nothing) may have been
        # sending its due recipients: they are marked, as a runner marks them now.
        assert [r.possible_duplicate for r in got.recipients] == [n == 3, n == 3]
    # The lease survived: the held entry is not claimable until it runs out.
    claimed = await q.claim(owner="new", now=NOW, lease_s=30, limit=10)
    assert sorted(e.id for e in claimed) == sorted(f"{n:016x}" for n in (0, 1, 2, 4))
    assert {e.id: e.data for e in claimed} == {f"{n:016x}": bodies[n] for n in (0, 1, 2, 4)}
    await q.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = [r[1] for r in conn.execute("PRAGMA table_info(entries)")]
        assert "data" not in columns and "recipients" in columns
        assert {"route", "domain", "provider"} <= set(columns)  # schema 3: a Router's entries
        assert conn.execute("SELECT count(*) FROM bodies").fetchone()[0] == 5
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    on_disk = b"".join(p.read_bytes() for p in db.parent.glob("queue.db*"))
    assert b"TOP-SECRET-BODY-TEXT" not in on_disk and BIG[20:60] not in on_disk  # still encrypted


def _wal_bytes_of(db: Path, operation: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[int]]:
    """How many bytes of WAL ``operation`` writes: the WAL is checkpointed and cut to
    nothing from another connection first, then measured after."""

    async def measure() -> int:
        with contextlib.closing(sqlite3.connect(db)) as side:
            busy, _, _ = side.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        await operation()
        wal = db.with_name(db.name + "-wal")
        return wal.stat().st_size if wal.exists() else 0

    return measure


async def test_claiming_renewing_marking_updating_and_merging_never_rewrite_the_message(db: Path) -> None:
    q = SQLiteQueue(db)
    people = [rcpt(f"r{i}@example.com") for i in range(3)]
    entry_id = await q.put(entry("big", *people, data=BIG))
    measured = {
        "claim": await _wal_bytes_of(db, lambda: q.claim(owner="r", now=NOW, lease_s=30, limit=10))(),
        "renew": await _wal_bytes_of(db, lambda: q.renew([entry_id], owner="r", now=NOW + 1, lease_s=30))(),
        "update": await _wal_bytes_of(db, lambda: q.update(
            entry_id, owner="r", remove=["r0@example.com"], defer=[rcpt("r1@example.com", NOW + 300)],
            now=NOW))(),
        "retry": await _wal_bytes_of(db, lambda: q.retry(None, now=NOW))(),
        "merge": await _wal_bytes_of(db, lambda: q.put(entry("big", rcpt("new@example.com"), data=BIG)))(),
        "mark": await _wal_bytes_of(db, lambda: q.mark_sending(
            entry_id, owner="r", recipients=["r1@example.com"]))(),
        "release": await _wal_bytes_of(db, lambda: q.release([entry_id], owner="r"))(),
    }
    # Before the message had a table of its own, a claim of this entry wrote 173 KB
    # (the row and its overflow pages, twice over); now each writes a few pages.
    assert all(size < len(BIG) // 3 for size in measured.values()), measured
    assert (await q.get(entry_id)).data == BIG
    await q.close()


async def test_a_delivered_entry_takes_its_message_with_it(db: Path) -> None:
    q = SQLiteQueue(db)
    a = await q.put(entry("a"))
    b = await q.put(entry("b", rcpt("b@example.com")))
    await q.claim(owner="r", now=NOW, lease_s=30, limit=10)
    assert await q.update(a, owner="r", remove=["a@example.com"], defer=[], now=NOW) is None
    await q.delete(b)
    await q.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM bodies").fetchone()[0] == 0
