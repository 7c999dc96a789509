"""The process-wide state behind the smtplib facade.

Two kinds of event loop run the facade:

- each caller's thread runs the engine (``Mailer.connect``, ``Mailer.deliver``)
  on a loop of its own (:func:`run_here`), because the connection an smtplib
  object holds is a blocking socket used in that thread, as smtplib uses it:
  the engine's transaction goes over it without leaving the thread;
- one loop on a daemon thread for the whole process (the *hub*) holds what
  threads share, and a caller reaches it with :func:`run` (or
  :func:`on_hub` from its own loop). The hop is kept lean: one
  ``call_soon_threadsafe`` that starts a task, and a plain lock the caller
  blocks on until the task's done-callback releases it
  (``run_coroutine_threadsafe`` adds a ``concurrent.futures.Future`` and its
  condition variable).

What the process shares, touched only on the hub's loop unless a function says
otherwise (a caller's engine sees the limiter and the queue through
:class:`LimiterOnHub` and :class:`QueueOnHub`):

- a :class:`Destination` per host and port under the active configuration:
  the :class:`~smtpretry.Mailer` whose policy, queue and log a send uses, and
  the limiter its connections count against (one per limit key, so that caps
  hold across threads and ``SMTP`` objects);
- the connections kept for reuse (``reuse_connections = true``), by the exact
  set-up that made them (:meth:`Destination.keep`, :meth:`Destination.slot`);
- what servers said to each step of a set-up (:func:`remember`,
  :func:`recall`; thread-safe), from which a reusing ``SMTP`` object answers
  ``connect()``, ``ehlo()``, ``starttls()`` and ``login()`` without a round trip.

Nothing crosses a fork: a child process starts with no loop, no limiters, no
kept connections and no memory (``os.register_at_fork``), so it never writes
to a connection its parent opened.
"""

from __future__ import annotations

import asyncio
import asyncio.events as asyncio_events
import atexit
import concurrent.futures
import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine, Hashable
from typing import Any, Generic, TypeVar, cast

from ._logging import LogContext
from .config import Config, active_config
from .limits import AdaptiveCap, DestinationPool, Limiter
from .mailer import Mailer
from .queue.base import Queue, QueueEntry, Suspension, open_queue
from .reply import Reply
from .transport import Session

__all__ = [
    "Destination",
    "LimiterOnHub",
    "QueueOnHub",
    "destination",
    "loop",
    "on_hub",
    "recall",
    "remember",
    "run",
    "run_here",
    "running_here",
    "settle_background",
    "submit",
]

T = TypeVar("T")

EXIT_TIMEOUT_S = 5.0
"""At interpreter exit, how long closing the kept connections may take, at most."""

KEPT_SETUPS_MAX = 32
"""Set-ups whose connections a destination keeps for reuse; the oldest is closed beyond."""

SAID_MAX = 256
"""Remembered answers (greetings, EHLO, STARTTLS and login replies), the oldest forgotten beyond."""

# -- the portal loop ----------------------------------------------------------------------------

PID = os.getpid()
"""This process's id, kept up to date across forks (cheaper than ``os.getpid()``, a system call)."""

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
            _background.clear()
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


def call(fn: Any, *args: Any, **kw: Any) -> None:
    """Call ``fn`` on the hub's loop, soon; do not wait (a limiter's bookkeeping)."""
    if kw:
        _current().call_soon_threadsafe(lambda: fn(*args, **kw))
    else:
        _current().call_soon_threadsafe(fn, *args)


async def on_hub(coro: Coroutine[Any, Any, T]) -> T:
    """From a caller's own loop: ``coro`` run on the hub's loop, awaited."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, _current()))


# -- each caller thread's own loop ------------------------------------------------------------


class _OwnLoop:
    """A thread's event loop, closed when the thread's locals go (the thread ended)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()

    def __del__(self) -> None:
        if self.pid == os.getpid() and not self.loop.is_running():
            self.loop.close()


_local = threading.local()


