"""The deferred queue in Redis, shared by worker processes on several hosts.

:class:`RedisQueue` keeps the guarantees of the SQLite queue:

- **Durable deferral.** A write has reached Redis when its coroutine returns.
  It is on disk only as far as Redis persists it: run Redis with
  ``appendonly yes`` and ``appendfsync always`` for the SQLite guarantee
  (``appendfsync everysec``, Redis's default, may lose the last second of
  deferrals on a power loss; RDB snapshots alone lose more). The test server
  runs with ``appendonly yes``.
- **Leases; one runner per entry at a time.** ``claim`` is one Lua script over
  the ``due`` sorted set (score ``next_attempt_at``): it leases entries whose
  ``lease_until`` has passed to one owner, atomically, so two runners never
  hold one entry. A runner that dies loses nothing: its entries are due again
  when the lease runs out. Times are the callers' clocks, as with SQLite.
- **Merge by entry key.** ``put`` finds the entry of the same message through
  ``k:<entry key>`` and merges recipients under ``WATCH``/``MULTI`` (retried
  when a claim or another put touched the entry meanwhile).
- **Bodies encrypted** with :class:`~smtpretry.queue.crypto.MessageCipher`.
  The key comes from ``SMTPRETRY_QUEUE_KEY`` and is required: there is no
  directory beside the store for a key file. A wrong key is found at the first
  call (``check`` holds a token of a known text).

Keys, under ``smtpretry:queue`` (``?prefix=`` in the URL changes it):

=================== ====== =====================================================
``e:<id>``           hash  one entry: ``meta`` (JSON: destination, sender, ...;
                           ``route``, ``domain``, ``provider`` for a Router's),
                           ``recipients`` (JSON), ``n``, ``attempts``,
                           ``created_at``, ``next_attempt_at``, ``expires_at``,
                           ``owner``, ``lease_until``, ``held`` (``1`` while
                           an operator holds it; absent or ``0`` otherwise)
``b:<id>``           str   the entry's message bytes (Fernet token), written
                           once when the entry is made, deleted with it
``k:<entry key>``    str   the id of the entry holding that message
``due``              zset  every entry id, scored by ``next_attempt_at``
``due:<host:port>``  zset  the same, per destination (``claim(destination=...)``)
``check``            str   the key-check token
``suspensions``      hash  destinations suspended by an operator: field the
                           key (``host:port``, a host, or a limit key such as
                           ``mx:.google.com``), value JSON ``{"until",
                           "reason", "created_at"}``; ended ones are dropped
                           at the next ``suspend``
=================== ====== =====================================================

A held entry stays in the ``due`` sets (they index every entry): the claim
script skips it. Every worker reads the one ``suspensions`` hash, so a
suspension made on one host holds on all of them.

The message lives apart from what changes (leases, recipients, attempts), so
claims, renewals and updates never write it again. Queues written before 0.4
kept it in the entry's hash as ``data``: such an entry is moved to the new
layout when it is met (claimed or read with its message), in one script, and
the other operations work on either layout meanwhile. One that a runner of
that version held until its lease ran out has its due recipients marked
``possible_duplicate`` when claimed, as a runner of this version marks what
it is about to send. Upgrade every worker of
one queue together: an older worker cannot read a message in ``b:<id>``.

Scripts name entry keys they compute, so this needs a single Redis (or a
Sentinel-managed primary), not Redis Cluster. When Redis cannot be reached
every call raises :class:`~smtpretry.errors.BackendError`, a
:class:`QueueError`.

.. versionadded:: 0.3
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import urllib.parse
from collections.abc import Collection, Sequence
from typing import Any

from redis.exceptions import RedisError, WatchError

from .._redis import backend_error, connect, redacted
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
from .crypto import KEY_ENV, MessageCipher

__all__ = ["RedisQueue"]

_KEY_CHECK = b"smtpretry queue key check"
_HEAD = ("meta", "recipients", "attempts", "created_at", "next_attempt_at", "expires_at", "owner",
         "lease_until", "held")

# KEYS[1]: a due zset. ARGV: now, lease_until, owner, limit, entry key prefix.
# Walks due entries earliest first, leasing those whose lease has passed and that
# no operator holds. Returns id, then '1' if the entry still had an owner (its lease
# ran out unreleased) else '0'.
_CLAIM = """
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[4])
local out, n, offset = {}, 0, 0
while n < limit do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', offset, 200)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local e = ARGV[5] .. id
    local lease = redis.call('HMGET', e, 'lease_until', 'owner', 'held')
    if tonumber(lease[1] or '0') <= now and lease[3] ~= '1' then
      redis.call('HSET', e, 'owner', ARGV[3], 'lease_until', ARGV[2])
      out[#out + 1] = id
      out[#out + 1] = ((lease[2] or '') ~= '') and '1' or '0'
      n = n + 1
      if n >= limit then break end
    end
  end
  offset = offset + #ids
end
return out
"""

# ARGV: owner, lease_until ('0' to release), entry key prefix, then ids. Returns the ids held.
_RELEASE_OR_RENEW = """
local out = {}
for i = 4, #ARGV do
  local e = ARGV[3] .. ARGV[i]
  if redis.call('HGET', e, 'owner') == ARGV[1] then
    if ARGV[2] == '0' then
      redis.call('HSET', e, 'owner', '', 'lease_until', '0')
    else
      redis.call('HSET', e, 'lease_until', ARGV[2])
    end
    out[#out + 1] = ARGV[i]
  end
end
return out
"""

# KEYS[1]: b:<id>, KEYS[2]: e:<id>. The entry's message, and '1' if the entry was of
# the layout before 0.4 (the message in the hash, as 'data'): it is moved on the way.
_BODY = """
local body = redis.call('GET', KEYS[1])
if body then return {body, '0'} end
body = redis.call('HGET', KEYS[2], 'data')
if not body then return {false, '0'} end
redis.call('SET', KEYS[1], body)
redis.call('HDEL', KEYS[2], 'data')
return {body, '1'}
"""


# KEYS[1]: e:<id>. ARGV[1]: '1' to hold, '0' to release. Returns 1 if the entry changed.
_HOLD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local was = redis.call('HGET', KEYS[1], 'held') or '0'
if was == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'held', ARGV[1])
return 1
"""


def _s(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


class RedisQueue:
    """The :class:`~smtpretry.queue.Queue` in Redis.

    :param url: ``redis://[user:password@]host:port/db`` (or ``rediss://``);
        ``?prefix=NAME`` sets the key prefix (default ``smtpretry:queue``)
    :param cipher: encrypts message bytes; by default the key from
        ``SMTPRETRY_QUEUE_KEY``
    :raises QueueError: no ``SMTPRETRY_QUEUE_KEY`` and no ``cipher``, or a malformed key

    Nothing is connected until the first call.

    .. versionadded:: 0.3
    """

    def __init__(self, url: str, *, cipher: MessageCipher | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        self.prefix = query.pop("prefix", ["smtpretry:queue"])[-1]
        self._redis_url = urllib.parse.urlunsplit(
            parts._replace(query=urllib.parse.urlencode(query, doseq=True))
        )
        self._url = redacted(url)
        if cipher is None:
            key = os.environ.get(KEY_ENV)
            if not key:
                raise QueueError(
                    f"queue {self._url}: set {KEY_ENV} to the queue key (the same on every worker; "
                    "make one with: python -c 'from smtpretry.queue.crypto import generate_key; "
                    "print(generate_key())')"
                )
            cipher = MessageCipher(key, source=KEY_ENV)
        self._cipher = cipher
        self._client: Any = None
        self._checked = False

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"RedisQueue({self._url!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _e(self, entry_id: str) -> str:
        return f"{self.prefix}:e:{entry_id}"

    def _due(self, destination: str | None = None) -> str:
        return f"{self.prefix}:due" if destination is None else f"{self.prefix}:due:{destination}"

    def _k(self, key: str) -> str:
        return f"{self.prefix}:k:{key}"

    def _b(self, entry_id: str) -> str:
        return f"{self.prefix}:b:{entry_id}"

    async def _redis(self) -> Any:
        if self._client is None:
            self._client = connect(self._redis_url)
            self._checked = False
        if not self._checked:
            check = f"{self.prefix}:check"
            try:
                await self._client.set(check, self._cipher.encrypt(_KEY_CHECK), nx=True)
                token = await self._client.get(check)
            except RedisError as exc:
                raise backend_error(self._url, exc, "queue") from None
            self._cipher.decrypt(token, what=f"queue {self._url}")
            self._checked = True
        return self._client

    def _error(self, exc: RedisError) -> QueueError:
        return backend_error(self._url, exc, "queue")

    def _entry(self, entry_id: str, fields: Sequence[bytes | None], data: bytes | None = None) -> QueueEntry:
        meta_raw, recipients, attempts, created_at, next_at, expires_at, owner, lease_until, held = fields
        meta = json.loads(_s(meta_raw))
        if data is not None:
            data = self._cipher.decrypt(data, what=f"queue entry {entry_id}")
        return QueueEntry(
            id=entry_id, key=meta["key"],
            destination=Destination(meta["host"], meta["port"], meta["tls"], meta["profile"],
                                    meta.get("route"), meta.get("domain"), meta.get("provider")),
            sender=meta["sender"], message_id=meta["message_id"],
            recipients=entry.decode_recipients(_s(recipients)), attempts=int(_s(attempts) or 0),
            created_at=float(_s(created_at)), next_attempt_at=float(_s(next_at)),
            expires_at=float(_s(expires_at)), owner=_s(owner) or None,
            lease_until=float(_s(lease_until) or 0), data=data, held=_s(held) == "1",
        )

    @property
    def _suspended(self) -> str:
        return f"{self.prefix}:suspensions"

    async def _selected(self, r: Any, selection: Selection) -> list[QueueEntry]:
        """The entries ``selection`` selects (without their message), by ``next_attempt_at``."""
        ids = [i.decode() for i in await r.zrange(self._due(), 0, -1)]
        if selection.ids:
            typed = tuple(t.strip().lower() for t in selection.ids)
            ids = [i for i in ids if i.startswith(typed)]  # enough to tell unique from ambiguous
        async with r.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.hmget(self._e(entry_id), *_HEAD)
            rows = await pipe.execute() if ids else []
        found = [self._entry(i, row) for i, row in zip(ids, rows, strict=True) if row[0]]
        return entry.select(found, selection, where=f"queue {self._url}")

    # -- the Queue protocol --------------------------------------------------------------------

    async def put(self, entry: QueueEntry, /) -> str:
        if not entry.recipients:
            raise QueueError("queue: an entry needs at least one recipient")
        if entry.data is None:
            raise QueueError("queue: an entry needs its message bytes")
        r = await self._redis()
        token = self._cipher.encrypt(entry.data)
        try:
            async with r.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        return await self._put(pipe, entry, token)
                    except WatchError:
                        continue  # a claim or another put touched it: read again
        except RedisError as exc:
            raise self._error(exc) from None

    async def _put(self, pipe: Any, new: QueueEntry, token: bytes) -> str:
        d = new.destination
        await pipe.watch(self._k(new.key))
        found = await pipe.get(self._k(new.key))
        old = None
        if found is not None:
            entry_id: str = found.decode()
            await pipe.watch(self._e(entry_id))
            old = await pipe.hmget(self._e(entry_id), "recipients", "created_at", "expires_at")
        if old is not None and old[0] is not None:
            m = entry.merge(entry.decode_recipients(old[0]), new, created_at=float(old[1]),
                            expires_at=float(old[2]))
            next_at = m.next_attempt_at
            pipe.multi()
            pipe.hset(self._e(entry_id), mapping={
                "recipients": entry.encode_recipients(m.recipients), "n": len(m.recipients),
                "created_at": repr(m.created_at), "expires_at": repr(m.expires_at),
                "next_attempt_at": repr(next_at),
            })
        else:
            entry_id = secrets.token_hex(8)
            next_at = entry.next_attempt(new.recipients, new.expires_at)
            meta = {"key": new.key, "destination": d.key, "host": d.host, "port": d.port, "tls": d.tls,
                    "profile": d.profile, "sender": new.sender, "message_id": new.message_id}
            if d.route is not None:  # a Router's entry; entries without these keys are a Mailer's
                meta.update(route=d.route, domain=d.domain, provider=d.provider)
            pipe.multi()
            pipe.hset(self._e(entry_id), mapping={
                "meta": json.dumps(meta, separators=(",", ":")),
                "recipients": entry.encode_recipients(new.recipients), "n": len(new.recipients),
                "attempts": 0, "created_at": repr(new.created_at), "next_attempt_at": repr(next_at),
                "expires_at": repr(new.expires_at), "owner": "", "lease_until": "0",
            })
            pipe.set(self._b(entry_id), token)
            pipe.set(self._k(new.key), entry_id)
        pipe.zadd(self._due(), {entry_id: next_at})
        pipe.zadd(self._due(d.key), {entry_id: next_at})
        await pipe.execute()
        return entry_id

    async def claim(
        self, *, owner: str, now: float, lease_s: float, limit: int, destination: str | None = None
    ) -> list[QueueEntry]:
        if limit < 1:
            return []
        r = await self._redis()
        try:
            flat = [i.decode() for i in await r.eval(
                _CLAIM, 1, self._due(destination), repr(now), repr(now + lease_s), owner, limit,
                f"{self.prefix}:e:",
            )]
            if not flat:
                return []
            ids = flat[0::2]
            interrupted = {i for i, flag in zip(ids, flat[1::2], strict=True) if flag == "1"}
            async with r.pipeline(transaction=False) as pipe:
                for entry_id in ids:
                    pipe.hmget(self._e(entry_id), *_HEAD)
                    pipe.eval(_BODY, 2, self._b(entry_id), self._e(entry_id))
                rows = await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from None
        claimed = []
        for i, head, (body, moved) in zip(ids, rows[0::2], rows[1::2], strict=True):
            if not head[0]:
                continue
            e = dataclasses.replace(self._entry(i, head, body), interrupted=i in interrupted)
            if e.interrupted and moved == b"1":
                # Held by a runner older than 0.4, which did not mark what it was
                # sending before it stopped: mark what was due, as it would have.
                due = [r.address for r in e.recipients if r.next_attempt_at <= now]
                if await self.mark_sending(i, owner=owner, recipients=due):
                    e = dataclasses.replace(e, recipients=entry.mark_sending(e.recipients, due))
            claimed.append(e)
        return claimed

    async def _owned(self, ids: Collection[str], owner: str, lease_until: str) -> set[str]:
        if not ids:
            return set()
        r = await self._redis()
        try:
            held = await r.eval(_RELEASE_OR_RENEW, 0, owner, lease_until, f"{self.prefix}:e:", *ids)
        except RedisError as exc:
            raise self._error(exc) from None
        return {i.decode() for i in held}

    async def renew(self, ids: Collection[str], /, *, owner: str, now: float, lease_s: float) -> set[str]:
        return await self._owned(ids, owner, repr(now + lease_s))

    async def release(self, ids: Collection[str], /, *, owner: str) -> None:
        await self._owned(ids, owner, "0")

    async def mark_sending(self, entry_id: str, /, *, owner: str, recipients: Collection[str]) -> bool:
        r = await self._redis()
        try:
            async with r.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(self._e(entry_id))
                        held_by, text = await pipe.hmget(self._e(entry_id), "owner", "recipients")
                        if text is None or _s(held_by) != owner:
                            await pipe.reset()
                            return False
                        marked = entry.mark_sending(entry.decode_recipients(text), recipients)
                        pipe.multi()
                        pipe.hset(self._e(entry_id), "recipients", entry.encode_recipients(marked))
                        await pipe.execute()
                        return True
                    except WatchError:
                        continue  # a renewal or a put touched it: read again
        except RedisError as exc:
            raise self._error(exc) from None

    async def update(
        self, entry_id: str, /, *, owner: str, remove: Collection[str],
        defer: Sequence[PendingRecipient], now: float,
    ) -> QueueEntry | None:
        r = await self._redis()
        try:
            async with r.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(self._e(entry_id))
                        fields = await pipe.hmget(self._e(entry_id), *_HEAD)
                        if fields[0] is None:
                            return None  # deleted meanwhile (by hand, or by a runner that took over)
                        meta = json.loads(fields[0])
                        done = entry.apply_attempt(
                            entry.decode_recipients(fields[1]), remove=remove, defer=defer,
                            expires_at=float(fields[5]),
                        )
                        pipe.multi()
                        if done.next_attempt_at is None:
                            self._delete_in(pipe, entry_id, meta)
                            await pipe.execute()
                            return None
                        next_at = done.next_attempt_at
                        ours = _s(fields[6]) == owner
                        change: dict[str, Any] = {
                            "recipients": entry.encode_recipients(done.recipients),
                            "n": len(done.recipients),
                            "attempts": int(fields[2]) + 1, "next_attempt_at": repr(next_at),
                        }
                        if ours:
                            change.update(owner="", lease_until="0")
                        pipe.hset(self._e(entry_id), mapping=change)
                        pipe.zadd(self._due(), {entry_id: next_at})
                        pipe.zadd(self._due(meta["destination"]), {entry_id: next_at})
                        await pipe.execute()
                    except WatchError:
                        continue
                    row = list(fields)
                    row[1] = change["recipients"].encode()
                    row[2] = str(change["attempts"]).encode()
                    row[4] = change["next_attempt_at"].encode()
                    if ours:
                        row[6], row[7] = b"", b"0"
                    return self._entry(entry_id, row)
        except RedisError as exc:
            raise self._error(exc) from None

    def _delete_in(self, pipe: Any, entry_id: str, meta: dict[str, Any]) -> None:
        pipe.delete(self._e(entry_id), self._b(entry_id), self._k(meta["key"]))
        pipe.zrem(self._due(), entry_id)
        pipe.zrem(self._due(meta["destination"]), entry_id)

    async def get(self, entry_id: str, /) -> QueueEntry:
        r = await self._redis()
        try:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hmget(self._e(entry_id), *_HEAD)
                pipe.eval(_BODY, 2, self._b(entry_id), self._e(entry_id))
                head, (body, _) = await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from None
        if head[0] is None:
            raise QueueError(f"queue {self._url}: no entry {entry_id!r}")
        return self._entry(entry_id, head, body)

    async def entries(
        self, *, limit: int | None = None, selection: Selection | None = None
    ) -> list[QueueEntry]:
        r = await self._redis()
        try:
            if selection is not None:
                found = await self._selected(r, selection)
                return found if limit is None else found[:limit]
            ids = [i.decode() for i in await r.zrange(self._due(), 0, -1 if limit is None else limit - 1)]
            async with r.pipeline(transaction=False) as pipe:
                for entry_id in ids:
                    pipe.hmget(self._e(entry_id), *_HEAD)
                rows = await pipe.execute() if ids else []
        except RedisError as exc:
            raise self._error(exc) from None
        return [self._entry(i, row) for i, row in zip(ids, rows, strict=True) if row[0]]

    async def retry(self, target: str | Selection | None, /, *, now: float) -> int:
        r = await self._redis()
        try:
            ids = [e.id for e in await self._selected(r, selection_of(target)) if not e.held]
            changed = 0
            async with r.pipeline(transaction=True) as pipe:
                for one in ids:
                    while True:
                        try:
                            await pipe.watch(self._e(one))
                            meta_raw, recipients, held = await pipe.hmget(
                                self._e(one), "meta", "recipients", "held"
                            )
                            if meta_raw is None or _s(held) == "1":
                                await pipe.reset()  # gone, or held meanwhile
                                break
                            due = entry.made_due(entry.decode_recipients(recipients), now)
                            pipe.multi()
                            pipe.hset(self._e(one), mapping={
                                "recipients": entry.encode_recipients(due), "next_attempt_at": repr(now),
                            })
                            pipe.zadd(self._due(), {one: now})
                            pipe.zadd(self._due(json.loads(meta_raw)["destination"]), {one: now})
                            await pipe.execute()
                            changed += 1
                            break
                        except WatchError:
                            continue
        except RedisError as exc:
            raise self._error(exc) from None
        return changed

    async def delete(self, target: str | Selection, /) -> int:
        r = await self._redis()
        try:
            ids = [e.id for e in await self._selected(r, selection_of(target))]
            deleted = 0
            async with r.pipeline(transaction=True) as pipe:
                for one in ids:
                    while True:
                        try:
                            await pipe.watch(self._e(one))
                            meta_raw = await pipe.hget(self._e(one), "meta")
                            if meta_raw is None:
                                await pipe.reset()  # deleted meanwhile
                                break
                            pipe.multi()
                            self._delete_in(pipe, one, json.loads(meta_raw))
                            await pipe.execute()
                            deleted += 1
                            break
                        except WatchError:
                            continue
        except RedisError as exc:
            raise self._error(exc) from None
        return deleted

    async def hold(self, target: str | Selection, /, *, held: bool = True) -> int:
        r = await self._redis()
        try:
            ids = [e.id for e in await self._selected(r, selection_of(target)) if e.held != held]
            changed = 0
            for one in ids:
                changed += int(await r.eval(_HOLD, 1, self._e(one), "1" if held else "0"))
        except RedisError as exc:
            raise self._error(exc) from None
        return changed

    async def stats(self, *, now: float, selection: Selection | None = None) -> QueueStats:
        r = await self._redis()
        try:
            if selection is not None:
                return entry.stats_of(await self._selected(r, selection), now)
            scored = await r.zrange(self._due(), 0, -1, withscores=True)
            async with r.pipeline(transaction=False) as pipe:
                for entry_id, _ in scored:
                    pipe.hmget(self._e(entry_id.decode()), "n", "lease_until", "expires_at", "created_at",
                               "held")
                rows = await pipe.execute() if scored else []
        except RedisError as exc:
            raise self._error(exc) from None
        entries = recipients = due = leased = expired = held = 0
        oldest: float | None = None
        next_at: float | None = None
        for (_, score), (n, lease, expires, created, on_hold) in zip(scored, rows, strict=True):
            if n is None:
                continue
            entries += 1
            lease_until = float(lease or 0)
            recipients += int(n)
            leased += lease_until > now
            expired += float(expires) <= now
            oldest = float(created) if oldest is None else min(oldest, float(created))
            if _s(on_hold) == "1":
                held += 1
                continue
            due += score <= now and lease_until <= now
            next_at = score if next_at is None else min(next_at, score)
        return QueueStats(entries, recipients, due, leased, expired, oldest, next_at, held)

    async def suspend(self, suspension: Suspension, /) -> None:
        r = await self._redis()
        s = suspension
        value = json.dumps({"until": s.until, "reason": s.reason, "created_at": s.created_at})
        try:
            ended = [k for k, v in (await r.hgetall(self._suspended)).items()
                     if float(json.loads(v)["until"]) <= s.created_at]
            async with r.pipeline(transaction=True) as pipe:
                if ended:
                    pipe.hdel(self._suspended, *ended)
                pipe.hset(self._suspended, s.key, value)
                await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from None

    async def resume(self, key: str, /) -> Suspension | None:
        r = await self._redis()
        try:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hget(self._suspended, key)
                pipe.hdel(self._suspended, key)
                found, _ = await pipe.execute()
        except RedisError as exc:
            raise self._error(exc) from None
        return None if found is None else self._suspension(key, found)

    async def suspensions(self, *, now: float) -> list[Suspension]:
        r = await self._redis()
        try:
            stored = await r.hgetall(self._suspended)
        except RedisError as exc:
            raise self._error(exc) from None
        return in_force((self._suspension(k.decode(), v) for k, v in stored.items()), now)

    @staticmethod
    def _suspension(key: str, raw: bytes) -> Suspension:
        data = json.loads(raw)
        return Suspension(key, float(data["until"]), str(data.get("reason", "")),
                          float(data.get("created_at", 0.0)))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await client.aclose()
