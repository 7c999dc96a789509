"""Limiter wake-ups: a freed session or slot wakes one waiting send, never loses
a wake-up to a cancelled one, and a raised cap lets every send it admits go."""

from __future__ import annotations

import asyncio

from smtpretry import Limits
from smtpretry.pool import Limiter, LocalSlots


class CountingSlots(LocalSlots):
    """In-process slots that count how often a waiting send asked for one."""

    asked = 0

    async def try_take(self, ticket: int) -> bool:
        self.asked += 1
        return await super().try_take(ticket)


class NoIdle:
    """A pool with no idle session: every waiter needs a slot."""

    def has_idle(self) -> bool:
        return False

    def retire_one_idle(self) -> bool:
        return False


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    limiter = Limiter("d", Limits(max_connections=1))
    pool = NoIdle()
    assert await limiter.take(pool)  # type: ignore[arg-type]
    first = asyncio.create_task(limiter.take(pool))  # type: ignore[arg-type]
    second = asyncio.create_task(limiter.take(pool))  # type: ignore[arg-type]
    await settle()
    assert not first.done() and not second.done()
    await limiter.give_back(lingers=False)  # wakes the first waiter only...
    first.cancel()  # ...which goes away before it runs
    assert await asyncio.wait_for(second, 2.0) is True
    assert limiter.open == 1


async def test_one_freed_slot_wakes_one_waiter_not_all_of_them() -> None:
    limits = Limits(max_connections=1)
    slots = CountingSlots(limits)
    limiter = Limiter("d", limits, slots=slots)
    pool = NoIdle()
    assert await limiter.take(pool)  # type: ignore[arg-type]
    waiters = [asyncio.create_task(limiter.take(pool)) for _ in range(3)]  # type: ignore[arg-type]
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
    assert await limiter.take(pool)  # type: ignore[arg-type]
    waiters = [asyncio.create_task(limiter.take(pool)) for _ in range(3)]  # type: ignore[arg-type]
    await settle()
    limiter.succeeded()  # cap 1 -> 2
    limiter.succeeded()  # cap 2 -> 3
    assert limiter.cap.current == 3
    await limiter.give_back(lingers=False)
    await settle()
    assert [w.done() for w in waiters] == [True, True, True]
    assert limiter.open == 3
