"""Where a limit key's slot counter and effective cap live: the :class:`Slots`
protocol, and :class:`LocalSlots`, the in-process default (``redis.py`` has
the shared one).
"""

from __future__ import annotations

import time
from typing import Protocol

from ..policy import Limits
from .cap import AdaptiveCap, CapReport

__all__ = ["LocalSlots", "Slots"]


class Slots(Protocol):
    """The slot counter and effective cap of one limit key, behind a :class:`Limiter`.

    ``try_take(ticket)`` takes a slot now if one is free (True) or queues the
    caller under ``ticket`` (a number unique within the limiter) and returns
    False; the limiter then waits for a local ``give_back`` or ``poll_s``
    seconds (``None``: only a local ``give_back`` can free a slot) and asks
    again with the same ticket, or ``withdraw``s it. ``contended`` says that
    someone else (another process) waits for a slot, so idle sessions should
    not be kept. ``lower``/``success`` move the cap (AIMD, :class:`AdaptiveCap`)
    and call ``report(previous, new)`` when it moved, now or later.

    .. versionadded:: 0.3
    """

    @property
    def cap(self) -> AdaptiveCap: ...
    @property
    def poll_s(self) -> float | None: ...
    @property
    def contended(self) -> bool: ...
    async def try_take(self, ticket: int) -> bool: ...
    async def withdraw(self, ticket: int) -> None: ...
    async def give_back(self) -> None: ...
    def lower(self, opened_at: float, open_now: int | None, lingering: bool, report: CapReport) -> None: ...
    def success(self, report: CapReport) -> None: ...
    async def close(self) -> None: ...


class LocalSlots:
    """In-process slots: a counter and an :class:`AdaptiveCap` (the default)."""

    poll_s: float | None = None
    contended = False

    def __init__(self, limits: Limits) -> None:
        self.cap = AdaptiveCap.from_limits(limits)
        self.held = 0

    async def try_take(self, ticket: int) -> bool:
        if self.held < self.cap.current:
            self.held += 1
            return True
        return False

    async def withdraw(self, ticket: int) -> None:
        return None

    async def give_back(self) -> None:
        self.held -= 1

    def lower(self, opened_at: float, open_now: int | None, lingering: bool, report: CapReport) -> None:
        previous = self.cap.current
        new = self.cap.lower(opened_at, time.monotonic(), open_now, lingering=lingering)
        if new is not None:
            report(previous, new)

    def success(self, report: CapReport) -> None:
        previous = self.cap.current
        new = self.cap.success(time.monotonic())
        if new is not None:
            report(previous, new)

    async def close(self) -> None:
        return None
