"""The arithmetic of connection caps and paces: pure values, no I/O.

:class:`AdaptiveCap` is the effective connection cap of one limit key (AIMD
with a memory of the level the server refused), :class:`AdaptiveRate` its
pace under ``max_messages_per_minute``. Both take the time as an argument;
the limiters (``limiter.py`` in-process, ``redis.py`` shared) keep them and
say when to move them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..policy import Limits

__all__ = ["AdaptiveCap", "AdaptiveRate", "CapReport"]


@dataclass(slots=True)
class AdaptiveCap:
    """The effective connection cap of one destination (AIMD with memory).

    ``lower(opened_at, now, open_now, lingering)`` on a throttling reply to a
    connection opened at ``opened_at`` (monotonic seconds) while ``open_now``
    connections were open or opening: the cap loses half (never below 1), and
    the level the server refused (``open_now``) is remembered: the cap will
    not climb back above ``open_now - 1``. ``lingering`` says one of our
    connections closed a moment ago: servers count a closed session for a
    short while, so the refusal may be one too early, and the level is taken
    one higher. A single 421 while few connections are open halves the cap
    but does not pin it low.
    A reply to a connection opened before the last cut says nothing new (the
    cap was already lowered for it), so one burst of 421s lowers the cap once,
    not to 1. The cap the server refused is remembered for ``probe_after``
    seconds: success raises the effective cap by one every ``recovery``
    transactions in a row, up to just below that level, so a steady server
    sees no more 421s; after ``probe_after`` it probes higher again.
    """

    configured: int
    current: int
    recovery: int
    probe_after: float
    adaptive: bool = True
    successes: int = 0
    lowered_at: float = float("-inf")
    ceiling: int | None = None

    @classmethod
    def from_limits(cls, limits: Limits) -> AdaptiveCap:
        return cls(limits.max_connections, limits.max_connections, limits.cap_recovery,
                   limits.cap_probe_after, limits.adaptive)

    def lower(self, opened_at: float, now: float, open_now: int | None = None,
              lingering: bool = False) -> int | None:
        """The new cap, or None when it did not move."""
        self.successes = 0
        if not self.adaptive or self.current <= 1 or opened_at < self.lowered_at:
            return None
        self.current = max(1, self.current - max(1, self.current // 2))
        if open_now is None:  # a throttle that names no level (a rate limit in a session)
            self.ceiling = None
        else:
            level = open_now - 1 + (1 if lingering else 0)
            # Refused with fewer connections open than the new cap: the server counts
            # something besides us, and that says nothing about a level to stay under.
            self.ceiling = level if level >= self.current else None
        self.lowered_at = now
        return self.current

    def success(self, now: float) -> int | None:
        limit = self.configured
        if self.ceiling is not None:
            if now - self.lowered_at < self.probe_after:
                limit = min(limit, self.ceiling)
            else:
                self.ceiling = None
        if self.current >= limit:
            return None
        self.successes += 1
        if self.successes < self.recovery:
            return None
        self.successes = 0
        self.current += 1
        return self.current


CapReport = Callable[[int, int], None]
"""Called with (previous, new) when the effective cap moved."""


@dataclass(slots=True)
class AdaptiveRate:
    """The effective pace of one destination with ``max_messages_per_minute``.

    ``lower(now)`` on a throttling reply inside a session (a rate limit): the
    pace halves (never below 1/64 of the configured one), at most once per
    ``max(1 s, two intervals)``, since replies to transactions already under
    way say nothing new. ``success()``: every ``recovery`` transactions in a
    row it gains a tenth of the configured pace, up to the configured pace.
    """

    configured: float
    current: float
    recovery: int
    successes: int = 0
    lowered_at: float = float("-inf")

    def lower(self, now: float) -> float | None:
        self.successes = 0
        if now - self.lowered_at < max(1.0, 120.0 / self.current):
            return None
        floor = self.configured / 64
        if self.current <= floor:
            return None
        self.current = max(floor, self.current / 2)
        self.lowered_at = now
        return self.current

    def success(self) -> float | None:
        if self.current >= self.configured:
            return None
        self.successes += 1
        if self.successes < self.recovery:
            return None
        self.successes = 0
        self.current = min(self.configured, self.current + self.configured / 10)
        return self.current
