"""The Redis queue: what only Redis has (URLs, the required key, bodies never in clear in
Redis nor in its append-only file, Redis unreachable), and worker processes sharing one
queue. The Queue contract tests (put/claim/lease/renew/merge/expire) run against both
backends in tests/unit/test_queue_sqlite.py (``make_queue``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from smtpretry import Mailer, QueueError, RetryPolicy
from smtpretry.queue import open_queue
from smtpretry.queue.crypto import KEY_ENV, generate_key
from smtpretry.queue.redis import RedisQueue
from smtpretry.redis_limiter import BackendError
from tests.integration.test_queue import due_entries
from tests.redis.test_redis_limiter import SlowHandler, workers, write_config
from tests.redis.worker import message
from tests.redis_server import RedisServer, client_for
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
