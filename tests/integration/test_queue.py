"""The durable queue end to end: Mailer(queue=...) defers into a real SQLite
file, runners resend through scripted aiosmtpd servers on 127.0.0.1.

Assertions are made at the server (copies per recipient) and in the queue.
Leases are made short through the runner's own parameters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
import sys
import textwrap
import time
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smtpretry import Delivery, Mailer, QueueError, RetryPolicy
from smtpretry.envelope import build_envelope
from smtpretry.queue import Destination, PendingRecipient, QueueEntry, QueueRunner
from smtpretry.queue.base import entry_key
from smtpretry.queue.crypto import KEY_ENV
from smtpretry.queue.sqlite import SQLiteQueue
from tests.servers import R422_OVER_QUOTA, ScriptedHandler, serve

FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=3)
NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def message(*to: str, msgid: str = "<m1@test>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.org"
    msg["To"] = ", ".join(to)
    msg["Subject"] = "queued"
    msg["Message-ID"] = msgid
    msg.set_content("the body of a queued message\n")
    return msg


def mailer(port: int, **kw: object) -> Mailer:
    kw.setdefault("tls", "none")
    kw.setdefault("policy", FAST)
    kw.setdefault("rng", random.Random(0))
    return Mailer("127.0.0.1", port, **kw)  # type: ignore[arg-type]


def due_entries(port: int, n: int, now: float) -> list[QueueEntry]:
    """``n`` one-recipient messages for 127.0.0.1:port, all due at ``now``."""
    dest = Destination("127.0.0.1", port, "none")
    out = []
    for i in range(n):
        env = build_envelope(message(f"r{i}@example.com", msgid=f"<m{i}@test>"))
        out.append(QueueEntry(
            key=entry_key(dest, env), destination=dest, sender=env.sender, message_id=env.message_id,
            recipients=(PendingRecipient(f"r{i}@example.com", now, deferrals=1, first_attempt_at=now),),
            created_at=now, next_attempt_at=now, expires_at=now + 86400, data=env.data,
        ))
    return out


async def test_a_deferred_recipient_is_queued_then_delivered_once_when_due(tmp_path: Path) -> None:
    handler = ScriptedHandler(rcpt={"full@x": [R422_OVER_QUOTA]})
    clock = Clock()
    url = f"sqlite://{tmp_path}/queue.db"
    async with serve(handler) as port, mailer(port, queue=url, clock=clock) as m:
        with capture_logs() as logs:
            result = await m.send(message("ok@example.com", "full@x"))
        assert result.delivered == ["ok@example.com"] and list(result.deferred) == ["full@x"]
        assert m.queue is not None and result.queue_id is not None
        entry = await m.queue.get(result.queue_id)
        [pending] = entry.recipients
        assert (pending.address, pending.code, pending.enhanced, pending.phase) == (
            "full@x", 422, "4.2.2", "rcpt"
        )
        assert (pending.category, pending.action) == ("mailbox_full", "defer")
        assert (pending.deferrals, pending.first_attempt_at, pending.next_attempt_at) == (1, NOW, NOW + 300)
        assert entry.destination == Destination("127.0.0.1", port, "none")
        assert (entry.created_at, entry.expires_at) == (NOW, NOW + FAST.max_lifetime)
        queued = [e for e in logs if e["event"] == "smtpretry.message_queued"]
        assert [(e["queue_id"], e["recipients"], e["next_attempt_at"]) for e in queued] == [
            (result.queue_id, ["full@x"], NOW + 300)
        ]

        assert (await m.run_queue(once=True)).entries == 0  # not due yet
        clock.now = NOW + 301
        stats = await m.run_queue(once=True)
        assert (stats.entries, stats.delivered, stats.deferred) == (1, 1, 0)
        assert await m.queue.entries() == []
        assert (await m.run_queue(once=True)).entries == 0
    assert handler.copies == Counter({"ok@example.com": 1, "full@x": 1})


async def test_a_queue_that_cannot_be_written_raises_with_every_recipients_outcome(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    db.write_bytes(b"this is not an SQLite database, " * 64)
    handler = ScriptedHandler(rcpt={"full@x": [R422_OVER_QUOTA]})
    async with serve(handler) as port, mailer(port, queue=f"sqlite://{db}") as m:
        with pytest.raises(QueueError, match="not a queue database") as caught:
            await m.send(message("ok@example.com", "full@x"))
    result = caught.value.result
    assert result is not None and result.queue_id is None
    assert result.delivered == ["ok@example.com"] and list(result.deferred) == ["full@x"]
    assert result.deferred["full@x"].reply is not None and result.deferred["full@x"].reply.code == 422
    assert handler.copies == Counter({"ok@example.com": 1})


async def test_deferred_again_takes_the_next_step_and_keeps_one_entry(tmp_path: Path) -> None:
    handler = ScriptedHandler(rcpt={"full@x": [R422_OVER_QUOTA, R422_OVER_QUOTA]})
    clock = Clock()
    async with serve(handler) as port, mailer(port, queue=f"sqlite://{tmp_path}/q.db", clock=clock) as m:
        first = await m.send(message("full@x"))
        clock.now = NOW + 300
        stats = await m.run_queue(once=True)
        assert (stats.entries, stats.delivered, stats.deferred) == (1, 0, 1)
        assert m.queue is not None
        [entry] = await m.queue.entries()
        assert entry.id == first.queue_id and entry.attempts == 1
        [pending] = entry.recipients
        assert (pending.deferrals, pending.first_attempt_at) == (2, NOW)
        assert pending.next_attempt_at == NOW + 300 + FAST.defer_schedule[1]
        clock.now = pending.next_attempt_at
        assert (await m.run_queue(once=True)).delivered == 1
        assert await m.queue.entries() == []
    assert handler.copies == Counter({"full@x": 1})


async def test_recipients_of_one_message_deferred_at_different_times_share_one_entry(tmp_path: Path) -> None:
    handler = ScriptedHandler(rcpt={"a@x": [R422_OVER_QUOTA], "b@x": ["250 OK", R422_OVER_QUOTA]})
    clock = Clock()
    async with serve(handler) as port, mailer(port, queue=f"sqlite://{tmp_path}/q.db", clock=clock) as m:
        r1 = await m.send(message("a@x", "b@x"))  # a deferred, b delivered
        clock.now = NOW + 60
        r2 = await m.send(message("a@x", "b@x"), recipients=["b@x"])  # the same message again: b deferred
        assert r1.queue_id == r2.queue_id is not None
        assert m.queue is not None
        [entry] = await m.queue.entries()
        assert {r.address: r.next_attempt_at for r in entry.recipients} == {
            "a@x": NOW + 300, "b@x": NOW + 360,
        }
        assert entry.next_attempt_at == NOW + 300
        clock.now = NOW + 300  # only a is due: b stays for later
        assert (await m.run_queue(once=True)).delivered == 1
        [entry] = await m.queue.entries()
        assert [r.address for r in entry.recipients] == ["b@x"]
        clock.now = NOW + 400
        assert (await m.run_queue(once=True)).delivered == 1
        assert await m.queue.entries() == []
    assert handler.copies == Counter({"a@x": 1, "b@x": 2})  # b: the first send, then the queue


async def test_an_entry_past_its_lifetime_expires_with_an_event_and_the_callback(tmp_path: Path) -> None:
    handler = ScriptedHandler(rcpt={"full@x": [R422_OVER_QUOTA]})
    clock = Clock()
    expired: list[QueueEntry] = []

    async def bounce(entry: QueueEntry) -> None:
        expired.append(entry)

    policy = RetryPolicy(backoff_base=0.001, max_attempts=2, max_lifetime=3600.0)
    async with serve(handler) as port, mailer(
        port, queue=f"sqlite://{tmp_path}/q.db", clock=clock, policy=policy
    ) as m:
        result = await m.send(message("full@x"))
        assert m.queue is not None
        await m.queue.retry(None, now=NOW + 4000)  # due, but too late
        clock.now = NOW + 4000
        with capture_logs() as logs:
            stats = await m.run_queue(once=True, on_expired=bounce)
        assert (stats.entries, stats.expired, stats.delivered) == (1, 1, 0)
        assert await m.queue.entries() == []
    assert [e.id for e in expired] == [result.queue_id]
    assert [r.address for r in expired[0].recipients] == ["full@x"]
    events = [e for e in logs if e["event"] == "smtpretry.message_expired"]
    assert [(e["queue_id"], e["recipients"], e["expires_at"]) for e in events] == [
        (result.queue_id, ["full@x"], NOW + 3600)
    ]
    assert handler.copies == Counter()


async def test_run_queue_without_a_queue_is_a_queue_error() -> None:
    with pytest.raises(QueueError, match="no queue"):
        await Mailer("127.0.0.1", 2525, tls="none").run_queue(once=True)


async def test_two_runners_on_one_file_deliver_each_recipient_once(tmp_path: Path) -> None:
    # A little slow at the server, so that neither runner can drain the file before the
    # other has claimed its first batch: both must take a share.
    handler = SlowHandler()
    db = tmp_path / "q.db"
    now = time.time()
    async with serve(handler) as port:
        seed = SQLiteQueue(db)
        await seed.put_many(due_entries(port, 60, now - 1))
        await seed.close()

        def factory(d: Destination) -> Mailer:
            return mailer(d.port)

        runners = [
            QueueRunner(SQLiteQueue(db), factory, concurrency=4, lease_s=2.0, owner=f"r{i}")
            for i in range(2)
        ]
        stats = await asyncio.gather(*(r.run(once=True) for r in runners))
        assert await runners[0].queue.entries() == []
        for r in runners:
            await r.queue.close()
    assert sum(s.delivered for s in stats) == 60
    assert all(s.entries > 0 for s in stats)
    assert handler.copies == Counter({f"r{i}@example.com": 1 for i in range(60)})


_RUNNER = textwrap.dedent("""
    import asyncio, sys
    from smtpretry import Mailer, RetryPolicy
    from smtpretry.queue import QueueRunner

    url, port = sys.argv[1], int(sys.argv[2])
    policy = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=3, delivery=sys.argv[4])
    runner = QueueRunner(
        url, lambda d: Mailer(d.host, d.port, tls=d.tls, policy=policy),
        concurrency=int(sys.argv[3]), lease_s=0.5, poll_interval_s=0.05,
    )
    asyncio.run(runner.run())
