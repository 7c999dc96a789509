"""The embedded queue: one SQLite file, shared by any number of senders and runners.

This is the only module that imports ``sqlite3``. The file is opened in WAL
mode with ``synchronous=FULL``, so a write is on disk when its coroutine
returns, and readers never wait for the writer. Every write is one
``BEGIN IMMEDIATE`` transaction: two runners on one file claim disjoint
entries, and a process killed at any instant leaves the file consistent.
Message bytes are stored as Fernet tokens (``crypto.py``), never in clear.

Each message's bytes are written once, in ``bodies``, apart from what changes
(``entries``: the lease, the recipients, the attempts). Claiming, renewing,
marking and updating an entry rewrite only its small row: a claim of a 60 KB
message writes a few pages of WAL, not the message again.

A full disk is survived by keeping the WAL short: it is checkpointed into
the database file once it holds ``WAL_CHECKPOINT_PAGES`` pages, not at
SQLite's default of 1000 (4 MB). With the default, a queue of a few MB lived
mostly in the WAL (the database file of a queue filled to a full disk was
4 KB, its WAL 3 MB), and after a disk-full no checkpoint could run, for it
needs room to write those pages into the database file: the WAL could never
start over, so every write needed new room at its end, and each runner's
writes soon used up whatever had been freed. Checkpointed every few pages,
the database file is never more than a few pages short of its whole size,
the WAL starts over again and again within the room it already has, and a
write needs new room only for what it adds. So, after a disk-full, freeing
about one entry's size is enough for runners to go on: their writes are
small, and deleting a delivered entry gives its pages to the next message.

The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS[i]`` takes
a file from version ``i`` to ``i + 1``, all in one transaction at open, and a
file newer than this code is refused rather than misread.

Each call runs in a worker thread (``asyncio.to_thread``) and holds the
connection's lock only for its own statements, so the event loop never waits
for the disk or for another process's lock (up to ``busy_timeout`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import QueueError
from . import entry
from .base import (
    Destination,
    PendingRecipient,
    QueueEntry,
    QueueStats,
    Selection,
    Suspension,
    in_force,
    selection_of,
)
from .crypto import MessageCipher

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "WAL_CHECKPOINT_PAGES", "SQLiteQueue"]

T = TypeVar("T")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: entries, and the due index the runners' claim walks.
    (
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
        # claim: next_attempt_at <= now AND lease_until <= now, earliest first,
        # answered from the index alone.
        "CREATE INDEX entries_due ON entries (next_attempt_at, lease_until)",
        "CREATE INDEX entries_destination_due ON entries (destination, next_attempt_at, lease_until)",
        # A token of a known text: a wrong key is found at open, not at the first resend.
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    ),
    # 2: message bytes in their own table, written once. In the entry's row, every
    # claim, renewal and update rewrote them (SQLite rewrites a changed row whole).
    (
        """CREATE TABLE bodies (
            id   TEXT PRIMARY KEY,                  -- the entry's id
            data BLOB NOT NULL                      -- Fernet token
        )""",
        "INSERT INTO bodies (id, data) SELECT id, data FROM entries",
        "ALTER TABLE entries DROP COLUMN data",
        # Runners from now on mark what they send before sending (possible_duplicate).
        # One of an older version may have been sending what it held: mark that too.
        """UPDATE entries SET recipients = (
            SELECT json_group_array(CASE
                WHEN json_extract(r.value, '$.next_attempt_at') <= entries.lease_until
                THEN json_set(r.value, '$.possible_duplicate', json('true'))
                ELSE json(r.value) END)
            FROM json_each(entries.recipients) AS r
        ) WHERE owner IS NOT NULL""",
    ),
    # 3: the route and domain of a Router's entry, and the provider (limit key) it was
    # deferred under: an MX route's entry is resent by looking its domain up again.
    (
        "ALTER TABLE entries ADD COLUMN route TEXT",
        "ALTER TABLE entries ADD COLUMN domain TEXT",
        "ALTER TABLE entries ADD COLUMN provider TEXT",
    ),
    # 4: an operator's hold on an entry (never claimed while held), and destinations
    # suspended for a while, kept here so that every process on this file sees them.
    (
        "ALTER TABLE entries ADD COLUMN held INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE suspensions (
            key        TEXT PRIMARY KEY,            -- host:port, a host, or a limit key (mx:.google.com)
            until      REAL NOT NULL,               -- epoch seconds
            reason     TEXT NOT NULL DEFAULT '',    -- the operator's note
            created_at REAL NOT NULL
        )""",
    ),
    # To change the schema, append a tuple of statements here (never edit one
    # above: files in the field have run it). Each runs once, in order, in the
    # transaction that opens a file of an older version.
)
SCHEMA_VERSION = len(MIGRATIONS)

