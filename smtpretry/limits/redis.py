"""Connection caps shared by several worker processes (and hosts) through Redis.

:class:`RedisSlots` is the :class:`~smtpretry.limits.slots.Slots` of a
:class:`~smtpretry.limits.Limiter` whose slot counter and adaptive cap live in
Redis, so that every worker sending to one destination counts against one cap.
Pacing, hold-offs and idle sessions stay in each process. This is the only
module that imports redis for the limiter; ``queue/redis.py`` holds the queue
and takes its client and errors from here.

Keys, for a limit key NAME (a destination ``host:port``, or a shared rule such
as ``mx:.google.com``), under ``smtpretry:limit:NAME``:

========== ====== ==============================================================
``:slots``  zset  one member per held slot (``owner:n``), scored by its lease
                  expiry (milliseconds, Redis's clock)
``:wait``   zset  tickets of processes waiting for a slot, scored by arrival
``:alive``  zset  the same tickets, scored by when they expire unless refreshed
``:seq``    int   the arrival counter
``:cap``    hash  the effective cap: the fields of :class:`~smtpretry.limits.cap.AdaptiveCap`
========== ====== ==============================================================

**Leases.** A slot is a member of ``:slots`` scored by its lease expiry. A
background task per ``RedisSlots`` renews the leases of the slots the process
holds every ``renew_s`` (a third of ``lease_s``, at most one second), so a
worker that dies (SIGKILL, power loss, a partitioned host) blocks nobody for
longer than ``lease_s``: every script first drops the expired members. A
renewal that finds its member gone (the process stalled longer than the
lease) adds it back, because the connection is still open and must count.

**Fairness: FIFO tickets.** A process that finds no free slot takes a ticket
(arrival order from ``:seq``) and polls every ``poll_s`` (jittered). The
acquire script grants a slot to a ticket only when fewer tickets are ahead of
it than slots are free, and to a newcomer only when more slots are free than
tickets wait. So the order is first come, first served across processes,
whichever process happens to poll first after a release; polling instead of
pub/sub keeps the script simple and makes a lost notification impossible.
A ticket not refreshed for ``ticket_ttl_s`` (its process died) is dropped.
And a process does not keep an idle session for reuse while a ticket of
another process waits (``contended``): its slot goes back to the queue.

**The shared adaptive cap.** Throttling and success move the cap with the
very rules of :class:`~smtpretry.limits.cap.AdaptiveCap`, applied in Python to the
fields read from ``:cap`` under ``WATCH``/``MULTI`` (retried when another
worker wrote meanwhile). Times in the cap are Redis's clock (``TIME``), so
hosts whose clocks differ agree; a connection's local monotonic open time is
translated to it. ``open_now`` is the number of slots held by every worker.
Successes are counted across all workers and folded in batches, so a busy
worker makes one round trip per batch, not per message. Each move is logged
by the worker that made it (``smtpretry.cap_lowered`` / ``cap_raised``).

**Redis unreachable.** A send that needs a new connection fails at once with
:class:`BackendError` (a :class:`~smtpretry.errors.QueueError`) naming the
backend: no connection is opened outside the shared cap. Sends already holding
a connection finish; their give-backs and renewals are dropped (the leases
run out in Redis), and cap moves are skipped until Redis is back.

.. versionadded:: 0.3
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError, WatchError

from .. import events
from .._logging import LogContext, Logger, emit
from .._redis import backend_error, connect, redacted
from ..errors import BackendError
from ..policy import Limits
from .cap import AdaptiveCap, CapReport
from .limiter import Limiter

__all__ = ["BackendError", "RedisSlots", "connect", "redacted", "redis_limiter"]

TROUBLE_EVERY_S = 30.0
"""At most one ``smtpretry.backend_lost`` event per limiter in this many seconds."""


# ARGV: token ticket lease_ms ticket_ttl_ms configured recovery probe_after adaptive key_ttl_s
# Returns {granted (0/1), slots held, effective cap, tickets waiting}.
_ACQUIRE = """
local slots, wait, alive, seq, cap = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', now)) do
  redis.call('ZREM', wait, dead)
  redis.call('ZREM', alive, dead)
