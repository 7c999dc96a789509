"""Connection caps shared through Redis by worker processes (tests/redis/worker.py), each
with its own Mailer and limiter, sending to one scripted aiosmtpd server in this process.

Assertions are made at the server (sessions open at once, refusals, copies per recipient)
and in Redis (the slots and the shared cap). Leases are made short through the limiter's
public ``lease_s``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from smtpretry import Limits, Mailer, QueueError, RetryPolicy, configure_logging, load_config
from smtpretry.errors import BackendError
from smtpretry.limits.redis import RedisSlots, redis_limiter
from smtpretry.queue.crypto import KEY_ENV, generate_key
from tests.redis.worker import message
from tests.redis_server import RedisServer, client_for, require_redis
from tests.servers import R250, R421_TOO_MANY, ScriptedHandler, serve, wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKER = str(ROOT / "tests" / "redis" / "worker.py")
FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.01, max_attempts=50)


@pytest.fixture(autouse=True)
def _queue_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, generate_key())  # a backend config puts the queue on Redis too


def write_config(tmp_path: Path, redis_url: str, *, cap: int, extra: str = "") -> str:
    path = tmp_path / "smtpretry.toml"
    path.write_text(
        f'backend = "{redis_url}"\n'
        "[defaults]\n"
        f"max_connections = {cap}\n"
        'idle_timeout = "1s"\n'
        f"{extra}"
        "[defaults.retry]\n"
        "backoff_base = 0.001\nbackoff_cap = 0.01\nmax_attempts = 50\n"
    )
    return str(path)


class SlowHandler(ScriptedHandler):
    """Accepts everything, a little slowly, so that workers contend for slots."""

    def __init__(self, delay_s: float = 0.005, **kw: Any) -> None:
        super().__init__(**kw)
        self.delay_s = delay_s

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(self.delay_s)
        return await super().handle_DATA(server, session, envelope)


async def workers(*argvs: list[str]) -> list[dict[str, Any]]:
    """Run worker processes at once; their JSON lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, WORKER, *argv, env=env,
                                             stdout=asyncio.subprocess.PIPE)
        for argv in argvs
    ]
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0] * len(procs)
    return [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]


async def test_four_worker_processes_never_open_more_than_the_shared_cap(
    tmp_path: Path, redis_url: str
) -> None:
    handler = SlowHandler()
    config = write_config(tmp_path, redis_url, cap=3)
    async with serve(handler) as port:
        results = await workers(*(["send", config, str(port), "40", "6", f"w{i}"] for i in range(4)))
    assert handler.max_active <= 3
    assert handler.max_active == 3  # the cap is used, not just respected
    assert handler.sessions_refused == 0
    assert [r["delivered"] for r in results] == [40] * 4
    assert handler.copies == Counter({f"w{i}-{n}@example.com": 1 for i in range(4) for n in range(40)})


async def test_a_worker_killed_holding_slots_blocks_nobody_beyond_its_lease(
    tmp_path: Path, redis_url: str
) -> None:
    lease_s = 2.0  # short, yet long enough that a loaded machine does not miss a renewal
    release = asyncio.Event()

    class Stuck(ScriptedHandler):
        """The first three transactions hang (the killed worker's)."""

        stuck = 0

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            if self.stuck < 3:
                self.stuck += 1
                await release.wait()
            return await super().handle_DATA(server, session, envelope)

    handler = Stuck()
    config = write_config(tmp_path, redis_url, cap=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with serve(handler) as port:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, WORKER, "send", config, str(port), "3", "3", "dead", str(lease_s), env=env,
        )
        limit_key = f"127.0.0.1:{port}"
        probe = client_for(redis_url)
        try:
            await wait_until(lambda: handler.stuck == 3, timeout_s=10)
            assert probe.zcard(f"smtpretry:limit:{limit_key}:slots") == 3
        finally:
            proc.send_signal(signal.SIGKILL)  # no finally blocks, no give-back, no QUIT
            await proc.wait()
        killed_at = time.monotonic()
        # Nobody renews the dead worker's leases: a new worker gets a slot once they run out.
        cfg = load_config(config)
        limits = cfg.settings_for("127.0.0.1", port).limits
        limiter = redis_limiter(redis_url, limit_key, limits, lease_s=lease_s)
        async with Mailer("127.0.0.1", port, tls="none", policy=FAST, limiter=limiter) as m:
            async with asyncio.timeout(lease_s + 4):  # the lease, and slack for a loaded machine
                results = await asyncio.gather(*(m.send(message(f"alive-{i}@example.com", i))
                                                 for i in range(3)))
            waited = time.monotonic() - killed_at
            await limiter.close()
        release.set()
    assert [r.delivered for r in results] == [[f"alive-{i}@example.com"] for i in range(3)]
    assert waited >= lease_s * 0.5  # the dead worker's slots did count until their leases ran out
    # Ours were given back at close. The dead worker's may still be listed, past
    # their expiry, until the next script drops them: they count for nobody.
    seconds, micros = probe.time()
    now_ms = seconds * 1000 + micros / 1000
    members = probe.zrange(f"smtpretry:limit:{limit_key}:slots", 0, -1, withscores=True)
    assert isinstance(limiter.slots, RedisSlots)
    assert not [m for m, _ in members if m.decode().startswith(limiter.slots.owner)]
    assert all(expiry <= now_ms for _, expiry in members), (members, now_ms)
    probe.close()


