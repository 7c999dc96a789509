"""A destination an operator suspended (stored in the queue) is honoured by the engine: a
Mailer's send, the queue runner's resend and the smtplib facade's sendmail defer its
recipients at once, to the end of the suspension, without connecting; the decision log says
so (``destination_suspended``/``destination_resumed``, and each deferral's reason).

Assertions are made at the server (no connection was made) and in the queue, on real
SQLite files and scripted aiosmtpd servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import smtpretry
from smtpretry import Mailer, RetryPolicy
from smtpretry._time import iso
from smtpretry.config import Config, parse_config
from smtpretry.queue import Destination, Suspension
from smtpretry.queue.crypto import KEY_ENV
from smtpretry.queue.sqlite import SQLiteQueue
from smtpretry.runner import QueueRunner
from tests.integration.test_queue import due_entries, message
from tests.servers import ScriptedHandler, serve, serve_threaded

FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=3)
TSS04 = "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def _events(logs: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == name]


async def test_a_send_to_a_suspended_destination_defers_everyone_unsent_until_it_ends(
    tmp_path: Path,
) -> None:
    handler = ScriptedHandler()
    queue = SQLiteQueue(tmp_path / "q.db")
    async with serve(handler) as port:
        until = time.time() + 3600
        await queue.suspend(Suspension(f"127.0.0.1:{port}", until, TSS04, time.time()))
        mailer = Mailer("127.0.0.1", port, tls="none", policy=FAST, queue=queue)
        mailer.suspension_check_s = 0  # read the queue at every send
        with capture_logs() as logs:
            first = await mailer.send(message("a@example.com", "b@example.com"))
            second = await mailer.send(message("c@example.com", msgid="<m2@test>"))
        assert handler.commands == [] and handler.sessions_total == 0  # nothing was connected
        assert sorted([*first.deferred, *second.deferred]) == ["a@example.com", "b@example.com",
                                                               "c@example.com"]
        assert {o.next_attempt_at for o in first.deferred.values()} == {until}
        # Logged once for this process, then each deferral names the suspension.
        [suspended] = _events(logs, "smtpretry.destination_suspended")
        assert suspended["destination"] == f"127.0.0.1:{port}"
        assert (suspended["suspended_until"], suspended["reason"]) == (round(until, 3), TSS04)
        deferrals = _events(logs, "smtpretry.recipient_deferred")
        assert len(deferrals) == 3
        for d in deferrals:
            assert (d["attempt"], d["failure"], d["code"], d["category"], d["action"]) == (
                0, "suspended", None, "suspended", "defer")
            assert d["reason"] == f"127.0.0.1:{port} suspended until {iso(until)}"
            assert TSS04 in str(d["text"])
        # Queued to come back when the suspension ends; the schedule has not moved on.
        [entry, _] = await queue.entries()
        assert {(r.next_attempt_at, r.deferrals, r.failure) for r in entry.recipients} == {
            (until, 0, "suspended")}
        # Lifted: the next send connects and delivers, and the log says it resumed.
        assert await queue.resume(f"127.0.0.1:{port}") is not None
        with capture_logs() as logs:
            third = await mailer.send(message("d@example.com", msgid="<m3@test>"))
        assert list(third.delivered) == ["d@example.com"]
        assert handler.copies == Counter({"d@example.com": 1})
        [resumed] = _events(logs, "smtpretry.destination_resumed")
        assert resumed["destination"] == f"127.0.0.1:{port}" and resumed["reason"] == TSS04
        await mailer.close()
    await queue.close()


async def test_a_suspension_by_host_or_by_limit_key_covers_the_destination(tmp_path: Path) -> None:
    handler = ScriptedHandler()
    queue = SQLiteQueue(tmp_path / "q.db")
    config = parse_config({"destinations": {"mx:localhost": {"max_connections": 2}}})
    assert config.settings_for("localhost", 25).limit_key == "mx:localhost"
    async with serve(handler) as port:
        for key in ("127.0.0.1", "mx:localhost"):
            await queue.suspend(Suspension(key, time.time() + 60, "", time.time()))
            host = "127.0.0.1" if key == "127.0.0.1" else "localhost"
            mailer = Mailer(host, port, tls="none", policy=FAST, queue=queue, config=config)
            result = await mailer.send(message("a@example.com", msgid=f"<{key}@test>"))
            assert list(result.deferred) == ["a@example.com"], key
            await mailer.close()
            await queue.resume(key)
    assert handler.sessions_total == 0
    await queue.close()


async def test_the_runner_defers_a_suspended_destinations_entries_without_connecting(
    tmp_path: Path,
) -> None:
    handler = ScriptedHandler()
    queue = SQLiteQueue(tmp_path / "q.db")
    async with serve(handler) as port:
        now = time.time()
        for e in due_entries(port, 4, now - 1):
            await queue.put(e)
        until = now + 600
        await queue.suspend(Suspension(f"127.0.0.1:{port}", until, "paused", now))

        def factory(d: Destination) -> Mailer:
            return Mailer(d.host, d.port, tls=d.tls, policy=FAST)  # no queue of its own

        with capture_logs() as logs:
            stats = await QueueRunner(queue, factory, lease_s=5).run(once=True)
        assert (stats.entries, stats.deferred, stats.delivered) == (4, 4, 0)
        assert handler.sessions_total == 0
        left = await queue.entries()
        assert len(left) == 4 and {e.next_attempt_at for e in left} == {until}
        assert all(not r.possible_duplicate for e in left for r in e.recipients)  # nothing was sent
        assert len(_events(logs, "smtpretry.destination_suspended")) == 1
        # Resumed and made due: the next run delivers them.
        await queue.resume(f"127.0.0.1:{port}")
        await queue.retry(None, now=time.time())
        stats = await QueueRunner(queue, factory, lease_s=5).run(once=True)
        assert stats.delivered == 4 and await queue.entries() == []
    assert sum(handler.copies.values()) == 4 and set(handler.copies.values()) == {1}
    await queue.close()


def test_the_facade_defers_to_the_queue_without_sending_while_suspended(tmp_path: Path) -> None:
    db = tmp_path / "q.db"

    async def suspend(key: str) -> None:
        q = SQLiteQueue(db)
        await q.suspend(Suspension(key, time.time() + 300, "maintenance", time.time()))
        await q.close()

    smtpretry.configure(Config(policy=FAST, queue_url=f"sqlite:///{db}"))
    handler = ScriptedHandler()
    try:
        with serve_threaded(handler) as port:
            asyncio.run(suspend(f"127.0.0.1:{port}"))
            with smtpretry.SMTP("127.0.0.1", port) as s:
                refused = s.sendmail("me@example.org", ["a@example.com", "b@example.com"],
                                     "Subject: x\r\n\r\nhi\r\n")
                assert refused == {}  # deferred to the queue, not refused
                result = s.last_result
            assert result is not None and result.queue_id is not None
            assert sorted(result.deferred) == ["a@example.com", "b@example.com"]
            assert {o.failure.kind.value for o in result.deferred.values() if o.failure} == {"suspended"}
            # smtplib's connect() opened the caller's session; no transaction was begun on it.
            assert not [c for c, _ in handler.commands if c in ("MAIL", "RCPT", "DATA")]
            assert handler.copies == Counter()
    finally:
        smtpretry.configure(Config())


async def test_a_router_defers_a_provider_suspended_by_its_limit_key_and_routes_the_others(
    tmp_path: Path,
) -> None:
    from smtpretry import Router
    from tests.dns_server import Zone, dns_server
    from tests.integration.test_router import MX1, MX2, config, mx_pair
    from tests.integration.test_router import message as routed

    provider, other = ScriptedHandler(), ScriptedHandler()
    zone = Zone(mx={"one.test": [(10, "mx1.p.test")], "two.test": [(10, "mx.q.test")]},
                a={"mx1.p.test": [MX1], "mx.q.test": [MX2]})
    queue = SQLiteQueue(tmp_path / "q.db")
    until = time.time() + 900
    await queue.suspend(Suspension("mx:.p.test", until, "421 4.7.0 [TSS04]", time.time()))
    with dns_server(zone) as dns:
        async with mx_pair(provider, other) as port:
            cfg = config(dns.port, port, destinations={"mx:.p.test": {"max_connections": 2}})
            with capture_logs() as logs:
                async with Router(cfg, queue=queue) as router:
                    result = await router.send(routed("ann@one.test", "bob@two.test"))
    assert list(result.delivered) == ["bob@two.test"] and dict(other.copies) == {"bob@two.test": 1}
    assert list(result.deferred) == ["ann@one.test"] and provider.sessions_total == 0
    assert result.deferred["ann@one.test"].next_attempt_at == until
    [suspended] = _events(logs, "smtpretry.destination_suspended")
    assert suspended["destination"] == "mx:.p.test"
    [deferral] = _events(logs, "smtpretry.recipient_deferred")
    assert deferral["reason"] == f"mx:.p.test suspended until {iso(until)}"
    await queue.close()


async def test_asking_for_suspensions_creates_no_queue(tmp_path: Path) -> None:
    handler = ScriptedHandler()
    db = tmp_path / "state" / "q.db"
    async with serve(handler) as port:
        async with Mailer("127.0.0.1", port, tls="none", policy=FAST, queue=f"sqlite:///{db}") as mailer:
            result = await mailer.send(message("a@example.com"))
    assert list(result.delivered) == ["a@example.com"]
    assert not db.exists() and not db.parent.exists()  # the first deferral creates the queue, not a send