end
local current = tonumber(redis.call('HGET', cap, 'current'))
if current == nil or redis.call('HGET', cap, 'configured') ~= ARGV[5] then
  -- First use, or the configuration changed: start from the configured cap.
  redis.call('DEL', cap)
  redis.call('HSET', cap, 'configured', ARGV[5], 'current', ARGV[5], 'recovery', ARGV[6],
             'probe_after', ARGV[7], 'adaptive', ARGV[8], 'successes', '0',
             'lowered_at', '-inf', 'ceiling', '')
  current = tonumber(ARGV[5])
end
local held = redis.call('ZCARD', slots)
local rank = redis.call('ZRANK', wait, ARGV[2])
local ahead = rank
if not rank then ahead = redis.call('ZCARD', wait) end
local granted = 0
if held + ahead < current then
  redis.call('ZADD', slots, now + tonumber(ARGV[3]), ARGV[1])
  if rank then
    redis.call('ZREM', wait, ARGV[2])
    redis.call('ZREM', alive, ARGV[2])
  end
  granted = 1
  held = held + 1
else
  if not rank then redis.call('ZADD', wait, redis.call('INCR', seq), ARGV[2]) end
  redis.call('ZADD', alive, now + tonumber(ARGV[4]), ARGV[2])
end
for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, ARGV[9]) end
return {granted, held, current, redis.call('ZCARD', wait)}
"""

# ARGV: lease_ms, then the tokens held. Re-adds a token whose lease ran out: the
# connection is still open and must count. Returns {re-added, effective cap, tickets waiting}.
_RENEW = """
local slots, wait, alive, cap = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', now)) do
  redis.call('ZREM', wait, dead)
  redis.call('ZREM', alive, dead)
end
local lost = 0
for i = 2, #ARGV do
  lost = lost + redis.call('ZADD', slots, now + tonumber(ARGV[1]), ARGV[i])
