"""tenacity's AsyncRetrying built from a RetryPolicy.

This is the only module that imports tenacity. An attempt returns a
:class:`~smtpretry.decide.Retry` when recipients are still pending, or None when
it is done; tenacity retries on a ``Retry``, waits the ``delay_s`` that the pure
core computed (full jitter), stops by the policy's attempts and elapsed time,
and on stop hands back the last ``Retry`` so the caller defers what is left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity
from tenacity import AsyncRetrying, RetryCallState

from .decide import Retry
from .policy import RetryPolicy

__all__ = ["build_retrying", "run_attempts"]


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
    attempts_done: int = 0,
    elapsed_s: float = 0.0,
) -> AsyncRetrying:
    """An ``AsyncRetrying`` for one send. ``stop`` adds to the policy's stop
    condition (combined with ``|``); ``attempts_done`` and ``elapsed_s`` count
    what ran before it."""
    policy_stop = tenacity.stop_after_attempt(policy.max_attempts - attempts_done) | (
        tenacity.stop_before_delay(policy.max_elapsed - elapsed_s)
    )
    return AsyncRetrying(
        retry=tenacity.retry_if_result(_is_retry),
        wait=_wait,
        stop=policy_stop | stop if stop is not None else policy_stop,
        before_sleep=before_sleep,
        retry_error_callback=_last_result,
        reraise=True,
    )


async def run_attempts(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[Retry | None]],
    *,
    on_retry: Callable[[float], None],
) -> Retry | None:
    """Run ``attempt`` until it returns None or the policy stops it; return its
    last result (a :class:`Retry` when retries ran out).

    The first attempt runs directly: most sends need only one, and tenacity's
    machinery costs more than the rest of a happy send. Only a ``Retry`` builds
    the ``AsyncRetrying`` for the attempts after it. ``on_retry(delay_s)`` is
    called before each wait.
    """
    started = time.monotonic()
    first = await attempt()
    if not isinstance(first, Retry) or policy.max_attempts <= 1:
        return first
    if time.monotonic() - started + first.delay_s >= policy.max_elapsed:
        return first  # as stop_before_delay would: the wait would outlast the send
    on_retry(first.delay_s)
    await asyncio.sleep(first.delay_s)
    retrying = build_retrying(
        policy,
        before_sleep=lambda state: on_retry(state.next_action.sleep if state.next_action else 0.0),
        attempts_done=1,
        elapsed_s=time.monotonic() - started,
    )
    result: Retry | None = await retrying(attempt)
    return result
