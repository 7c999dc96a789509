"""What an operator does to a queue, on every backend (SQLite and Redis): select entries by
id, unique id prefix and filters; hold and release them; delete and purge them; suspend a
destination where every process using the queue sees it. Plus the pure parts: which
destinations a key covers, and the id prefixes."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from smtpretry import QueueError
from smtpretry.queue import Destination, Selection, Suspension
from smtpretry.queue.base import covers
from smtpretry.queue.crypto import KEY_ENV
from smtpretry.queue.entry import resolve_ids
from smtpretry.queue.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteQueue
from tests.unit.conftest import MakeQueue
from tests.unit.test_queue_sqlite import BODY, NOW, entry, rcpt

OTHER = Destination("127.0.0.1", 2525, "none")


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


# -- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "host", "port", "limit_key", "expected"),
    [
        ("mx.example.net:25", "mx.example.net", 25, None, True),
        ("mx.example.net:25", "mx.example.net", 587, None, False),
        ("MX.Example.NET.", "mx.example.net", 587, None, True),  # a host: every port
        ("mx.example.net", "mx2.example.net", 25, None, False),
        ("mx:.google.com", "alt1.aspmx.l.google.com", 25, None, True),
        ("mx:google.com", "google.com", 25, None, True),
        ("mx:.google.com", "notgoogle.com", 25, None, False),
        ("domain:gmail.com", "gmail-smtp-in.l.google.com", 25, "domain:gmail.com", True),
        ("domain:gmail.com", "gmail-smtp-in.l.google.com", 25, None, False),
        ("mx:.google.com", "smtp.example.net", 25, "mx:.google.com", True),  # its limit key
    ],
)
def test_which_destinations_a_key_covers(key: str, host: str, port: int, limit_key: str | None,
                                         expected: bool) -> None:
    assert covers(key, host, port, limit_key) is expected


def test_ids_in_full_or_as_a_unique_prefix() -> None:
    known = ["ab12cd34ef56ab12", "ab99cd34ef56ab12", "ff00000000000000"]
    assert resolve_ids(["ff", "AB12", "ab99cd34ef56ab12", "ff0"], known, where="q") == [
        "ff00000000000000", "ab12cd34ef56ab12", "ab99cd34ef56ab12",
    ]
    with pytest.raises(QueueError, match=r"^q: entry ID prefix 'ab' is ambiguous: it names 2 entries "
                                         r"\(ab12cd34ef56ab12, ab99cd34ef56ab12\)$"):
        resolve_ids(["ab"], known, where="q")
    with pytest.raises(QueueError, match=r"^q: no entry 'abz'$"):
        resolve_ids(["abz"], known, where="q")
    with pytest.raises(QueueError, match="an empty entry ID"):
        resolve_ids([" "], known, where="q")


# -- selection --------------------------------------------------------------------------------


async def test_selection_by_ids_prefixes_and_filters(make_queue: MakeQueue) -> None:
    q = make_queue()
    a = await q.put(entry("a", rcpt("ann@example.com"), rcpt("bob@example.org")))
    b = await q.put(dataclasses.replace(entry("b", rcpt("cy@example.org")), destination=OTHER,
                                        sender="Bounces@Example.org", created_at=NOW - 7200))
    c = await q.put(entry("c", rcpt("dee@Example.COM")))

    async def ids(**kw: object) -> list[str]:
        return sorted(e.id for e in await q.entries(selection=Selection(**kw)))  # type: ignore[arg-type]

    assert await ids() == sorted([a, b, c])
    assert await ids(ids=(a[:6], c)) == sorted([a, c])
    assert await ids(destination="mx.example.net:25") == sorted([a, c])
    assert await ids(destination="mx.example.net:587") == []
    assert await ids(destination="127.0.0.1") == [b]  # a host: every port
    assert await ids(domain="example.org") == sorted([a, b])
    assert await ids(domain="example.com") == sorted([a, c])  # dee@Example.COM too
    assert await ids(recipient="BOB@example.org") == [a]
    assert await ids(sender="bounces@example.org") == [b]
    assert await ids(created_before=NOW - 3600) == [b]
    assert await ids(ids=(a,), domain="example.net") == []  # every condition must hold
    with pytest.raises(QueueError, match="no entry 'ffffffffffff'"):
        await q.entries(selection=Selection(ids=("ffffffffffff",)))
    s = await q.stats(now=NOW, selection=Selection(domain="example.org"))
    assert (s.entries, s.recipients) == (2, 3)
    await q.close()


async def test_an_ambiguous_prefix_is_an_error_on_every_backend(make_queue: MakeQueue) -> None:
    q = make_queue()
    made = [await q.put(entry(f"k{i}", rcpt(f"r{i}@example.com"))) for i in range(20)]
    # 20 ids over 16 first hex digits: one digit starts at least two of them.
    first, _ = Counter(i[0] for i in made).most_common(1)[0]
    with pytest.raises(QueueError, match=f"entry ID prefix '{first}' is ambiguous"):
        await q.entries(selection=Selection(ids=(first,)))
    with pytest.raises(QueueError, match="is ambiguous"):
        await q.delete(first)
    assert len(await q.entries()) == 20  # nothing was deleted
    await q.close()


# -- hold -------------------------------------------------------------------------------------


async def test_a_held_entry_is_never_claimed_not_even_after_retry_until_released(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()
    held = await q.put(entry("h", rcpt("a@example.com", NOW - 5)))
    free = await q.put(entry("f", rcpt("b@example.com", NOW - 5)))
    assert await q.hold(held[:5]) == 1
    assert await q.hold(held) == 0  # already held: nothing changed
    [got] = await q.entries(selection=Selection(held=True))
    assert got.id == held and got.held
    s = await q.stats(now=NOW)
    assert (s.entries, s.due, s.held) == (2, 1, 1)
    assert [e.id for e in await q.claim(owner="r", now=NOW, lease_s=5, limit=10)] == [free]
    await q.release([free], owner="r")
    assert await q.retry(None, now=NOW + 1) == 1  # the held one is left as it is
    assert await q.retry(held, now=NOW + 1) == 0
    # A new deferral of the same message merges into the held entry, which stays held.
    await q.put(entry("h", rcpt("c@example.com", NOW - 5)))
    assert (await q.get(held)).held
    assert [e.id for e in await q.claim(owner="r", now=NOW + 10, lease_s=5, limit=10)] == [free]
    await q.release([free], owner="r")
    assert await q.hold(Selection(held=True), held=False) == 1
    claimed = await q.claim(owner="r2", now=NOW + 20, lease_s=5, limit=10)
    assert {e.id: e.held for e in claimed} == {held: False, free: False}
    await q.close()


# -- delete and purge -------------------------------------------------------------------------


async def test_delete_by_selection_and_purge_by_age(make_queue: MakeQueue) -> None:
    q = make_queue()
    old = await q.put(dataclasses.replace(entry("old"), created_at=NOW - 10 * 86400))
    older = await q.put(dataclasses.replace(entry("older", rcpt("b@example.com")),
                                            created_at=NOW - 20 * 86400))
    young = await q.put(entry("young", rcpt("c@example.com")))
    assert await q.delete(Selection(created_before=NOW - 30 * 86400)) == 0
    assert await q.delete(Selection(created_before=NOW - 7 * 86400)) == 2
    assert [e.id for e in await q.entries()] == [young]
    with pytest.raises(QueueError, match=f"no entry '{old}'"):
        await q.delete(old)
    assert older not in {e.id for e in await q.entries()}
    assert await q.delete(young[:4]) == 1
    assert await q.entries() == []
    await q.close()


# -- suspensions ------------------------------------------------------------------------------


async def test_a_suspension_is_stored_in_the_queue_for_every_process_until_it_ends(
    make_queue: MakeQueue,
) -> None:
    q, other = make_queue(), make_queue()  # two handles: two processes on one queue
    gmail = Suspension("mx:.google.com", NOW + 3600, "421 4.7.0 [TSS04]", NOW)
    await q.suspend(Suspension("mx.example.net:25", NOW + 60, "", NOW))
    await q.suspend(gmail)
    assert await other.suspensions(now=NOW) == [Suspension("mx.example.net:25", NOW + 60, "", NOW), gmail]
    assert await other.suspensions(now=NOW + 60) == [gmail]  # the short one has ended
    longer = Suspension("mx:.google.com", NOW + 7200, "still throttled", NOW + 10)
    await other.suspend(longer)  # the same key again: replaced
    assert await q.suspensions(now=NOW + 61) == [longer]
    assert await q.resume("mx:.google.com") == longer
    assert await q.resume("mx:.google.com") is None
    assert await other.suspensions(now=NOW) == [Suspension("mx.example.net:25", NOW + 60, "", NOW)]
    # A new suspension drops those that have ended meanwhile.
    await q.suspend(Suspension("a.example:25", NOW + 500, "", NOW + 100))
    assert await q.resume("mx.example.net:25") is None
    await q.close()
    await other.close()


# -- the SQLite migration ---------------------------------------------------------------------


async def test_a_version_3_file_is_migrated_with_its_entries_kept_and_not_held(db: Path) -> None:
    q = SQLiteQueue(db)
    entry_id = await q.put(entry())
    await q.close()
    # Take the file back to version 3: what the release before holds and suspensions wrote.
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE entries DROP COLUMN held")
        conn.execute("DROP TABLE suspensions")
        conn.execute("PRAGMA user_version = 3")
    assert len(MIGRATIONS) == SCHEMA_VERSION == 4
    q = SQLiteQueue(db)
    got = await q.get(entry_id)
    assert (got.data, got.held) == (BODY, False)
    assert await q.hold(entry_id) == 1
    await q.suspend(Suspension("mx.example.net", NOW + 60, "", NOW))
    assert [s.key for s in await q.suspensions(now=NOW)] == ["mx.example.net"]
    await q.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