async def test_the_shared_cap_comes_down_for_every_worker_when_the_server_throttles(
    tmp_path: Path, redis_url: str
) -> None:
    handler = SlowHandler(max_sessions=2)  # 421 to the third connection at once
    # No recovery during the test: the cap stays where the throttling put it.
    config = write_config(tmp_path, redis_url, cap=6, extra="cap_recovery = 100000\n")
    async with serve(handler) as port:
        [first] = await workers(["send", config, str(port), "30", "8", "a"])
        refused_by_first = handler.sessions_refused
        probe = client_for(redis_url)
        shared = int(probe.hget(f"smtpretry:limit:127.0.0.1:{port}:cap", "current"))
        # Fresh processes that never saw a 421 start from the lowered shared cap.
        later = await workers(*(["send", config, str(port), "20", "8", f"b{i}"] for i in range(3)))
        probe.close()
    assert first["lowered"] >= 1 and refused_by_first >= 1
    assert shared <= 2 and first["cap"] == shared
    assert [r["cap"] for r in later] == [shared] * 3
    assert [r["lowered"] for r in later] == [0, 0, 0]
    assert handler.sessions_refused == refused_by_first  # the later workers were never refused
    assert first["delivered"] + sum(r["delivered"] for r in later) == 90
    assert set(handler.copies.values()) == {1}


async def test_cap_events_are_logged_by_the_worker_that_moved_the_cap(redis_url: str) -> None:
    handler = SlowHandler(max_sessions=1)
    async with serve(handler) as port:
        limits = Limits(max_connections=4, cap_recovery=100000)
        with capture_logs() as logs:
            limiter = redis_limiter(redis_url, f"127.0.0.1:{port}", limits, lease_s=2.0)
            async with Mailer("127.0.0.1", port, tls="none", policy=FAST, limiter=limiter) as m:
                await asyncio.gather(*(m.send(message(f"r{i}@example.com", i)) for i in range(8)))
                await limiter.close()
    lowered = [e for e in logs if e["event"] == "smtpretry.cap_lowered"]
    assert lowered and lowered[0]["previous_cap"] == 4 and lowered[0]["configured_cap"] == 4
    assert lowered[0]["code"] == 421 and lowered[0]["connections_cap"] < 4
    assert handler.max_active == 1 and set(handler.copies.values()) == {1}