# Checkpoint once the WAL holds this many pages of 4 KB (see the module's
# docstring). A claim, a renewal or an update writes 1 to 5.
WAL_CHECKPOINT_PAGES = 16

_KEY_CHECK = b"smtpretry queue key check"

_COLUMNS = (
    "id, key, host, port, tls, profile, sender, message_id, recipients, attempts, "
    "created_at, next_attempt_at, expires_at, owner, lease_until, route, domain, provider, held"
)
_BODY_AT = len(_COLUMNS.split(","))  # the message's place in a row of _WITH_BODY
_WITH_BODY = ", ".join(f"e.{c.strip()}" for c in _COLUMNS.split(",")) + ", b.data"


class SQLiteQueue:
    """The :class:`~smtpretry.queue.Queue` in one SQLite file.

    :param path: the database file; it and its directory are created (0600,
        0700) when missing
    :param busy_timeout: seconds to wait for another process's lock before
        :class:`QueueError`
    :param cipher: encrypts message bytes; by default the key from
        ``SMTPRETRY_QUEUE_KEY`` or ``queue.key`` beside the file
    :param create: create the file, its directory and its key when missing
        (the default); with ``False``, a missing file is a :class:`QueueError`
        (``no queue at PATH``) and nothing is created: for commands that only
        read or edit an existing queue

    Nothing is opened until the first call.

    .. versionadded:: 0.2
    .. versionchanged:: 0.5 ``create``
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0,
        cipher: MessageCipher | None = None, create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.create = create
        self._cipher = cipher
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return "sqlite:///" + str(self.path.absolute()).lstrip("/")

    def __repr__(self) -> str:
        return f"SQLiteQueue({str(self.path)!r})"

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            try:
                return fn(self._connection(), *args)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> QueueError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return QueueError(
                f"queue {self.path}: the database is locked by another process "
                f"(waited {self.busy_timeout:g} s)"
            )
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text
        ):
            return QueueError(f"queue {self.path}: not a queue database, or corrupt ({text})")
        return QueueError(f"queue {self.path}: {text}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self.create:
            self._create_file()
        elif not self.path.is_file():
            # A command that only reads or edits: a mistyped path is an error,
            # never a new empty queue (nor a new directory or key).
            raise QueueError(f"no queue at {self.path.absolute()}")
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self._migrate(conn)
            # Opening an existing queue: a file that is not a queue says so before its
            # key is asked for.
            if self._cipher is None:
                self._cipher = MessageCipher.for_directory(self.path.parent, create=False)
            self._check_key(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _create_file(self) -> None:
        """The directory, then the key, then the file: a process that finds the file (one
        waiting for the queue to appear, which creates nothing) finds its key too."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueError(f"queue {self.path}: cannot create the database: {exc.strerror}") from exc
        if self._cipher is None:
            self._cipher = MessageCipher.for_directory(self.path.parent)
        try:
            # Create the file ourselves, private: SQLite would use the umask, and
            # gives its -wal and -shm files the mode of the database file.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as exc:
            raise QueueError(f"queue {self.path}: cannot create the database: {exc.strerror}") from exc

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._transaction(conn):
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise QueueError(
                    f"queue {self.path}: schema version {version} is newer than this smtpretry "
                    f"understands ({SCHEMA_VERSION}); upgrade smtpretry"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_key(self, conn: sqlite3.Connection) -> None:
        assert self._cipher is not None
        with self._transaction(conn):
            row = conn.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('key_check', ?)",
                    (self._cipher.encrypt(_KEY_CHECK),),
                )
                return
        self._cipher.decrypt(row[0], what=f"queue {self.path}")

    def _entry(self, row: sqlite3.Row | tuple[Any, ...], data: bytes | None = None) -> QueueEntry:
        (id_, key, host, port, tls, profile, sender, message_id, recipients, attempts,
         created_at, next_attempt_at, expires_at, owner, lease_until, route, domain, provider,
         held) = row[:_BODY_AT]
        if data is not None:
            assert self._cipher is not None
            data = self._cipher.decrypt(data, what=f"queue entry {id_}")
        return QueueEntry(
            id=id_, key=key, destination=Destination(host, port, tls, profile, route, domain, provider),
            sender=sender,
            message_id=message_id, recipients=entry.decode_recipients(recipients), attempts=attempts,
            created_at=created_at, next_attempt_at=next_attempt_at, expires_at=expires_at,
            owner=owner, lease_until=lease_until, data=data, held=bool(held),
        )

    def _with_bodies(self, conn: sqlite3.Connection, where: str, args: Sequence[Any]) -> list[QueueEntry]:
        rows = conn.execute(
            f"SELECT {_WITH_BODY} FROM entries e JOIN bodies b ON b.id = e.id WHERE {where} "
            "ORDER BY e.next_attempt_at",
            args,
        ).fetchall()
        return [self._entry(row, row[_BODY_AT]) for row in rows]

    @property
    def _where(self) -> str:
        return f"queue {self.path}"

    def _selected(self, conn: sqlite3.Connection, selection: Selection) -> list[QueueEntry]:
        """The entries ``selection`` selects (without their message), by ``next_attempt_at``.
        What SQL can filter it filters; :func:`entry.select` has the last word."""
        where: list[str] = []
        args: list[Any] = []
        if selection.ids:
            # Every id that starts like one typed: enough to tell a unique prefix from an
            # ambiguous one. Ids are lower-case hex, so the range is the prefix's.
            spans = []
            for typed in selection.ids:
                low = typed.strip().lower()
                spans.append("(id >= ? AND id < ?)")
                args += [low, low + "\U0010ffff"]
            where.append("(" + " OR ".join(spans) + ")")
        elif selection.destination is not None and ":" not in selection.destination:
            where.append("host = ? COLLATE NOCASE")
            args.append(selection.destination.strip().rstrip("."))
        if not selection.ids:
            if selection.created_before is not None:
                where.append("created_at <= ?")
                args.append(selection.created_before)
            if selection.held is not None:
                where.append("held = ?")
                args.append(int(selection.held))
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM entries {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY next_attempt_at",
            args,
        ).fetchall()
        return entry.select((self._entry(r) for r in rows), selection, where=self._where)

    # -- the Queue protocol --------------------------------------------------------------------

    async def put(self, entry: QueueEntry, /) -> str:
        if not entry.recipients:
            raise QueueError("queue: an entry needs at least one recipient")
        if entry.data is None:
            raise QueueError("queue: an entry needs its message bytes")
        return await self._call(self._put, entry)

    def _put(self, conn: sqlite3.Connection, new: QueueEntry) -> str:
        with self._transaction(conn):
            return self._put_one(conn, new)

    def _put_one(self, conn: sqlite3.Connection, new: QueueEntry) -> str:
        assert self._cipher is not None and new.data is not None
        row = conn.execute(
            "SELECT id, recipients, created_at, expires_at FROM entries WHERE key = ?", (new.key,)
        ).fetchone()
        if row is not None:
            entry_id, held, created_at, expires_at = row
            m = entry.merge(entry.decode_recipients(held), new, created_at=created_at,
                            expires_at=expires_at)
            conn.execute(
                "UPDATE entries SET recipients = ?, created_at = ?, expires_at = ?, "
                "next_attempt_at = ? WHERE id = ?",
                (entry.encode_recipients(m.recipients), m.created_at, m.expires_at,
                 m.next_attempt_at, entry_id),
            )
            return str(entry_id)
        entry_id = secrets.token_hex(8)
        d = new.destination
        conn.execute(
            "INSERT INTO entries (id, key, destination, host, port, tls, profile, sender, "
            "message_id, recipients, attempts, created_at, next_attempt_at, expires_at, "
            "route, domain, provider) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
            (entry_id, new.key, d.key, d.host, d.port, d.tls, d.profile, new.sender,
             new.message_id, entry.encode_recipients(new.recipients), new.created_at,
             entry.next_attempt(new.recipients, new.expires_at), new.expires_at,
             d.route, d.domain, d.provider),
        )
        conn.execute(
            "INSERT INTO bodies (id, data) VALUES (?, ?)", (entry_id, self._cipher.encrypt(new.data))
        )
        return entry_id

    async def put_many(self, entries: Sequence[QueueEntry], /) -> list[str]:
        """``put`` each entry, all in one transaction (for imports and benchmarks)."""
        return await self._call(self._put_many, entries)

    def _put_many(self, conn: sqlite3.Connection, entries: Sequence[QueueEntry]) -> list[str]:
        with self._transaction(conn):
            return [self._put_one(conn, e) for e in entries]

    async def claim(
        self, *, owner: str, now: float, lease_s: float, limit: int, destination: str | None = None
    ) -> list[QueueEntry]:
        if limit < 1:
            return []
        return await self._call(self._claim, owner, now, lease_s, limit, destination)

    def _claim(
        self, conn: sqlite3.Connection, owner: str, now: float, lease_s: float, limit: int,
        destination: str | None,
    ) -> list[QueueEntry]:
        where = "next_attempt_at <= ? AND lease_until <= ? AND held = 0"
        args: list[Any] = [now, now]
        if destination is not None:
            where = "destination = ? AND " + where
            args.insert(0, destination)
        with self._transaction(conn):
            found = conn.execute(
                f"SELECT id, owner FROM entries WHERE {where} ORDER BY next_attempt_at LIMIT ?",
                (*args, limit),
            ).fetchall()
            if not found:
                return []
            ids = [r[0] for r in found]
            # An update or a release clears the owner: one still set lost its lease.
            interrupted = {r[0] for r in found if r[1] is not None}
            marks = ",".join("?" * len(ids))
            # Only the small row changes: the message stays where it was written.
            conn.execute(
                f"UPDATE entries SET owner = ?, lease_until = ? WHERE id IN ({marks})",
                (owner, now + lease_s, *ids),
            )
            claimed = self._with_bodies(conn, f"e.id IN ({marks})", ids)
        return [dataclasses.replace(e, interrupted=True) if e.id in interrupted else e for e in claimed]

    async def renew(self, ids: Collection[str], /, *, owner: str, now: float, lease_s: float) -> set[str]:
        if not ids:
            return set()
        return await self._call(self._renew, list(ids), owner, now + lease_s)

    def _renew(self, conn: sqlite3.Connection, ids: list[str], owner: str, until: float) -> set[str]:
        marks = ",".join("?" * len(ids))
        with self._transaction(conn):
            rows = conn.execute(
                f"UPDATE entries SET lease_until = ? WHERE owner = ? AND id IN ({marks}) RETURNING id",
                (until, owner, *ids),
            ).fetchall()
        return {r[0] for r in rows}

    async def release(self, ids: Collection[str], /, *, owner: str) -> None:
        if ids:
            await self._call(self._release, list(ids), owner)

    def _release(self, conn: sqlite3.Connection, ids: list[str], owner: str) -> None:
        marks = ",".join("?" * len(ids))
        with self._transaction(conn):
            conn.execute(
                f"UPDATE entries SET owner = NULL, lease_until = 0 WHERE owner = ? AND id IN ({marks})",
                (owner, *ids),
            )

    async def mark_sending(self, entry_id: str, /, *, owner: str, recipients: Collection[str]) -> bool:
        return await self._call(self._mark_sending, entry_id, owner, list(recipients))

    def _mark_sending(
        self, conn: sqlite3.Connection, entry_id: str, owner: str, recipients: list[str]
    ) -> bool:
        with self._transaction(conn):
            row = conn.execute("SELECT owner, recipients FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is None or row[0] != owner:
                return False
            marked = entry.mark_sending(entry.decode_recipients(row[1]), recipients)
            conn.execute(
                "UPDATE entries SET recipients = ? WHERE id = ?", (entry.encode_recipients(marked), entry_id)
            )
        return True

    async def update(
        self, entry_id: str, /, *, owner: str, remove: Collection[str],
        defer: Sequence[PendingRecipient], now: float,
    ) -> QueueEntry | None:
        return await self._call(self._update, entry_id, owner, set(remove), list(defer))

    def _update(
        self, conn: sqlite3.Connection, entry_id: str, owner: str, remove: set[str],
        defer: list[PendingRecipient],
    ) -> QueueEntry | None:
        with self._transaction(conn):
            row = conn.execute(
                "SELECT recipients, expires_at FROM entries WHERE id = ?", (entry_id,)
            ).fetchone()
            if row is None:
                return None  # deleted meanwhile (by hand, or by a runner that took over)
            done = entry.apply_attempt(
                entry.decode_recipients(row[0]), remove=remove, defer=defer, expires_at=row[1]
            )
            if done.next_attempt_at is None:
                self._delete_in(conn, entry_id)
                return None
            conn.execute(
                "UPDATE entries SET recipients = ?, attempts = attempts + 1, next_attempt_at = ?, "
                "lease_until = CASE WHEN owner = ? THEN 0 ELSE lease_until END, "
                "owner = CASE WHEN owner = ? THEN NULL ELSE owner END WHERE id = ?",
                (entry.encode_recipients(done.recipients), done.next_attempt_at, owner, owner, entry_id),
            )
            got = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(got)

    @staticmethod
    def _delete_in(conn: sqlite3.Connection, entry_id: str) -> int:
        conn.execute("DELETE FROM bodies WHERE id = ?", (entry_id,))
        return conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,)).rowcount

    async def get(self, entry_id: str, /) -> QueueEntry:
        return await self._call(self._get, entry_id)

    def _get(self, conn: sqlite3.Connection, entry_id: str) -> QueueEntry:
        found = self._with_bodies(conn, "e.id = ?", (entry_id,))
        if not found:
            raise QueueError(f"queue {self.path}: no entry {entry_id!r}")
        return found[0]

    async def entries(
        self, *, limit: int | None = None, selection: Selection | None = None
    ) -> list[QueueEntry]:
        return await self._call(self._entries, limit, selection)

    def _entries(
        self, conn: sqlite3.Connection, limit: int | None, selection: Selection | None
    ) -> list[QueueEntry]:
        if selection is not None:
            found = self._selected(conn, selection)
            return found if limit is None else found[:limit]
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM entries ORDER BY next_attempt_at LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return [self._entry(row) for row in rows]

    async def retry(self, target: str | Selection | None, /, *, now: float) -> int:
        return await self._call(self._retry, selection_of(target), now)

    def _retry(self, conn: sqlite3.Connection, selection: Selection, now: float) -> int:
        with self._transaction(conn):
            chosen = [e for e in self._selected(conn, selection) if not e.held]
            for e in chosen:
                due = entry.made_due(e.recipients, now)
                conn.execute(
                    "UPDATE entries SET recipients = ?, next_attempt_at = ? WHERE id = ?",
                    (entry.encode_recipients(due), now, e.id),
                )
        return len(chosen)

    async def delete(self, target: str | Selection, /) -> int:
        return await self._call(self._delete, selection_of(target))

    def _delete(self, conn: sqlite3.Connection, selection: Selection) -> int:
        with self._transaction(conn):
            chosen = self._selected(conn, selection)
            for e in chosen:
                self._delete_in(conn, e.id)
        return len(chosen)

    async def hold(self, target: str | Selection, /, *, held: bool = True) -> int:
        return await self._call(self._hold, selection_of(target), held)

    def _hold(self, conn: sqlite3.Connection, selection: Selection, held: bool) -> int:
        with self._transaction(conn):
            chosen = [e.id for e in self._selected(conn, selection) if e.held != held]
            for entry_id in chosen:
                conn.execute("UPDATE entries SET held = ? WHERE id = ?", (int(held), entry_id))
        return len(chosen)

    async def stats(self, *, now: float, selection: Selection | None = None) -> QueueStats:
        return await self._call(self._stats, now, selection)

    def _stats(self, conn: sqlite3.Connection, now: float, selection: Selection | None) -> QueueStats:
        if selection is not None:
            return entry.stats_of(self._selected(conn, selection), now)
        row = conn.execute(
            "SELECT count(*), coalesce(sum(json_array_length(recipients)), 0), "
            "coalesce(sum(next_attempt_at <= ? AND lease_until <= ? AND held = 0), 0), "
            "coalesce(sum(lease_until > ?), 0), coalesce(sum(expires_at <= ?), 0), "
            "min(created_at), min(CASE WHEN held = 0 THEN next_attempt_at END), "
            "coalesce(sum(held), 0) FROM entries",
            (now, now, now, now),
        ).fetchone()
        return QueueStats(*row)

    async def suspend(self, suspension: Suspension, /) -> None:
        await self._call(self._suspend, suspension)

    def _suspend(self, conn: sqlite3.Connection, s: Suspension) -> None:
        with self._transaction(conn):
            conn.execute("DELETE FROM suspensions WHERE until <= ?", (s.created_at,))
            conn.execute(
                "INSERT INTO suspensions (key, until, reason, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET until = excluded.until, reason = excluded.reason, "
                "created_at = excluded.created_at",
                (s.key, s.until, s.reason, s.created_at),
            )

    async def resume(self, key: str, /) -> Suspension | None:
        return await self._call(self._resume, key)

    def _resume(self, conn: sqlite3.Connection, key: str) -> Suspension | None:
        with self._transaction(conn):
            row = conn.execute(
                "DELETE FROM suspensions WHERE key = ? RETURNING key, until, reason, created_at", (key,)
            ).fetchone()
        return Suspension(*row) if row is not None else None

    async def suspensions(self, *, now: float) -> list[Suspension]:
        # A Mailer asks at every send: that must not create the queue its first deferral
        # would. A file that does not exist yet holds no suspension.
        if self._conn is None and not self.path.exists():
            return []
        return await self._call(self._suspensions, now)

    def _suspensions(self, conn: sqlite3.Connection, now: float) -> list[Suspension]:
        rows = conn.execute("SELECT key, until, reason, created_at FROM suspensions").fetchall()
        return in_force((Suspension(*r) for r in rows), now)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
