"""The Redis queue: what only Redis has (URLs, the required key, bodies never in clear in
Redis nor in its append-only file, Redis unreachable), and worker processes sharing one
queue. The Queue contract tests (put/claim/lease/renew/merge/expire) run against both
backends in tests/unit/test_queue_sqlite.py (``make_queue``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smtpretry import Limits, Mailer, QueueError, RetryPolicy
from smtpretry.errors import BackendError
from smtpretry.events import get_logger
from smtpretry.limits.redis import redis_limiter
from smtpretry.queue import open_queue
from smtpretry.queue.crypto import KEY_ENV, MessageCipher, generate_key
from smtpretry.queue.entry import encode_recipients
from smtpretry.queue.redis import RedisQueue
from smtpretry.queue.sqlite import SQLiteQueue
from smtpretry.runner import QueueRunner
from tests.integration.test_queue import due_entries
from tests.redis.test_redis_limiter import SlowHandler, workers, write_config
from tests.redis.worker import message
from tests.redis_server import RedisServer, client_for, require_redis
from tests.servers import R422_OVER_QUOTA, ScriptedHandler, serve

BODY_MARK = b"the body of a queued message"


@pytest.fixture(autouse=True)
def _queue_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, generate_key())


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there


def test_urls_and_the_required_key(monkeypatch: pytest.MonkeyPatch) -> None:
    q = open_queue("redis://app:hunter2@127.0.0.1:6379/2?prefix=mail:q")
    assert isinstance(q, RedisQueue) and q.prefix == "mail:q"
    assert q.url == "redis://app:***@127.0.0.1:6379/2?prefix=mail:q"
    assert isinstance(open_queue("rediss://127.0.0.1:6380/0"), RedisQueue)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(QueueError, match="set SMTPRETRY_QUEUE_KEY") as info:
        open_queue("redis://app:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in str(info.value)
    monkeypatch.setenv(KEY_ENV, "not a key")
    with pytest.raises(QueueError, match="SMTPRETRY_QUEUE_KEY: not a queue key"):
        open_queue("redis://127.0.0.1:6379/0")


async def test_bodies_are_never_in_clear_in_redis_nor_in_its_append_only_file(
    redis_url: str, redis_server: RedisServer
) -> None:
    q = RedisQueue(redis_url)
    ids = [await q.put(e) for e in due_entries(2525, 3, time.time())]
    assert (await q.get(ids[0])).data is not None and BODY_MARK in (await q.get(ids[0])).data  # type: ignore[operator]
    probe = client_for(redis_url)
    stored = b""
    for key in probe.scan_iter("*"):
        kind = probe.type(key)
        if kind == b"hash":
            stored += b"".join(probe.hvals(key))
        elif kind == b"string":
            stored += probe.get(key)
    probe.close()
    assert b"r0@example.com" in stored and BODY_MARK not in stored
    aof = b"".join(p.read_bytes() for p in redis_server.directory.rglob("*.aof"))
    assert b"r0@example.com" in aof  # written to the append-only file ...
    assert BODY_MARK not in aof  # ... encrypted
    await q.close()


async def test_a_wrong_key_is_one_clear_error(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    q = RedisQueue(redis_url)
    await q.put(due_entries(2525, 1, time.time())[0])
    await q.close()
    monkeypatch.setenv(KEY_ENV, generate_key())
    with pytest.raises(QueueError, match="cannot decrypt .* key from SMTPRETRY_QUEUE_KEY"):
        await RedisQueue(redis_url).entries()


async def test_redis_unreachable_is_a_queue_error_and_a_send_cannot_defer_into_it() -> None:
    q = RedisQueue(_dead_url())
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"backend redis://127\.0\.0\.1:\d+/0: queue: ConnectionError"):
        await q.put(due_entries(2525, 1, time.time())[0])
    assert time.monotonic() - started < 5
    handler = ScriptedHandler(rcpt=[R422_OVER_QUOTA])
    async with serve(handler) as port:
        policy = RetryPolicy(backoff_base=0.001, max_attempts=2)
        async with Mailer("127.0.0.1", port, tls="none", policy=policy, queue=q) as m:
            with pytest.raises(QueueError, match="unreachable|ConnectionError"):
                await m.send(message("full@example.com", 0))


async def test_mail_deferred_by_one_worker_process_is_delivered_by_another(
    tmp_path: Path, redis_url: str
) -> None:
    handler = ScriptedHandler(rcpt={"w-0@example.com": [R422_OVER_QUOTA]})
    config = write_config(tmp_path, redis_url, cap=3, extra="")
    text = Path(config).read_text()
    Path(config).write_text(text.replace("max_attempts = 50", 'max_attempts = 50\ndefer_schedule = ["50ms"]'))
    async with serve(handler) as port:
        [sent] = await workers(["send", config, str(port), "1", "1", "w"])
        assert (sent["delivered"], sent["deferred"]) == (0, 1)
        [entry] = await RedisQueue(redis_url).entries()
        assert [r.address for r in entry.recipients] == ["w-0@example.com"]
        await asyncio.sleep(0.1)  # due
        [ran] = await workers(["run", config, str(port)])
        assert await RedisQueue(redis_url).entries() == []
    assert (ran["entries"], ran["delivered"]) == (1, 1)
    assert handler.copies == Counter({"w-0@example.com": 1})


async def test_two_runner_processes_deliver_each_recipient_once(tmp_path: Path, redis_url: str) -> None:
    handler = SlowHandler(delay_s=0.002)
    config = write_config(tmp_path, redis_url, cap=4)
    async with serve(handler) as port:
        q = RedisQueue(redis_url)
        for entry in due_entries(port, 60, time.time() - 1):
            await q.put(entry)
        stats = await workers(["run", config, str(port)], ["run", config, str(port)])
        assert await q.entries() == []
        await q.close()
    assert sum(s["delivered"] for s in stats) == 60
    assert handler.copies == Counter({f"r{i}@example.com": 1 for i in range(60)})


async def test_the_message_has_a_key_of_its_own_and_goes_with_its_entry(redis_url: str) -> None:
    q = RedisQueue(redis_url)
    probe = client_for(redis_url)
    a, b = [await q.put(e) for e in due_entries(2525, 2, time.time() - 1)]
    for entry_id in (a, b):
        assert b"data" not in probe.hkeys(f"smtpretry:queue:e:{entry_id}")
        assert probe.exists(f"smtpretry:queue:b:{entry_id}")
    token = probe.get(f"smtpretry:queue:b:{a}")
    claimed = await q.claim(owner="r", now=time.time(), lease_s=30, limit=10)
    assert {e.id for e in claimed} == {a, b} and all(BODY_MARK in (e.data or b"") for e in claimed)
    await q.renew([a, b], owner="r", now=time.time(), lease_s=30)
    assert probe.get(f"smtpretry:queue:b:{a}") == token  # written once
    assert await q.update(a, owner="r", remove=["r0@example.com"], defer=[], now=time.time()) is None
    await q.delete(b)
    assert sorted(probe.scan_iter("smtpretry:queue:*")) == [b"smtpretry:queue:check"]  # nothing left behind
    probe.close()
    await q.close()


async def test_an_entry_of_the_layout_before_0_4_is_moved_when_it_is_met(redis_url: str) -> None:
    """Before 0.4 the message was the ``data`` field of the entry's hash."""
    q = RedisQueue(redis_url)
    await q.stats(now=0)  # writes the key check
    probe = client_for(redis_url)
    cipher = MessageCipher(os.environ[KEY_ENV], source=KEY_ENV)  # the key the old worker had
    now = time.time()
    old = due_entries(2525, 3, now - 1)
    for n, e in enumerate(old):
        entry_id = f"0{n}" * 8
        held = n == 2  # by a runner of that version, whose lease ran out
        meta = {"key": e.key, "destination": e.destination.key, "host": e.destination.host,
                "port": e.destination.port, "tls": e.destination.tls, "profile": None,
                "sender": e.sender, "message_id": e.message_id}
        probe.hset(f"smtpretry:queue:e:{entry_id}", mapping={
            "meta": json.dumps(meta), "recipients": encode_recipients(e.recipients), "n": 1,
            "attempts": 2, "created_at": repr(now - 60), "next_attempt_at": repr(now - 1),
            "expires_at": repr(now + 3600), "owner": "old-runner" if held else "",
            "lease_until": repr(now - 5) if held else "0", "data": cipher.encrypt(e.data or b""),
        })
        probe.set(f"smtpretry:queue:k:{e.key}", entry_id)
        for due in ("smtpretry:queue:due", f"smtpretry:queue:due:{e.destination.key}"):
            probe.zadd(due, {entry_id: now - 1})
    first, second, third = "00" * 8, "01" * 8, "02" * 8
    listed = {e.id: e for e in await q.entries()}
    assert set(listed) == {first, second, third} and listed[first].attempts == 2  # either layout
    claimed = {e.id: e for e in await q.claim(owner="r", now=now, lease_s=30, limit=10)}
    assert set(claimed) == {first, second, third} and claimed[first].data == old[0].data
    # The old runner that held the third may have been sending it: marked, as runners
    # mark what they send now; the others were idle.
    assert claimed[third].interrupted and claimed[third].recipients[0].possible_duplicate
    assert (await q.get(third)).recipients[0].possible_duplicate
    assert not any(r.possible_duplicate for e in (claimed[first], claimed[second]) for r in e.recipients)
    await q.release([first, second, third], owner="r")
    got = await q.get(second)
    assert got.data == old[1].data and got.recipients == old[1].recipients
    for entry_id in (first, second):  # moved: the hash without the message, the message apart
        assert b"data" not in probe.hkeys(f"smtpretry:queue:e:{entry_id}")
        assert probe.exists(f"smtpretry:queue:b:{entry_id}")
    assert (await q.get(first)).data == old[0].data
    await q.claim(owner="r", now=now, lease_s=30, limit=1)
    assert await q.update(first, owner="r", remove=["r0@example.com"], defer=[], now=now) is None
    await q.delete(second)
    await q.delete(third)
    assert sorted(probe.scan_iter("smtpretry:queue:*")) == [b"smtpretry:queue:check"]
    probe.close()
    await q.close()


