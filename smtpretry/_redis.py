"""The one place that opens Redis connections: the shared limiter
(``limits/redis.py``) and the Redis queue (``queue/redis.py``) both take their
client, their error and their URL redaction from here. redis-py is imported
only when a client is made, so :func:`redacted` costs nothing without it.

.. versionadded:: 0.4
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from .errors import BackendError

__all__ = ["COMMAND_TIMEOUT_S", "CONNECT_TIMEOUT_S", "backend_error", "connect", "redacted"]

CONNECT_TIMEOUT_S = 2.0
"""Seconds to wait for a TCP connection to Redis before :class:`BackendError`."""
COMMAND_TIMEOUT_S = 5.0
"""Seconds to wait for a Redis reply before :class:`BackendError`."""


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def connect(url: str) -> Any:
    """A ``redis.asyncio.Redis`` client for ``url`` that fails fast: short
    timeouts, one immediate retry (a pooled connection broken by a Redis
    restart), no backoff. Typed ``Any``: redis-py types each command as a
    union of its sync and async results."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    try:
        return aioredis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError as exc:
        raise BackendError(f"backend {redacted(url)!r}: {exc}") from None


def backend_error(url: str, exc: BaseException, doing: str) -> BackendError:
    return BackendError(f"backend {redacted(url)}: {doing}: {type(exc).__name__}: {exc}")