async def test_sends_after_logging_is_reconfigured_log_the_shared_caps_moves_to_the_new_file(
    tmp_path: Path, redis_url: str
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    handler = ScriptedHandler(rcpt=[R250, R250, R421_TOO_MANY] * 8)  # 421 to every third RCPT
    config = load_config(write_config(tmp_path, redis_url, cap=4))
    try:
        async with serve(handler) as port, Mailer("127.0.0.1", port, tls="none", config=config) as m:
            configure_logging(json=True, file=first)
            results = [await m.send(message("r0@example.com", 0))]
            configure_logging(json=True, file=second)
            results += [await m.send(message(f"r{i}@example.com", i)) for i in range(1, 8)]
    finally:
        configure_logging(level="none")  # closes the second file
        structlog.reset_defaults()
    assert [r.delivered for r in results] == [[f"r{i}@example.com"] for i in range(8)]
    assert handler.copies == Counter({f"r{i}@example.com": 1 for i in range(8)})
    written = [json.loads(line) for line in second.read_text().splitlines()]
    lowered = [r for r in written if r["event"] == "smtpretry.cap_lowered"]
    assert lowered and all(r["destination"] == f"127.0.0.1:{port}" for r in lowered)
    assert sum(r["event"] == "smtpretry.send_completed" for r in written) == 7


async def test_redis_down_new_connections_fail_fast_and_sends_in_progress_finish(
    tmp_path: Path,
) -> None:
    server = RedisServer(require_redis(), tmp_path / "redis")
    server.start()
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Gated(ScriptedHandler):
        async def handle_DATA(self, srv, session, envelope):  # type: ignore[no-untyped-def]
            entered.set()
            await gate.wait()
            return await super().handle_DATA(srv, session, envelope)

    handler = Gated()
    with capture_logs() as logs:
        try:
            async with serve(handler) as port:
                limits = Limits(max_connections=2, idle_timeout=0)  # no reuse: every send needs a slot
                limiter = redis_limiter(server.url, f"127.0.0.1:{port}", limits, lease_s=1.0)
                async with Mailer("127.0.0.1", port, tls="none", policy=FAST, limits=limits,
                                  limiter=limiter) as m:
                    in_progress = asyncio.create_task(m.send(message("first@example.com", 0)))
                    await entered.wait()
                    server.stop()  # Redis goes away while a send holds a connection
                    gate.set()
                    assert (await in_progress).delivered == ["first@example.com"]
                    sessions = handler.sessions_total
                    started = time.monotonic()
                    refused = r"backend redis://127\.0\.0\.1:\d+/0: no slot for"
                    with pytest.raises(BackendError, match=refused):
                        await m.send(message("second@example.com", 1))
                    assert time.monotonic() - started < 5  # fails fast, does not wait for Redis
                    assert handler.sessions_total == sessions  # no connection opened outside the cap
                    await limiter.close()
        finally:
            server.stop()
    assert isinstance(BackendError("x"), QueueError)
    assert handler.copies == Counter({"first@example.com": 1})
    # The slot the first send held could not be given back (or, first, renewed): said
    # once, not at every failed try.
    [trouble] = [e for e in logs if e["event"] == "smtpretry.backend_lost"]
    assert trouble["doing"] in ("give back a slot", "renew leases")
    assert (trouble["backend"], trouble["destination"]) == (server.url, f"127.0.0.1:{port}")


async def test_a_backend_error_after_a_delivery_carries_what_was_delivered(tmp_path: Path) -> None:
    # The first transaction takes a (too many recipients: the second goes next), the next
    # MAIL is throttled with 421, and Redis is gone before the retry can have a slot.
    server = RedisServer(require_redis(), tmp_path / "redis")
    server.start()

    class StopsRedis(ScriptedHandler):
        async def handle_DATA(self, srv, session, envelope):  # type: ignore[no-untyped-def]
            server.stop()
            return await super().handle_DATA(srv, session, envelope)

    handler = StopsRedis(rcpt=["250 OK", "452 4.5.3 Too many recipients"],
                         mail=["250 OK", "421 4.7.0 Too many connections, try later"])
    try:
        async with serve(handler) as port:
            limits = Limits(max_connections=2)
            limiter = redis_limiter(server.url, f"127.0.0.1:{port}", limits, lease_s=1.0)
            async with Mailer("127.0.0.1", port, tls="none", policy=FAST, limits=limits,
                              limiter=limiter) as m:
                with pytest.raises(BackendError) as raised:
                    await m.send(message("a@example.com, b@example.com", 0))
                await limiter.close()
    finally:
        server.stop()
    result = raised.value.result
    assert result is not None, "the error keeps what the send did"
    assert result.delivered == ["a@example.com"]
    deferred = result.deferred["b@example.com"]
    assert deferred.failure is not None and deferred.failure.kind.value == "backend"
    assert not deferred.possible_duplicate
    assert handler.copies == Counter({"a@example.com": 1})


async def test_a_lease_that_ran_out_before_its_renewal_is_logged(redis_url: str) -> None:
    slots = RedisSlots(redis_url, "lease-test", Limits(max_connections=2), lease_s=1.0, renew_s=0.05)
    probe = client_for(redis_url)
    with capture_logs() as logs:
        assert await slots.try_take(1)
        # As if this process had stalled past its lease: another worker's script dropped it.
        probe.delete("smtpretry:limit:lease-test:slots")
        async with asyncio.timeout(5):
            while slots.leases_lost == 0:
                await asyncio.sleep(0.02)
        await slots.close()
    lost = [e for e in logs if e["event"] == "smtpretry.lease_lost"]
    assert [(e["leases"], e["lease_s"], e["destination"]) for e in lost][:1] == [(1, 1.0, "lease-test")]
    probe.close()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="lease_s"):
        RedisSlots("redis://127.0.0.1:1/0", "x", Limits(), lease_s=0)