""")


class SlowHandler(ScriptedHandler):
    """Accepts everything, a little slowly, so that a run takes long enough to be killed midway."""

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.003)
        return await super().handle_DATA(server, session, envelope)


async def test_a_runner_killed_with_sigkill_loses_nothing(tmp_path: Path) -> None:
    total, concurrency = 500, 8
    handler = SlowHandler()
    db = tmp_path / "q.db"
    url = f"sqlite://{db}"
    async with serve(handler) as port:
        seed = SQLiteQueue(db)
        await seed.put_many(due_entries(port, total, time.time() - 1))
        await seed.close()

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RUNNER, url, str(port), str(concurrency), "at_least_once",
        )
        try:
            async with asyncio.timeout(15):
                while handler.copies.total() < 150:
                    await asyncio.sleep(0.002)
        finally:
            proc.kill()  # SIGKILL: no finally blocks, no lease release, no QUIT
            await proc.wait()
        at_kill = handler.copies.total()
        assert at_kill < total, "the first runner finished before it could be killed"

        # Its leases run out after 0.5 s; then a second runner finishes the queue.
        await asyncio.sleep(0.6)
        queue = SQLiteQueue(db)
        stats = await QueueRunner(
            queue, lambda d: mailer(d.port), concurrency=concurrency, lease_s=0.5
        ).run(once=True)
        assert await queue.entries() == []
        await queue.close()
    assert stats.delivered > 0
    assert set(handler.copies) == {f"r{i}@example.com" for i in range(total)}  # nobody lost
    duplicates = sum(n - 1 for n in handler.copies.values())
    assert duplicates <= concurrency  # only what was in flight at the kill


@pytest.mark.parametrize("delivery", [Delivery.AT_LEAST_ONCE, Delivery.AT_MOST_ONCE])
async def test_an_entry_a_dead_runner_was_sending_is_sent_again_only_at_least_once_and_flagged(
    tmp_path: Path, delivery: Delivery
) -> None:
    handler = ScriptedHandler()
    clock = Clock()
    queue = SQLiteQueue(tmp_path / "q.db")
    policy = dataclasses.replace(FAST, delivery=delivery)
    async with serve(handler) as port:
        sending, _idle = [await queue.put(e) for e in due_entries(port, 2, NOW)]
        await queue.claim(owner="dead-runner", now=NOW, lease_s=30, limit=2)
        # It marked the first as it began to send it, and was killed before the second.
        assert await queue.mark_sending(sending, owner="dead-runner", recipients=["r0@example.com"])
        clock.now = NOW + 31
        with capture_logs() as logs:
            runner = QueueRunner(queue, lambda d: mailer(d.port, policy=policy), clock=clock)
            stats = await runner.run(once=True)
    assert await queue.entries() == [] and stats.delivered == 2
    assumed = [(e["recipients"], e["queue_id"]) for e in logs
               if e["event"] == "smtpretry.message_delivered" and e["assumed"]]
    # Nothing was marked in the second: it was never sent, and is sent as any other.
    if delivery is Delivery.AT_LEAST_ONCE:  # sent again, said to be a possible duplicate
        assert handler.copies == Counter({"r0@example.com": 1, "r1@example.com": 1}) and assumed == []
        assert stats.possible_duplicates == 1
    else:  # the dead runner may have sent it: never again, and the log says it was assumed
        assert handler.copies == Counter({"r1@example.com": 1})
        assert assumed == [(["r0@example.com"], sending)] and stats.possible_duplicates == 0
    await queue.close()


async def test_a_runner_killed_with_sigkill_under_at_most_once_never_duplicates(tmp_path: Path) -> None:
    total, concurrency = 300, 8
    handler = SlowHandler()
    db = tmp_path / "q.db"
    async with serve(handler) as port:
        seed = SQLiteQueue(db)
        await seed.put_many(due_entries(port, total, time.time() - 1))
        await seed.close()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RUNNER, f"sqlite://{db}", str(port), str(concurrency), "at_most_once",
        )
        try:
            async with asyncio.timeout(15):
                while handler.copies.total() < 100:
                    await asyncio.sleep(0.002)
        finally:
            proc.kill()
            await proc.wait()
        await asyncio.sleep(0.6)  # its leases (0.5 s) run out
        queue = SQLiteQueue(db)
        policy = dataclasses.replace(FAST, delivery=Delivery.AT_MOST_ONCE)
        with capture_logs() as logs:
            await QueueRunner(queue, lambda d: mailer(d.port, policy=policy), concurrency=concurrency,
                              lease_s=0.5).run(once=True)
        assert await queue.entries() == []
        await queue.close()
    assert max(handler.copies.values()) == 1  # nobody twice
    assumed = {r for e in logs if e["event"] == "smtpretry.message_delivered" and e["assumed"]
               for r in e["recipients"]}
    assert 0 < len(assumed) <= concurrency  # only what the killed runner held
    assert set(handler.copies) | assumed == {f"r{i}@example.com" for i in range(total)}


@pytest.mark.parametrize("delivery", [Delivery.AT_LEAST_ONCE, Delivery.AT_MOST_ONCE])
async def test_a_runner_stopped_mid_send_gives_the_entry_back_marked_as_a_possible_duplicate(
    tmp_path: Path, delivery: Delivery
) -> None:
    arrived, let_go = asyncio.Event(), asyncio.Event()

    class Hanging(ScriptedHandler):
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            if not arrived.is_set():
                arrived.set()
                await let_go.wait()  # the runner is stopped while the server holds the message
                return "451 4.3.0 Try again later"
            return await super().handle_DATA(server, session, envelope)

    queue = SQLiteQueue(tmp_path / "q.db")
    policy = dataclasses.replace(FAST, delivery=delivery)
    handler = Hanging()
    async with serve(handler) as port:
        entry_id = await queue.put(due_entries(port, 1, time.time() - 1)[0])
        runner = QueueRunner(queue, lambda d: mailer(d.port, policy=policy), lease_s=30)
        task = asyncio.create_task(runner.run(once=True))
        await asyncio.wait_for(arrived.wait(), 5)
        task.cancel()  # Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = await queue.stats(now=time.time())
        [held] = (await queue.get(entry_id)).recipients
        let_go.set()
        # Due again at once either way, marked: the server may have the message.
        assert (stats.due, stats.leased) == (1, 0) and held.possible_duplicate
        with capture_logs() as logs:
            again = await QueueRunner(queue, lambda d: mailer(d.port, policy=policy)).run(once=True)
    assert await queue.entries() == []
    assumed = [e["recipients"] for e in logs if e["event"] == "smtpretry.message_delivered" and e["assumed"]]
    if delivery is Delivery.AT_LEAST_ONCE:  # sent again, and said to be a possible duplicate
        assert handler.copies == Counter({"r0@example.com": 1}) and assumed == []
        assert (again.delivered, again.possible_duplicates) == (1, 1)
    else:  # never sent again: taken as delivered, and the log says it was assumed
        assert handler.copies == Counter() and assumed == [["r0@example.com"]]
        assert (again.delivered, again.possible_duplicates) == (1, 0)
    await queue.close()


@pytest.mark.parametrize("delivery", [Delivery.AT_LEAST_ONCE, Delivery.AT_MOST_ONCE])
async def test_a_write_back_that_fails_after_delivery_is_resent_flagged_or_assumed(
    tmp_path: Path, delivery: Delivery
) -> None:
    """The server accepts; then the runner cannot write the outcome back (the file is
    locked by another process, as a full disk would refuse it). What it sent stays
    marked, and the next run sends it again flagged possible_duplicate (at most once:
    takes it as delivered)."""
    db = tmp_path / "q.db"
    total, lock_at = 8, 3
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    class LocksTheQueue(ScriptedHandler):
        accepted = 0

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            reply = await super().handle_DATA(server, session, envelope)
            self.accepted += 1
            if self.accepted == lock_at:
                blocker.execute("BEGIN EXCLUSIVE")  # from here on, no write reaches the queue
            return reply

    handler = LocksTheQueue()
    policy = dataclasses.replace(FAST, delivery=delivery)
    queue = SQLiteQueue(db, busy_timeout=0.05)
    async with serve(handler) as port:
        for e in due_entries(port, total, time.time() - 1):
            await queue.put(dataclasses.replace(e, recipients=(
                *e.recipients, dataclasses.replace(e.recipients[0], address="cc-" + e.recipients[0].address),
            )))
        everyone = {r.address for e in await queue.entries() for r in e.recipients}
        with capture_logs() as first_logs:
            runner = QueueRunner(queue, lambda d: mailer(d.port, policy=policy), concurrency=3, lease_s=30)
            with pytest.raises(QueueError, match="locked") as caught:
                await runner.run(once=True)
        blocker.execute("ROLLBACK")
        failed = [e for e in first_logs if e["event"] == "smtpretry.writeback_failed"]
        assert failed and all(e["queue_id"] and e["recipients"] and e["error"] for e in failed)
        # The error says what happened, and carries what the send did.
        assert "not written back" in str(caught.value)
        result = caught.value.result
        assert result is not None and set(result.delivered) <= set(handler.copies)
        assert set(result.delivered) in ({r for r in e["recipients"]} for e in failed)
        # What it sent and could not write back is marked in the queue.
        unconfirmed = {r.address for e in await queue.entries() for r in e.recipients if r.possible_duplicate}
        assert unconfirmed == {r for e in failed for r in e["recipients"]}
        # Their leases are kept (no resend at once, while the queue may still refuse
        # writes); the next run comes after they ran out.
        later = Clock(time.time() + 31)
        with capture_logs() as logs:
            again = QueueRunner(queue, lambda d: mailer(d.port, policy=policy), clock=later)
            second = await again.run(once=True)
        assert await queue.entries() == []
    await queue.close()
    blocker.close()
    copies = handler.copies
    delivered = {r for e in first_logs + logs if e["event"] == "smtpretry.message_delivered"
                 for r in e["recipients"]}
    assumed = {r for e in logs if e["event"] == "smtpretry.message_delivered" and e["assumed"]
               for r in e["recipients"]}
    assert delivered == everyone  # no recipient is missing
    assert all(copies[r] >= 1 for r in delivered)  # every recipient reported delivered has a copy
    extra = {r for r, n in copies.items() if n > 1}
    if delivery is Delivery.AT_LEAST_ONCE:
        assert extra and extra <= unconfirmed  # every extra copy was flagged a possible duplicate
        assert second.possible_duplicates == len(unconfirmed) and assumed == set()
    else:  # at most once: never a second copy; the unconfirmed ones are taken as delivered
        assert extra == set() and assumed == unconfirmed and second.possible_duplicates == 0