def run_here(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end on this thread's own event loop (made on first use):
    the engine, over a connection this thread holds. Blocking calls inside it block
    only this thread, as smtplib's do.

    Most sends never wait for anything but their blocking socket (no backoff, no
    slot to wait for), so the coroutine is first run straight through, as the loop's
    first step of it would run; only if it waits does the loop run (the rest of it
    as a task: :func:`_carry_on`). That first step sees the loop as the running one
    but no current task.

    :raises RuntimeError: from inside that loop (a coroutine of it would wait for itself).
    """
    own: _OwnLoop | None = getattr(_local, "own", None)
    if own is None or own.pid != PID:
        own = _local.own = _OwnLoop()
    loop = own.loop
    if loop.is_running() or asyncio_events._get_running_loop() is not None:
        coro.close()
        raise RuntimeError("smtpretry: a blocking SMTP call from inside a running event loop")
    asyncio_events._set_running_loop(loop)
    try:
        try:
            waited = coro.send(None)
        except StopIteration as done:
            return cast(T, done.value)
    finally:
        asyncio_events._set_running_loop(None)
    return loop.run_until_complete(_carry_on(coro, waited))


async def _carry_on(coro: Coroutine[Any, Any, T], waited: Any) -> T:
    """The rest of a coroutine that waited during its first step, as a task runs
    it: wait for what it yielded (a future, or nothing: a bare yield), resume it,
    and throw into it what the wait raised (a cancellation)."""
    loop = asyncio.get_running_loop()
    while True:
        error: BaseException | None = None
        try:
            if waited is None:
                await asyncio.sleep(0)
            else:
                waited._asyncio_future_blocking = False  # as Task.__step clears it
                ready = loop.create_future()
                waited.add_done_callback(lambda _f, r=ready: None if r.done() else r.set_result(None))
                await ready
        except BaseException as exc:  # noqa: BLE001 - handed to the coroutine, as a task would
            error = exc
        try:
            waited = coro.throw(error) if error is not None else coro.send(None)
        except StopIteration as done:
            return cast(T, done.value)


# -- the hub's limiter and queue, seen from a caller's loop ---------------------------------------


class LimiterOnHub:
    """A :class:`Limiter` as a caller's engine uses it, from its own thread: reads
    go to the limiter, changes are made on the hub's loop (its only owner), and
    a success that changes nothing (the cap and pace at their configured values,
    the usual case) costs nothing."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    @property
    def name(self) -> str:
        return self.limiter.name

    @property
    def open(self) -> int:
        return self.limiter.open

    @property
    def cap(self) -> AdaptiveCap:
        return self.limiter.cap

    async def pace(self) -> None:
        if self.limiter.rate is not None:
            await on_hub(self.limiter.pace())

    def throttled(self, reply: Reply, opened_at: float, *, established: bool = False,
                  cause: LogContext | None = None) -> None:
        call(self.limiter.throttled, reply, opened_at, established=established, cause=cause)

    def hold_off(self, seconds: float) -> None:
        call(self.limiter.hold_off, seconds)

    def succeeded(self) -> None:
        cap, rate = self.limiter.cap, self.limiter.rate
        at_cap = cap.current >= cap.configured and cap.ceiling is None
        if at_cap and (rate is None or rate.current >= rate.configured):
            return  # AdaptiveCap.success and AdaptiveRate.success would change nothing
        call(self.limiter.succeeded)

    def as_limiter(self) -> Limiter:
        """Itself, typed as what a :class:`Lease` names (it does what a send asks of one)."""
        return cast(Limiter, self)


class QueueOnHub:
    """The destination's queue as a caller's engine uses it: every call on the hub's loop
    (a Redis client belongs to the loop it was made in)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    @property
    def url(self) -> str:
        return self.queue.url

    async def put(self, entry: QueueEntry, /) -> str:
        return await on_hub(self.queue.put(entry))

    async def suspensions(self, *, now: float) -> list[Suspension]:
        # Mailer.deliver asks before every send whether an operator suspended the
        # destination (smtpretry queue suspend).
        return await on_hub(self.queue.suspensions(now=now))

    async def close(self) -> None:
        await on_hub(self.queue.close())

    def as_queue(self) -> Queue:
        return cast(Queue, self)


# -- destinations -------------------------------------------------------------------------------


class Destination:
    """One host and port under one configuration: the :class:`Mailer` a send
    runs on (its policy, queue and log), the :class:`Limiter` every connection
    to it counts against, and the connections kept for reuse, by set-up."""

    def __init__(self, config: Config, host: str, port: int, limiter: Limiter) -> None:
        self.config = config
        self.limiter = limiter
        self.queue = open_queue(config.queue_url) if config.queue_url is not None else None
        self.mailer = Mailer(
            host, port, tls="none", allow_plaintext_auth=True, config=config, limiter=limiter,
            queue=QueueOnHub(self.queue).as_queue() if self.queue is not None else None,
        )
        self.pool = self.mailer.pool  # made now, not by two threads' first sends at once
        self.limits = LimiterOnHub(limiter)
        """The limiter as a caller's engine uses it (the limiter its leases name)."""
        self._kept: OrderedDict[Hashable, DestinationPool] = OrderedDict()

    def _pool(self, setup: Hashable) -> DestinationPool:
        pool = self._kept.get(setup)
        if pool is None:
            mailer = self.mailer
            pool = DestinationPool(mailer.endpoint, mailer.limits, None, self.limiter)
            self._kept[setup] = pool
            if len(self._kept) > KEPT_SETUPS_MAX:
                _, oldest = self._kept.popitem(last=False)
                _start_background(oldest.close())
        else:
            self._kept.move_to_end(setup)
        return pool

    async def slot(self, setup: Hashable | None = None) -> Session | None:
        """Wait for a slot under the destination's cap and return None (open a
        new connection in it), or, when connections set up as ``setup`` are
        kept, one of those (its slot comes with it)."""
        # The Mailer's own pool never has idle sessions: with no set-up to match, a slot.
        pool = self.mailer.pool if setup is None else self._pool(setup)
        while (kept := await self.limiter.checkout(pool)) is not None:
            if kept.in_step and time.monotonic() - kept.last_used < pool.limits.idle_timeout:
                return kept
            await pool.retire(kept)  # gone stale while kept: closed, and its slot given back
        return None

    async def free(self, *, lingers: bool = True) -> None:
        """Give a slot back (``lingers``: its connection was established)."""
        await self.limiter.give_back(lingers=lingers)

    async def keep(self, setup: Hashable, session: Session) -> None:
        """Keep ``session`` (set up as ``setup``) for the next ``SMTP`` object
        that sets up the same, or close it (QUIT) when the pool would not keep it;
        its slot goes with it."""
        await self._pool(setup).give_back(session, reusable=True)

    async def shut(self) -> None:
        """QUIT the kept connections (at exit), close the queue."""
        for pool in list(self._kept.values()):
            await pool.close()
        await self.mailer.close()
        if self.queue is not None:
            await self.queue.close()


_registry_lock = threading.Lock()
_destinations: dict[tuple[int, str, int], Destination] = {}
_limiters: dict[tuple[int, str], Limiter] = {}


def destination(host: str, port: int) -> Destination:
    """The :class:`Destination` for ``host:port`` under the active configuration
    (a new ``configure()`` starts new ones with its settings). Any thread."""
    config = active_config()
    key = (id(config), host, port)
    found = _destinations.get(key)
    if found is not None and found.config is config:
        return found
    with _registry_lock:  # callers' threads race here: one Destination, one Limiter per key
        found = _destinations.get(key)
        if found is None or found.config is not config:
            settings = config.settings_for(host, port)
            limiter = _limiters.get((id(config), settings.limit_key))
            if limiter is None:
                if config.backend_url is not None:
                    from .limits.redis import redis_limiter

                    # Several processes (or hosts) share this destination's cap through Redis.
                    limiter = redis_limiter(config.backend_url, settings.limit_key, settings.limits)
                else:
                    limiter = Limiter(settings.limit_key, settings.limits)
                _limiters[(id(config), settings.limit_key)] = limiter
            found = Destination(config, host, port, limiter)
            _destinations[key] = found
        return found


# -- what servers said ----------------------------------------------------------------------------

_said_lock = threading.Lock()
_said: OrderedDict[Hashable, object] = OrderedDict()


def remember(setup: Hashable, answer: object) -> None:
    """What the server said at the end of ``setup`` (a greeting, the lines of
    an EHLO or STARTTLS reply, a login's reply). Any thread."""
    with _said_lock:
        _said[setup] = answer
        _said.move_to_end(setup)
        while len(_said) > SAID_MAX:
            _said.popitem(last=False)


def recall(setup: Hashable) -> object | None:
    """What :func:`remember` holds for ``setup``, if anything. Any thread."""
    with _said_lock:
        return _said.get(setup)


# -- process lifetime ---------------------------------------------------------------------------


def _close_at_exit() -> None:
    """At interpreter exit: QUIT the kept connections and give back what the
    limiters hold, so that a shared cap's slots (Redis) are free for other
    processes at once, not when their leases run out. Bounded by ``EXIT_TIMEOUT_S``."""
    if not _destinations or not running_here():
        return
    destinations, limiters = list(_destinations.values()), list(_limiters.values())

    async def close_all() -> None:
        await settle_background()  # connections on their way back to a pool
        for d in destinations:
            await d.shut()
        for limiter in limiters:
            await limiter.close()

    async def bounded() -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close_all(), EXIT_TIMEOUT_S)

    with contextlib.suppress(Exception):
        run(bounded())


def _forget_in_child() -> None:
    """A forked child: the parent's loop thread did not come along, and its
    connections, slots and kept sessions are the parent's. Start from nothing."""
    global PID, _lock, _loop, _pid, _thread_id, _background, _registry_lock, _said_lock
    PID = os.getpid()
    _lock, _loop, _pid, _thread_id = threading.Lock(), None, None, None
    _background = set()
    _registry_lock = threading.Lock()
    _destinations.clear()
    _limiters.clear()
    _said_lock = threading.Lock()
    _said.clear()


atexit.register(_close_at_exit)
os.register_at_fork(after_in_child=_forget_in_child)
