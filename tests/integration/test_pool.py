"""DestinationPool against a real aiosmtpd server on 127.0.0.1: how a session
passes from one send to the next."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from smtpretry import Limits, Mailer
from smtpretry.limits import DestinationPool
from smtpretry.transport import Endpoint, Session, TLSMode
from tests.servers import ScriptedHandler, serve

MESSAGE = b"Subject: queued behind a cap\r\n\r\nbody\r\n"


async def test_a_released_session_goes_to_the_waiting_send_before_release_returns() -> None:
    async with serve(ScriptedHandler()) as port:
        endpoint = Endpoint(host="127.0.0.1", port=port, tls=TLSMode.NONE, local_hostname="localhost")
        pool = DestinationPool(endpoint, Limits(max_connections=1))
        try:
            first, reused, _ = await pool.acquire()
            assert isinstance(first, Session) and not reused
            waiting = asyncio.create_task(pool.acquire())
            for _ in range(5):
                await asyncio.sleep(0)
            assert not waiting.done()  # the cap is 1: it waits for the session
            await pool.release(first, reusable=True)
            # The waiting send has the session already: the releasing send's own
            # bookkeeping, which follows the release, no longer delays it.
            assert waiting.done()
            second, reused, _ = waiting.result()
            assert second is first and reused
            await pool.release(second, reusable=True)
        finally:
            await pool.close()


async def test_sends_queued_behind_a_cap_of_one_each_deliver_once_in_turn() -> None:
    handler = ScriptedHandler()
    async with serve(handler) as port:
        async with Mailer("127.0.0.1", port, tls="none", limits=Limits(max_connections=1)) as m:
            results = await asyncio.gather(*(
                m.send(MESSAGE, sender="a@example.org", recipients=[f"r{i}@example.com"]) for i in range(20)
            ))
    assert all(r.delivered == [f"r{i}@example.com"] for i, r in enumerate(results))
    assert handler.copies == Counter({f"r{i}@example.com": 1 for i in range(20)})
    assert handler.max_active == 1 and handler.sessions_total == 1


async def test_a_send_cancelled_mid_transaction_does_not_leave_its_connection_for_the_next() -> None:
    arrived, let_go = asyncio.Event(), asyncio.Event()

    class Hanging(ScriptedHandler):
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            if not arrived.is_set():
                arrived.set()
                await let_go.wait()  # the first message hangs after its final dot
            return await super().handle_DATA(server, session, envelope)

    handler = Hanging()
    async with serve(handler) as port:
        async with Mailer("127.0.0.1", port, tls="none", limits=Limits(max_connections=1)) as m:
            first = asyncio.create_task(
                m.send(MESSAGE, sender="a@example.org", recipients=["one@example.com"])
            )
            await asyncio.wait_for(arrived.wait(), 5)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            # The connection, stuck in the middle of DATA, was closed, not pooled.
            assert m.pool.active == 0 and not m.pool.has_idle()
            result = await m.send(MESSAGE, sender="a@example.org", recipients=["two@example.com"])
            let_go.set()
    assert result.delivered == ["two@example.com"]
    assert handler.sessions_total == 2  # the second send opened a connection of its own


async def test_a_send_credits_its_signals_to_the_limiter_of_the_connection_it_used() -> None:
    # A send whose connections come from another source (as the facade's held connection,
    # or a router's pool per MX host, do) lowers that source's cap, not its own Mailer's.
    from smtpretry import RetryPolicy, build_envelope
    from tests.servers import R421_TOO_MANY

    handler = ScriptedHandler(rcpt=[R421_TOO_MANY])
    fast = RetryPolicy(backoff_base=0.001, backoff_cap=0.002)
    async with serve(handler) as port:
        lender = Mailer("127.0.0.1", port, tls="none", limits=Limits(max_connections=8))
        borrower = Mailer("127.0.0.1", port, tls="none", limits=Limits(max_connections=8), policy=fast)
        envelope = build_envelope(MESSAGE, "s@example.org", ["a@example.com"])
        async with lender, borrower:
            result = await borrower.deliver(envelope, sessions=lender.pool)
    assert result.delivered == ["a@example.com"]
    assert lender.pool.cap.current < 8, "the connection's limiter heard the throttling"
    assert borrower.pool.cap.current == 8, "the borrowing Mailer's own limiter was not touched"
    assert handler.copies == Counter({"a@example.com": 1})