async def test_an_idle_connection_gives_its_slot_to_another_process_that_waits(redis_url: str) -> None:
    # Two limiters on one key are two processes; cap 1, and idle connections kept for a minute.
    handler = ScriptedHandler()
    async with serve(handler) as port:
        key, limits = f"127.0.0.1:{port}", Limits(max_connections=1, idle_timeout=60)

        def mailer() -> Mailer:
            limiter = redis_limiter(redis_url, key, limits, lease_s=3.0, renew_s=0.05)
            return Mailer("127.0.0.1", port, tls="none", policy=FAST, limits=limits, limiter=limiter)

        async with mailer() as first, mailer() as second:
            assert (await first.send(message("a@example.com", 0))).ok
            assert first.pool.has_idle()  # kept for reuse, holding the only slot
            # Without the hand-over this waits for first's idle_timeout (a minute).
            async with asyncio.timeout(10):
                assert (await second.send(message("b@example.com", 1))).ok
            assert not first.pool.has_idle()
            for m in (first, second):
                await m.pool.limiter.close()
    assert handler.copies == Counter({"a@example.com": 1, "b@example.com": 1})
    assert handler.max_active == 1


async def test_a_provider_cap_over_two_mx_hosts_holds_across_two_routing_processes(
    tmp_path: Path, redis_url: str
) -> None:
    # Two domains on one provider's two MX hosts (127.0.0.2 and 127.0.0.3, one handler, so its
    # session count is the provider's), sent to by two Router processes sharing the cap in Redis.
    from tests.dns_server import Zone, dns_server
    from tests.integration.test_router import mx_pair

    provider = SlowHandler(delay_s=0.01)
    mx = [(10, "mx1.p.test"), (10, "mx2.p.test")]
    zone = Zone(mx={"one.test": mx, "two.test": mx},
                a={"mx1.p.test": ["127.0.0.2"], "mx2.p.test": ["127.0.0.3"]})
    with dns_server(zone) as dns:
        async with mx_pair(provider, provider) as port:
            path = tmp_path / "routes.toml"
            path.write_text(
                f'backend = "{redis_url}"\n'
                'helo_name = "client.example.org"\n'
                "[defaults]\nmax_connections = 2\n"
                "[defaults.retry]\nbackoff_base = 0.001\nbackoff_cap = 0.01\nmax_attempts = 50\n"
                f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns.port}\ntimeout = "2s"\n'
                f'[routes.default]\nvia = "mx"\nmx_port = {port}\nallow_private_mx = true\n'
            )
            config = str(path)
            outs = await workers(*(["route", config, "30", "4", tag, "one.test", "two.test"]
                                   for tag in ("w1", "w2")))
    assert [o["delivered"] for o in outs] == [30, 30]
    assert provider.max_active <= 2  # each process alone would open 2: 4 without the shared cap
    assert provider.sessions_refused == 0
    assert len(provider.copies) == 60 and set(provider.copies.values()) == {1}
