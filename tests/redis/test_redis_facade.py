"""The smtplib facade with the shared Redis backend: worker processes running unchanged
smtplib code (``import smtpretry as smtplib``, tests/redis/worker.py ``facade``) in several
threads, configured only through ``SMTPRETRY_CONFIG``, against one scripted aiosmtpd server
in this process.

Assertions are made at the server (sessions open at once, refusals, copies per recipient)
and in Redis (the shared cap, the slots the workers left behind).

The last two tests pin two bugs these tests found, now fixed: a facade process that
exited kept its slots in Redis for the whole lease (it now closes its pools and limiters
at exit), and threads making their first facade call at once could each read the
configuration file into a configuration (and so pools and limiters) of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from smtpretry.queue.crypto import KEY_ENV, generate_key
from tests.redis.test_redis_limiter import SlowHandler
from tests.redis_server import client_for
from tests.servers import R421_TOO_MANY, serve

ROOT = Path(__file__).resolve().parents[2]
WORKER = str(ROOT / "tests" / "redis" / "worker.py")
PROCESSES, THREADS, PER_THREAD = 3, 4, 8


@pytest.fixture(autouse=True)
def _queue_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, generate_key())  # a backend config puts the queue on Redis too


def write_config(tmp_path: Path, redis_url: str, port: int, *, cap: int) -> Path:
    """A configuration file as an operator writes it: the backend, a generous default,
    and a rule capping this one destination."""
    path = tmp_path / "smtpretry.toml"
    path.write_text(
        f'backend = "{redis_url}"\n'
        "[defaults]\n"
        "max_connections = 10\n"
        "[defaults.retry]\n"
        "backoff_base = 0.001\nbackoff_cap = 0.01\nmax_attempts = 50\n"
        f'[destinations."127.0.0.1:{port}"]\n'
        f"max_connections = {cap}\n"
        "cap_recovery = 100000\n"  # a cap lowered by throttling stays down during the test
    )
    return path


async def facade_workers(
    config: Path, port: int, *, processes: int = PROCESSES, per_thread: int = PER_THREAD,
    threads: int = THREADS, hold: bool = True, timeout_s: float = 30,
) -> list[dict[str, Any]]:
    """Run facade workers at once, configured only by ``SMTPRETRY_CONFIG``; their JSON
    lines, after every one has exited with status 0.

    With ``hold`` they start sending together, once every one has started (so that they
    contend for the cap from the first message; a worker that sent alone first would keep
    idle connections, and their slots, up to its ``idle_timeout`` while the others wait),
    and exit together once all have reported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SMTPRETRY_CONFIG": str(config)}
    logs = [config.with_name(f"worker{n}.stderr") for n in range(processes)]
    procs = []
    for n in range(processes):
        with logs[n].open("wb") as err:
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, WORKER, "facade", str(port), str(per_thread), str(threads), f"p{n}",
                *(["hold"] if hold else []), env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=err,
            ))

    async def lines() -> list[bytes]:
        return await asyncio.gather(*(p.stdout.readline() for p in procs if p.stdout is not None))

    def tell_all() -> None:
        for p in procs:
            if p.stdin is not None and p.returncode is None:
                p.stdin.write(b"go\n")

    try:
        async with asyncio.timeout(timeout_s):
            if hold:
                ready = await lines()
                assert ready == [b"ready\n"] * processes, [log.read_text()[-2000:] for log in logs]
                tell_all()  # all at once
            reports = await lines()
            if hold:
                tell_all()  # every worker has reported: they may exit now
            codes = await asyncio.gather(*(p.wait() for p in procs))
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for code, log in zip(codes, logs, strict=True):
        assert code == 0, log.read_text(errors="replace")[-3000:]
    results = [json.loads(line) for line in reports]
    assert [r["pid"] for r in results] == [p.pid for p in procs]
    return results


def every_recipient() -> Counter[str]:
    return Counter(
        {f"p{n}-{t}-{i}@example.com": 1 for n in range(PROCESSES) for t in range(THREADS)
         for i in range(PER_THREAD)}
    )


def live_slots_of(redis_url: str, limit_key: str, pids: list[int]) -> list[tuple[str, float]]:
    """The slots in Redis held by these (exited) processes whose lease has not run out."""
    probe = client_for(redis_url)
    try:
        seconds, micros = probe.time()
        now_ms = seconds * 1000 + micros / 1000
        members = probe.zrange(f"smtpretry:limit:{limit_key}:slots", 0, -1, withscores=True)
    finally:
        probe.close()
    owners = tuple(f"{socket.gethostname()}:{pid}:" for pid in pids)
    return [(m.decode(), expiry - now_ms) for m, expiry in members
            if m.decode().startswith(owners) and expiry > now_ms]


