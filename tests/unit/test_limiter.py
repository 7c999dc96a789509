"""Limiter wake-ups: a freed session or slot wakes one waiting send, never loses
a wake-up to a cancelled one, and a raised cap lets every send it admits go; the
limiter owns the idle sessions of every pool under it."""

from __future__ import annotations

import asyncio

from smtpretry import Limits
from smtpretry.limits import Limiter, LocalSlots


class CountingSlots(LocalSlots):
    """In-process slots that count how often a waiting send asked for one."""

    asked = 0

    async def try_take(self, ticket: int) -> bool:
        self.asked += 1
        return await super().try_take(ticket)


class NoIdle:
    """A pool with no idle session: every waiter needs a slot."""

    async def retire(self, session: object) -> None:
        raise AssertionError("nothing to retire")


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    limiter = Limiter("d", Limits(max_connections=1))
    pool = NoIdle()
    assert await limiter.checkout(pool) is None  # a slot, no idle session
    first = asyncio.create_task(limiter.checkout(pool))
    second = asyncio.create_task(limiter.checkout(pool))
    await settle()
    assert not first.done() and not second.done()
    await limiter.give_back(lingers=False)  # wakes the first waiter only...
    first.cancel()  # ...which goes away before it runs
    assert await asyncio.wait_for(second, 2.0) is None
    assert limiter.open == 1


async def test_one_freed_slot_wakes_one_waiter_not_all_of_them() -> None:
    limits = Limits(max_connections=1)
    slots = CountingSlots(limits)
    limiter = Limiter("d", limits, slots=slots)
    pool = NoIdle()
    assert await limiter.checkout(pool) is None  # a slot, no idle session
    waiters = [asyncio.create_task(limiter.checkout(pool)) for _ in range(3)]
    await settle()
    slots.asked = 0
    await limiter.give_back(lingers=False)
    await settle()
    assert [w.done() for w in waiters] == [True, False, False]  # first come, first served
    assert slots.asked == 1  # the others were not run through the loop for nothing
    for w in waiters[1:]:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_a_raised_cap_lets_every_admitted_waiter_go() -> None:
    limiter = Limiter("d", Limits(max_connections=4, cap_recovery=1))
    limiter.cap.lower(opened_at=1.0, now=2.0)  # 4 -> 2
    limiter.cap.lower(opened_at=3.0, now=4.0)  # 2 -> 1
    assert limiter.cap.current == 1
    pool = NoIdle()
    assert await limiter.checkout(pool) is None  # a slot, no idle session
    waiters = [asyncio.create_task(limiter.checkout(pool)) for _ in range(3)]
    await settle()
    limiter.succeeded()  # cap 1 -> 2
    limiter.succeeded()  # cap 2 -> 3
    assert limiter.cap.current == 3
    await limiter.give_back(lingers=False)
    await settle()
    assert [w.done() for w in waiters] == [True, True, True]
    assert limiter.open == 3


class Parking:
    """A pool whose idle sessions the limiter keeps, and which records what it retires."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.retired: list[object] = []

    async def retire(self, session: object) -> None:
        self.retired.append(session)
        await self.limiter.give_back(lingers=False)


async def test_an_idle_session_is_reused_by_its_own_pool_and_retired_for_another() -> None:
    limiter = Limiter("d", Limits(max_connections=1))
    a, b = Parking(limiter), Parking(limiter)
    assert await limiter.checkout(a) is None  # a opens the only connection...
    session = object()
    assert await limiter.park(a, session) is False  # ...and parks it; nobody waits
    assert limiter.idle(a) == 1 and limiter.idle(b) == 0
    assert await limiter.checkout(a) is session  # its own pool reuses it, no slot needed
    await limiter.park(a, session)
    # b needs a slot that a's idle session holds: the limiter closes that session for b.
    assert await asyncio.wait_for(limiter.checkout(b), 2.0) is None
    assert a.retired == [session] and limiter.idle(a) == 0 and limiter.open == 1
