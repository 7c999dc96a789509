"""The process-wide event loop behind the smtplib facade.

An smtplib-style ``SMTP`` object keeps its session across calls, so the loop
that owns its connection must outlive each call: one loop runs on a daemon
thread for the whole process, and every facade call submits a coroutine to it
and waits for its result. Because every ``SMTP`` object in the process shares
that loop, one set of pools and limiters holds the connection caps across
threads.

Each call is one hop to the loop's thread and back, which is most of what the
facade costs per call beyond the engine itself, so the hop is kept lean: one
``call_soon_threadsafe`` that starts a task, and a plain lock the caller blocks
on until the task's done-callback releases it (``run_coroutine_threadsafe``
adds a ``concurrent.futures.Future`` and its condition variable).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["loop", "run", "running_here", "settle_background", "submit"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None
_thread_id: int | None = None  # the portal thread: a blocking call from it would wait for itself
_background: set[asyncio.Task[Any]] = set()  # submitted tasks, held until done


def loop() -> asyncio.AbstractEventLoop:
    """The portal loop, started on first use (and again in a forked child,
    which inherits no running thread)."""
    global _loop, _pid, _thread_id
    with _lock:
        if _loop is None or _pid != os.getpid():
            new = asyncio.new_event_loop()
            thread = threading.Thread(target=new.run_forever, name="smtpretry-portal", daemon=True)
            thread.start()
            _loop, _pid, _thread_id = new, os.getpid(), thread.ident
            _background.clear()  # a forked child's copy names tasks of the parent's loop
        return _loop


def _current() -> asyncio.AbstractEventLoop:
    """``loop()`` without taking the lock once the loop runs in this process."""
    target = _loop
    if target is None or _pid != os.getpid():
        target = loop()
    return target


class _Call(Generic[T]):
    """One blocking call: started on the loop, waited for with a plain lock."""

    __slots__ = ("coro", "done", "error", "task")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.done = threading.Lock()
        self.done.acquire()
        self.task: asyncio.Task[T] | None = None
        self.error: BaseException | None = None

    def start(self) -> None:  # on the portal loop
        try:
            task = asyncio.get_running_loop().create_task(self.coro)
        except BaseException as exc:  # as run_coroutine_threadsafe: the error goes to the caller
            self.error = exc
            self.done.release()
            raise
        self.task = task
        task.add_done_callback(self.finished)

    def finished(self, task: asyncio.Task[T]) -> None:  # on the portal loop
        self.done.release()

    def result(self) -> T:
        self.done.acquire()
        if self.error is not None:
            raise self.error
        task = self.task
        assert task is not None
        if task.cancelled():
            raise concurrent.futures.CancelledError()
        return task.result()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the portal loop and wait for its result in this thread.

    :raises RuntimeError: when called from the portal loop itself (it would wait for itself).
    """
    target = _current()
    if threading.get_ident() == _thread_id:
        coro.close()
        raise RuntimeError("smtpretry: a blocking SMTP call from inside smtpretry's own event loop")
    call = _Call(coro)
    target.call_soon_threadsafe(call.start)
    return call.result()


def _start_background(coro: Coroutine[Any, Any, Any]) -> None:  # on the portal loop
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def submit(coro: Coroutine[Any, Any, Any]) -> None:
    """Start ``coro`` on the portal loop and return at once (its result and
    errors are not awaited: for clean-up such as returning a connection)."""
    _current().call_soon_threadsafe(_start_background, coro)


def running_here() -> bool:
    """Whether the portal loop runs in this process (not only in a parent we were forked from)."""
    return _loop is not None and _pid == os.getpid()


async def settle_background() -> None:  # on the portal loop
    """Wait for the clean-up submitted so far (connections on their way back to a pool)."""
    # Only the tasks not yet done: a finished task leaves ``_background`` through its done
    # callback, which runs at the loop's next turn, and since Python 3.12 gather() over
    # tasks that are all done completes without yielding, so waiting on ``_background``
    # itself would spin without ever giving the loop that turn.
    while pending := [task for task in _background if not task.done()]:
        await asyncio.gather(*pending, return_exceptions=True)