end
return {lost, tonumber(redis.call('HGET', cap, 'current')) or -1, redis.call('ZCARD', wait)}
"""

_CAP_FIELDS = ("configured", "current", "recovery", "probe_after", "adaptive", "successes",
               "lowered_at", "ceiling")


def _cap_from(fields: dict[bytes, bytes], limits: Limits) -> AdaptiveCap:
    if not fields:
        return AdaptiveCap.from_limits(limits)
    f = {k.decode(): v.decode() for k, v in fields.items()}
    return AdaptiveCap(
        configured=int(f["configured"]), current=int(f["current"]), recovery=int(f["recovery"]),
        probe_after=float(f["probe_after"]), adaptive=f["adaptive"] == "1",
        successes=int(f["successes"]), lowered_at=float(f["lowered_at"]),
        ceiling=int(f["ceiling"]) if f.get("ceiling") else None,
    )


def _fields_of(cap: AdaptiveCap) -> dict[str, str]:
    return {
        "configured": str(cap.configured), "current": str(cap.current), "recovery": str(cap.recovery),
        "probe_after": repr(cap.probe_after), "adaptive": "1" if cap.adaptive else "0",
        "successes": str(cap.successes), "lowered_at": repr(cap.lowered_at),
        "ceiling": "" if cap.ceiling is None else str(cap.ceiling),
    }


class RedisSlots:
    """Slots and the adaptive cap of one limit key, shared through Redis
    (see the module docstring for the keys, leases and fairness).

    :param url: ``redis://host:port/db`` (or ``rediss://``; a password in it is never logged)
    :param name: the limit key every worker uses for this destination
    :param limits: ``max_connections`` (the configured cap) and the adaptive settings;
        every worker should have the same (a different ``max_connections`` resets the cap)
    :param lease_s: seconds a slot stays held without renewal: how long a dead
        worker's connections keep counting
    :param renew_s: seconds between renewals (default ``min(lease_s / 3, 1)``)
    :param poll_s: seconds between asks while waiting for a slot (jittered ±50 %)
    :param ticket_ttl_s: seconds a waiting ticket lives without being refreshed
    :param owner: the prefix of this process's slot tokens (default ``host:pid:random``)
    :param prefix: the key prefix in Redis

    .. versionadded:: 0.3
    """

    def __init__(
        self, url: str, name: str, limits: Limits, *, lease_s: float = 30.0,
        renew_s: float | None = None, poll_s: float = 0.005, ticket_ttl_s: float = 2.0,
        owner: str | None = None, prefix: str = "smtpretry:limit", rng: random.Random | None = None,
        logger: Logger | None = None,
    ) -> None:
        if lease_s <= 0 or poll_s <= 0 or ticket_ttl_s <= poll_s:
            raise ValueError("lease_s, poll_s: expected seconds > 0; ticket_ttl_s: more than poll_s")
        self.url = url
        self.name = name
        self.limits = limits
        self.lease_s = lease_s
        self.renew_s = renew_s if renew_s is not None else min(lease_s / 3, 1.0)
        self.ticket_ttl_s = ticket_ttl_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        base = f"{prefix}:{name}"
        self._keys = [f"{base}:slots", f"{base}:wait", f"{base}:alive", f"{base}:seq", f"{base}:cap"]
        self._poll_s = poll_s
        self._rng = rng if rng is not None else random.Random()
        self._cap = AdaptiveCap.from_limits(limits)
        self._held: list[str] = []
        self._waiting: set[str] = set()
        self._others_waiting = 0
        self.on_contended: Callable[[], None] | None = None
        """Called when a renewal finds another process waiting for a slot: the
        limiter closes its idle sessions, whose slots that process needs."""
        self._serial = 0
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._successes = 0
        self._success_task: asyncio.Task[None] | None = None
        self.leases_lost = 0
        """Leases found expired at renewal (the process stalled longer than ``lease_s``)."""
        self.context = LogContext(name, logger)
        self._trouble_at = float("-inf")

    # -- the Slots protocol ----------------------------------------------------------------------

    @property
    def cap(self) -> AdaptiveCap:
        """The shared cap as this process last read it."""
        return self._cap

    @property
    def poll_s(self) -> float:
        return self._poll_s * self._rng.uniform(0.5, 1.5)

    @property
    def contended(self) -> bool:
        return self._others_waiting > 0

    async def try_take(self, ticket: int) -> bool:
        self._serial += 1
        token = f"{self.owner}:{self._serial}"
        wait_ticket = f"{self.owner}:t{ticket}"
        c = self._limits_args()
        try:
            granted, _held, current, waiting = await self._redis().eval(
                _ACQUIRE, len(self._keys), *self._keys, token, wait_ticket,
                int(self.lease_s * 1000), int(self.ticket_ttl_s * 1000), *c,
                max(3600, int(self.lease_s * 10)),
            )
        except RedisError as exc:
            raise backend_error(self.url, exc, f"no slot for {self.name} (no connection opened)") from None
        self._cap.current = int(current)
        if granted:
            self._waiting.discard(wait_ticket)
            self._held.append(token)
            self._ensure_renewer()
        else:
            self._waiting.add(wait_ticket)
        self._others_waiting = int(waiting) - len(self._waiting)
        return bool(granted)

    async def withdraw(self, ticket: int) -> None:
        wait_ticket = f"{self.owner}:t{ticket}"
        if wait_ticket not in self._waiting:
            return
        self._waiting.discard(wait_ticket)
        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                await pipe.zrem(self._keys[1], wait_ticket).zrem(self._keys[2], wait_ticket).execute()
        except RedisError as exc:  # it expires after ticket_ttl_s anyway
            self._unreachable("withdraw a waiting ticket", exc)

    async def give_back(self) -> None:
        if not self._held:
            return
        token = self._held.pop()
        try:
            await self._redis().zrem(self._keys[0], token)
        except RedisError as exc:  # the lease runs out instead
            self._unreachable("give back a slot", exc)

    def lower(self, opened_at: float, open_now: int | None, lingering: bool, report: CapReport) -> None:
        age = time.monotonic() - opened_at

        def change(cap: AdaptiveCap, now: float, held: int) -> int | None:
            # The fleet's level is the slots every worker holds, plus the refused one.
            return cap.lower(now - age, now, None if open_now is None else held + 1, lingering=lingering)

        self._spawn(self._move(change, report))

    def success(self, report: CapReport) -> None:
        cap = self._cap
        if cap.current >= cap.configured and cap.ceiling is None:
            return  # at the configured cap: success changes nothing (AdaptiveCap.success)
        self._successes += 1
        if self._success_task is None or self._success_task.done():
            self._success_task = self._spawn(self._fold_successes(report))

    async def close(self) -> None:
        """Stop renewing, give back what is still held, wait for cap moves, drop the client."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        held, self._held = self._held, []
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                if held:
                    await client.zrem(self._keys[0], *held)
                await client.aclose()

    # -- internals -------------------------------------------------------------------------------

    def _limits_args(self) -> tuple[str, ...]:
        lim = self.limits
        return (str(lim.max_connections), str(lim.cap_recovery), repr(lim.cap_probe_after),
                "1" if lim.adaptive else "0")

    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client belongs to the loop it was made in (asyncio.run per call, tests).
            self._client, self._loop = connect(self.url), loop
            self._renewer = None
        return self._client

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            if not self._held and not self._waiting:
                self._others_waiting = 0
                continue
            try:
                lost, current, waiting = await self._redis().eval(
                    _RENEW, 4, self._keys[0], self._keys[1], self._keys[2], self._keys[4],
                    int(self.lease_s * 1000), *self._held,
                )
            except RedisError as exc:  # Redis down: the next tick tries again
                self._unreachable("renew leases", exc)
                continue
            if int(lost):
                self.leases_lost += int(lost)
                emit(self.context, events.LEASE_LOST, leases=int(lost), lease_s=self.lease_s)
            if int(current) > 0:
                self._cap.current = int(current)
            self._others_waiting = int(waiting) - len(self._waiting)
            if self._others_waiting > 0 and self.on_contended is not None:
                self.on_contended()

    async def _move(
        self, change: Callable[[AdaptiveCap, float, int], int | None], report: CapReport,
    ) -> tuple[int, int] | None:
        """Apply ``change(cap, now, held)`` to the shared cap under WATCH/MULTI;
        report and return (previous, new) when the cap moved. Skipped when
        Redis is unreachable: a cap decision is not worth failing a send."""
        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(self._keys[4])
                        seconds, micros = await pipe.time()
                        now = seconds + micros / 1e6
                        held = await pipe.zcount(self._keys[0], int(now * 1000), "+inf")
                        cap = _cap_from(await pipe.hgetall(self._keys[4]), self.limits)
                        previous = cap.current
                        new = change(cap, now, int(held))
                        pipe.multi()
                        pipe.hset(self._keys[4], mapping=_fields_of(cap))
                        await pipe.execute()
                    except WatchError:
                        continue  # another worker moved the cap meanwhile: read it again
                    self._cap = cap
                    if new is None:
                        return None
                    report(previous, new)
                    return previous, new
        except RedisError as exc:
            self._unreachable("move the shared cap", exc)
            return None

    def _unreachable(self, doing: str, exc: RedisError) -> None:
        """Log that the backend did not answer, at most once per ``TROUBLE_EVERY_S``."""
        now = time.monotonic()
        if now - self._trouble_at >= TROUBLE_EVERY_S:
            self._trouble_at = now
            emit(self.context, events.BACKEND_LOST, backend=redacted(self.url), doing=doing,
                 error=f"{type(exc).__name__}: {exc}")

    async def _fold_successes(self, report: CapReport) -> None:
        while self._successes:
            n, self._successes = self._successes, 0
            moves: list[tuple[int, int]] = []

            def change(cap: AdaptiveCap, now: float, held: int, n: int = n,
                       moves: list[tuple[int, int]] = moves) -> int | None:
                moves.clear()
                for _ in range(n):
                    previous = cap.current
                    new = cap.success(now)
                    if new is not None:
                        moves.append((previous, new))
                return moves[-1][1] if moves else None

            await self._move(change, lambda _p, _n: None)
            for previous, new in moves:
                report(previous, new)


def redis_limiter(
    url: str, name: str, limits: Limits, logger: Logger | None = None, **slots: Any,
) -> Limiter:
    """A :class:`~smtpretry.limits.Limiter` whose slots and cap are shared through
    Redis at ``url`` under the limit key ``name``; ``slots`` go to
    :class:`RedisSlots` (``lease_s``, ``poll_s``, ...). Pass it as
    ``Mailer(limiter=...)``; a Mailer given a :class:`~smtpretry.Config` with
    ``backend`` builds one itself. ``logger`` is the application's, if any (else
    smtpretry's, resolved when an event is emitted).

    .. versionadded:: 0.3
    """
    slots.setdefault("logger", logger)
    shared = RedisSlots(url, name, limits, **slots)
    limiter = Limiter(name, limits, logger, slots=shared)
    shared.on_contended = limiter.retire_idle
    return limiter
