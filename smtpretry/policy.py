"""Retry and connection settings as frozen values, and the maths on them.

:class:`RetryPolicy` says how long to back off inside one send and when to come
back for deferred recipients; :class:`Limits` says how many connections and
messages one destination takes. Both are pure values: variants are made with
``dataclasses.replace(policy, max_attempts=3)``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from .errors import ConfigError

__all__ = ["Delivery", "Limits", "RetryPolicy"]


class Delivery(StrEnum):
    """What to do when the connection is lost after the final dot and before
    the server's reply (RFC 1047): the server may or may not have the message.

    ``AT_LEAST_ONCE`` sends again (a possible duplicate, logged as such);
    ``AT_MOST_ONCE`` assumes it was delivered and never sends again.
    """

    AT_LEAST_ONCE = "at_least_once"
    AT_MOST_ONCE = "at_most_once"


def _positive(name: str, value: float, *, zero_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name}: expected a number {'>= 0' if zero_ok else '> 0'}, got {value!r}")


def _whole(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How a send retries, and when deferred recipients come back.

    :param backoff_base: seconds; the first backoff is drawn from ``[0, backoff_base]``
    :param backoff_cap: seconds; no single backoff is longer
    :param max_attempts: attempts (connections) inside one send before the
        recipients still pending are deferred
    :param max_elapsed: seconds; a send stops retrying after this long and defers
    :param defer_schedule: seconds to wait before the 1st, 2nd, ... delivery
        attempt from the queue; the last value repeats
    :param max_lifetime: seconds a message may stay undelivered before it fails
        as expired (RFC 5321 4.5.4.1 suggests 4-5 days)
    :param delivery: what a connection lost after the final dot means

    .. versionadded:: 0.1
    """

    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    max_attempts: int = 6
    max_elapsed: float = 900.0
    defer_schedule: tuple[float, ...] = (300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
    max_lifetime: float = 5 * 86400.0
    delivery: Delivery = Delivery.AT_LEAST_ONCE

    def __post_init__(self) -> None:
        _positive("backoff_base", self.backoff_base, zero_ok=True)
        _positive("backoff_cap", self.backoff_cap, zero_ok=True)
        _whole("max_attempts", self.max_attempts, 1)
        _positive("max_elapsed", self.max_elapsed)
        if not isinstance(self.defer_schedule, tuple) or not self.defer_schedule:
            raise ConfigError("defer_schedule: expected a non-empty list of durations")
        for i, step in enumerate(self.defer_schedule):
            _positive(f"defer_schedule[{i}]", step)
        _positive("max_lifetime", self.max_lifetime)
        try:  # the enum, or its value as a string ("at_most_once")
            object.__setattr__(self, "delivery", Delivery(self.delivery))
        except ValueError:
            raise ConfigError(
                f"delivery: expected 'at_least_once' or 'at_most_once', got {self.delivery!r}"
            ) from None

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based):
        exponential growth with full jitter, ``uniform(0, min(cap, base * 2**(attempt-1)))``."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(attempt - 1, 60))
        return rng.uniform(0.0, ceiling)

    def deferral(self, deferrals: int) -> float:
        """Seconds until the next queue attempt after ``deferrals`` earlier deferrals."""
        return self.defer_schedule[min(deferrals, len(self.defer_schedule) - 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Connection limits for one destination.

    :param max_connections: connections open at once, at most (the configured cap;
        the effective cap adapts below it when the server throttles)
    :param max_messages_per_connection: transactions on one connection before it
        is closed and a new one opened
    :param max_messages_per_minute: transactions per minute at most (None: no limit)
    :param idle_timeout: seconds an unused connection stays open for reuse
    :param adaptive: lower the effective cap when the server throttles, and
        raise it again on sustained success
    :param cap_recovery: successful transactions in a row, while the effective
        cap is below ``max_connections``, before it is raised by one
    :param cap_probe_after: seconds a throttled level is remembered: until
        then the cap climbs back only to just below the level the server
        refused; after that it may probe higher again

    .. versionadded:: 0.1
    """

    max_connections: int = 10
    max_messages_per_connection: int = 100
    max_messages_per_minute: float | None = None
    idle_timeout: float = 5.0
    adaptive: bool = True
    cap_recovery: int = 20
    cap_probe_after: float = 300.0

    def __post_init__(self) -> None:
        _whole("max_connections", self.max_connections, 1)
        _whole("max_messages_per_connection", self.max_messages_per_connection, 1)
        if self.max_messages_per_minute is not None:
            _positive("max_messages_per_minute", self.max_messages_per_minute)
        _positive("idle_timeout", self.idle_timeout, zero_ok=True)
        _whole("cap_recovery", self.cap_recovery, 1)
        _positive("cap_probe_after", self.cap_probe_after, zero_ok=True)