async def test_a_runner_that_loses_redis_after_a_delivery_raises_with_the_result_and_the_mark_holds(
    tmp_path: Path,
) -> None:
    """Redis goes away between the server's 250 and the write-back: the runner raises
    BackendError carrying what the send did, and the mark it wrote before sending is
    still in Redis when it comes back, so the resend is flagged."""
    server = RedisServer(require_redis(), tmp_path / "redis")
    server.start()

    class StopsRedis(ScriptedHandler):
        async def handle_DATA(self, server_, session, envelope):  # type: ignore[no-untyped-def]
            reply = await super().handle_DATA(server_, session, envelope)
            if self.copies.total() == 2:  # the first message, to both of its recipients
                await asyncio.to_thread(server.stop)  # SIGTERM: Redis writes its AOF out first
            return reply

    handler = StopsRedis()
    policy = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=3)
    try:
        async with serve(handler) as port:
            queue = RedisQueue(server.url)
            [entry] = due_entries(port, 1, time.time() - 1)
            people = (*entry.recipients, dataclasses.replace(entry.recipients[0], address="cc@example.com"))
            await queue.put(dataclasses.replace(entry, recipients=people))
            runner = QueueRunner(queue, lambda d: Mailer(d.host, d.port, tls="none", policy=policy))
            with pytest.raises(BackendError, match="not written back") as caught:
                await runner.run(once=True)
            result = caught.value.result
            assert result is not None and sorted(result.delivered) == ["cc@example.com", "r0@example.com"]

            server.start(port=server.port)  # the same data directory: the queue comes back
            [held] = await queue.entries()
            assert all(r.possible_duplicate for r in held.recipients)
            later = lambda: time.time() + 31  # noqa: E731  (the lease it kept has run out)
            again = await QueueRunner(
                queue, lambda d: Mailer(d.host, d.port, tls="none", policy=policy), clock=later,
            ).run(once=True)
            assert await queue.entries() == []
            await queue.close()
    finally:
        server.stop()
    assert (again.delivered, again.possible_duplicates) == (2, 2)
    assert handler.copies == Counter({"r0@example.com": 2, "cc@example.com": 2})  # both flagged


