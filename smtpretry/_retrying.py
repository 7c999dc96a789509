"""tenacity's AsyncRetrying built from a RetryPolicy.

This is the only module that imports tenacity. An attempt returns a
:class:`~smtpretry.decide.Retry` when recipients are still pending, or None when
it is done; tenacity retries on a ``Retry``, waits the ``delay_s`` that the pure
core computed (full jitter), stops by the policy's attempts and elapsed time,
and on stop hands back the last ``Retry`` so the caller defers what is left.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import tenacity
from tenacity import AsyncRetrying, RetryCallState

from .decide import Retry
from .policy import RetryPolicy

__all__ = ["build_retrying"]


def _is_retry(result: object) -> bool:
    return isinstance(result, Retry)


def _wait(state: RetryCallState) -> float:
    assert state.outcome is not None
    result = state.outcome.result()
    return result.delay_s if isinstance(result, Retry) else 0.0


def _last_result(state: RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()


def build_retrying(
    policy: RetryPolicy,
    *,
    before_sleep: Callable[[RetryCallState], Awaitable[None] | None] | None = None,
    stop: tenacity.stop.stop_base | None = None,
) -> AsyncRetrying:
    """An ``AsyncRetrying`` for one send. ``stop`` adds to the policy's stop
    condition (combined with ``|``)."""
    policy_stop = tenacity.stop_after_attempt(policy.max_attempts) | tenacity.stop_before_delay(
        policy.max_elapsed
    )
    return AsyncRetrying(
        retry=tenacity.retry_if_result(_is_retry),
        wait=_wait,
        stop=policy_stop | stop if stop is not None else policy_stop,
        before_sleep=before_sleep,
        retry_error_callback=_last_result,
        reraise=True,
    )
