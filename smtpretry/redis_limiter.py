"""Deprecated: the shared limiter lives in :mod:`smtpretry.limits.redis`.

This module keeps ``from smtpretry.redis_limiter import redis_limiter, RedisSlots``
working.

.. deprecated:: 0.4
   Import from :mod:`smtpretry.limits.redis` (or :mod:`smtpretry.limits`).
"""

from __future__ import annotations

import warnings

from .limits.redis import BackendError, RedisSlots, connect, redacted, redis_limiter

__all__ = ["BackendError", "RedisSlots", "connect", "redacted", "redis_limiter"]

warnings.warn(
    "smtpretry.redis_limiter is deprecated: import from smtpretry.limits.redis",
    DeprecationWarning,
    stacklevel=2,
)