async def workers_capped_at_two(
    handler: SlowHandler, tmp_path: Path, redis_url: str
) -> tuple[list[dict[str, Any]], list[tuple[str, float]], dict[str, str]]:
    """The facade workers against ``handler`` with the destination capped at 2: their
    reports, the slots they left in Redis, and the shared cap as Redis holds it."""
    async with serve(handler) as port:
        config = write_config(tmp_path, redis_url, port, cap=2)
        results = await facade_workers(config, port)
        limit_key = f"127.0.0.1:{port}"
        left = live_slots_of(redis_url, limit_key, [r["pid"] for r in results])
        return results, left, shared_cap(redis_url, limit_key)


def shared_cap(redis_url: str, limit_key: str) -> dict[str, str]:
    probe = client_for(redis_url)
    try:
        fields = probe.hgetall(f"smtpretry:limit:{limit_key}:cap")
    finally:
        probe.close()
    return {k.decode(): v.decode() for k, v in fields.items()}


async def test_facade_processes_share_the_cap_of_the_config_file_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    # Without the shared cap, 3 processes each capped at 2 would open up to 6 at once.
    handler = SlowHandler(delay_s=0.01)
    results, left, cap = await workers_capped_at_two(handler, tmp_path, redis_url)
    assert [(r["errors"], r["refused"], r["deferred"]) for r in results] == [([], {}, [])] * PROCESSES
    assert [r["delivered"] for r in results] == [THREADS * PER_THREAD] * PROCESSES
    assert handler.copies == every_recipient()
    assert handler.max_active <= 2
    assert handler.max_active == 2  # the cap is used, not just respected
    assert handler.sessions_refused == 0
    assert cap["configured"] == "2" and cap["current"] == "2"  # the rule's cap, kept in Redis
    assert left == []  # the workers gave their slots back as they exited


async def test_facade_processes_retry_421s_under_the_shared_cap(
    tmp_path: Path, redis_url: str
) -> None:
    # The server allows one session and answers 421 to the next one: the facade retries,
    # and the shared cap comes down to what the server allows.
    handler = SlowHandler(delay_s=0.002, max_sessions=1, over_limit_reply=R421_TOO_MANY)
    results, left, cap = await workers_capped_at_two(handler, tmp_path, redis_url)
    assert [(r["errors"], r["refused"], r["deferred"]) for r in results] == [([], {}, [])] * PROCESSES
    assert handler.copies == every_recipient()  # each exactly once, despite the 421s
    assert handler.sessions_refused >= 1  # the server did throttle
    assert handler.max_active == 1
    assert cap["configured"] == "2" and cap["current"] == "1"  # lowered for every worker
    assert left == []  # the workers gave their slots back as they exited


async def test_a_facade_process_that_exits_leaves_no_slot_held_in_redis(
    tmp_path: Path, redis_url: str
) -> None:
    handler = SlowHandler(delay_s=0)
    async with serve(handler) as port:
        config = write_config(tmp_path, redis_url, port, cap=2)
        [result] = await facade_workers(config, port, processes=1, threads=1, per_thread=1, hold=False)
        left = live_slots_of(redis_url, f"127.0.0.1:{port}", [result["pid"]])
    assert result["delivered"] == 1 and handler.copies == Counter({"p0-0-0@example.com": 1})
    assert left == []  # nothing left that would keep another worker waiting


# Each round: a process whose configuration has not been read yet, and 12 threads making
# their first facade call at once; how many Config objects they got.
FIRST_USE = """
import json, threading
from smtpretry import config

def first_use_at_once(n=12):
    config._active = None  # as in a process that has not read SMTPRETRY_CONFIG yet
    barrier = threading.Barrier(n)
    seen = []
    def thread():
        barrier.wait()
        seen.append(config.active_config())  # what SMTP() asks first
    threads = [threading.Thread(target=thread) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len({id(c) for c in seen})

print(json.dumps([first_use_at_once() for _ in range(10)]))
"""


async def test_threads_that_read_smtpretry_config_at_once_share_one_configuration(
    tmp_path: Path, redis_url: str
) -> None:
    config = write_config(tmp_path, redis_url, 25, cap=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SMTPRETRY_CONFIG": str(config)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FIRST_USE, env=env, stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert json.loads(out) == [1] * 10  # one configuration per process, as configure() makes
