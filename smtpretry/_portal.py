"""The process-wide event loop behind the smtplib facade.

An smtplib-style ``SMTP`` object keeps its session across calls, so the loop
that owns its connection must outlive each call: one loop runs on a daemon
thread for the whole process, and every facade call submits a coroutine to it
with ``asyncio.run_coroutine_threadsafe(...).result()``. Because every ``SMTP``
object in the process shares that loop, one set of pools and limiters holds
the connection caps across threads.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["loop", "run", "submit"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The portal loop, started on first use (and again in a forked child,
    which inherits no running thread)."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid():
            new = asyncio.new_event_loop()
            thread = threading.Thread(target=new.run_forever, name="smtpretry-portal", daemon=True)
            thread.start()
            _loop, _pid = new, os.getpid()
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the portal loop and wait for its result in this thread.

    :raises RuntimeError: when called from the portal loop itself (it would wait for itself).
    """
    target = loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is target:
        coro.close()
        raise RuntimeError("smtpretry: a blocking SMTP call from inside smtpretry's own event loop")
    return asyncio.run_coroutine_threadsafe(coro, target).result()


def submit(coro: Coroutine[Any, Any, Any]) -> None:
    """Start ``coro`` on the portal loop and return at once (its result and
    errors are not awaited: for clean-up such as returning a connection)."""
    asyncio.run_coroutine_threadsafe(coro, loop())