async def test_a_runner_whose_send_loses_the_shared_cap_writes_back_what_was_done_and_stops(
    tmp_path: Path,
) -> None:
    """The shared cap's Redis goes away in the middle of a resend (the queue itself, on
    SQLite, stays): the recipient delivered leaves the entry, the other is deferred and
    not marked, and the run stops with the BackendError carrying the send's result."""
    server = RedisServer(require_redis(), tmp_path / "redis")
    server.start()

    class StopsRedis(ScriptedHandler):
        async def handle_DATA(self, srv, session, envelope):  # type: ignore[no-untyped-def]
            server.stop()
            return await super().handle_DATA(srv, session, envelope)

    # The first transaction takes a (too many recipients: b goes next), the next MAIL is
    # throttled, and Redis is gone before the retry can have a slot.
    handler = StopsRedis(rcpt=["250 OK", "452 4.5.3 Too many recipients"],
                         mail=["250 OK", "421 4.7.0 Too many connections, try later"])
    queue = SQLiteQueue(tmp_path / "q.db")
    limits = Limits(max_connections=2)
    policy = RetryPolicy(backoff_base=0.001, backoff_cap=0.01, max_attempts=50)
    try:
        async with serve(handler) as port:
            [entry] = due_entries(port, 1, time.time() - 1)
            people = (dataclasses.replace(entry.recipients[0], address="a@example.com"),
                      dataclasses.replace(entry.recipients[0], address="b@example.com"))
            entry_id = await queue.put(dataclasses.replace(entry, recipients=people))
            limiter = redis_limiter(server.url, f"127.0.0.1:{port}", limits, get_logger(), lease_s=1.0)
            with capture_logs() as logs:
                runner = QueueRunner(queue, lambda d: Mailer(
                    d.host, d.port, tls="none", policy=policy, limits=limits, limiter=limiter))
                with pytest.raises(BackendError, match="what it did is written back") as caught:
                    await runner.run(once=True)
            await limiter.close()
    finally:
        server.stop()
    result = caught.value.result
    assert result is not None and result.delivered == ["a@example.com"]
    assert list(result.deferred) == ["b@example.com"]
    [left] = (await queue.get(entry_id)).recipients
    assert (left.address, left.possible_duplicate, left.failure) == ("b@example.com", False, "backend")
    assert not [e for e in logs if e["event"] == "smtpretry.writeback_failed"]
    await queue.close()
    assert handler.copies == Counter({"a@example.com": 1})


