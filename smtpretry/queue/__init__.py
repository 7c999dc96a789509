"""The durable deferred queue: deferred recipients survive restarts and crashes.

``Mailer(queue="sqlite:///var/lib/app/queue.db")`` writes every deferred
recipient to the queue before ``send()`` returns; a
:class:`~smtpretry.runner.QueueRunner` (``smtpretry queue run``, or
``await mailer.run_queue()``) sends them again when they are due, with the same
engine. The :class:`Queue` protocol keeps backends interchangeable behind
:func:`open_queue`; SQLite is the embedded default.

This package is storage only. The runner sits above it, in :mod:`smtpretry.runner`;
``QueueRunner`` and ``QueueRunStats`` are still importable from here, loaded on
first use, so importing the queue never imports the runner or the Mailer.

.. versionadded:: 0.2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    Destination,
    PendingRecipient,
    Queue,
    QueueEntry,
    QueueStats,
    Selection,
    Suspension,
    default_queue_path,
    open_queue,
)

if TYPE_CHECKING:
    from ..runner import QueueRunner, QueueRunStats

__all__ = [
    "Destination",
    "PendingRecipient",
    "Queue",
    "QueueEntry",
    "QueueRunStats",
    "QueueRunner",
    "QueueStats",
    "Selection",
    "Suspension",
    "default_queue_path",
    "open_queue",
]

_RUNNER_NAMES = frozenset({"QueueRunner", "QueueRunStats"})


def __getattr__(name: str) -> Any:
    # The runner drives Mailers, which sit above the queue: load it only when asked for.
    if name in _RUNNER_NAMES:
        from .. import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
