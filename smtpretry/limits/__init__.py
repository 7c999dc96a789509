"""Connection limits, side by side by kind.

- ``cap.py``: the cap and pace arithmetic (:class:`AdaptiveCap`,
  :class:`AdaptiveRate`), pure;
- ``slots.py``: where a limit key's slots and cap live (:class:`Slots`,
  :class:`LocalSlots`, in-process);
- ``limiter.py``: :class:`Limiter`, the one owner of a limit key's slots, idle
  sessions and waiting sends, pacing and hold-offs;
- ``pool.py``: :class:`DestinationPool`, which opens and reuses one endpoint's
  sessions under a limiter, and the :class:`Lease` contract every send takes its
  connections by;
- ``redis.py``: :class:`RedisSlots` and :func:`redis_limiter`, the same limits
  shared by every process through Redis (the ``redis`` extra; imported on
  first use).

.. versionadded:: 0.4
"""

from __future__ import annotations

from typing import Any

from .cap import AdaptiveCap, AdaptiveRate, CapReport
from .limiter import Limiter
from .pool import DestinationPool, Lease, Refusal, SessionSource
from .slots import LocalSlots, Slots

__all__ = [
    "AdaptiveCap",
    "AdaptiveRate",
    "CapReport",
    "DestinationPool",
    "Lease",
    "Limiter",
    "LocalSlots",
    "RedisSlots",
    "Refusal",
    "SessionSource",
    "Slots",
    "redis_limiter",
]


def __getattr__(name: str) -> Any:
    if name in ("RedisSlots", "redis_limiter"):  # needs redis-py: only when asked for
        from . import redis

        return getattr(redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