async def test_a_suspension_made_through_redis_holds_in_every_worker_process(
    tmp_path: Path, redis_url: str
) -> None:
    from smtpretry.queue import Suspension

    handler = ScriptedHandler()
    config = write_config(tmp_path, redis_url, cap=3)  # backend: caps and queue in this Redis
    async with serve(handler) as port:
        operator = RedisQueue(redis_url)
        await operator.suspend(Suspension(f"127.0.0.1:{port}", time.time() + 600, "TSS04", time.time()))
        results = await workers(*(["send", config, str(port), "5", "2", f"w{i}"] for i in range(2)))
        assert [(r["delivered"], r["deferred"]) for r in results] == [(0, 5), (0, 5)]
        assert handler.sessions_total == 0  # no worker connected
        assert (await operator.stats(now=time.time())).recipients == 10  # deferred to the shared queue
        await operator.resume(f"127.0.0.1:{port}")
        results = await workers(["send", config, str(port), "3", "2", "after"])
        assert results[0]["delivered"] == 3
        await operator.close()
    assert handler.copies == Counter({f"after-{i}@example.com": 1 for i in range(3)})


async def test_queue_commands_on_a_redis_queue_suspend_hold_and_select_for_every_worker(
    redis_url: str,
) -> None:
    from tests.cli.conftest import run

    producer = RedisQueue(redis_url)
    ids = [await producer.put(e) for e in due_entries(2525, 3, time.time())]
    done = run("queue", "suspend", "127.0.0.1:2525", "--for", "1h", "--reason", "TSS04", "--queue", redis_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("3 queued entries for it\n")
    [held] = await RedisQueue(redis_url).suspensions(now=time.time())  # another worker's handle
    assert (held.key, held.reason) == ("127.0.0.1:2525", "TSS04")
    assert run("queue", "hold", ids[0][:6], "--queue", redis_url).returncode == 0
    listed = run("queue", "list", "--json", "--held", "--queue", redis_url).stdout.splitlines()
    assert [json.loads(line)["id"] for line in listed] == [ids[0]]
    claimed = await producer.claim(owner="w", now=time.time() + 1, lease_s=5, limit=10)
    assert {e.id for e in claimed} == set(ids[1:])  # the held one is no worker's to send
    assert run("queue", "resume", "127.0.0.1:2525", "--queue", redis_url).returncode == 0
    assert await producer.suspensions(now=time.time()) == []
    await producer.close()
