"""The durable deferred queue: deferred recipients survive restarts and crashes.

``Mailer(queue="sqlite:///var/lib/app/queue.db")`` writes every deferred
recipient to the queue before ``send()`` returns; a :class:`QueueRunner`
(``smtpretry queue run``, or ``await mailer.run_queue()``) sends them again
when they are due, with the same engine. The :class:`Queue` protocol keeps
backends interchangeable behind :func:`open_queue`; SQLite is the embedded
default.

.. versionadded:: 0.2
"""

from .base import (
    Destination,
    PendingRecipient,
    Queue,
    QueueEntry,
    QueueStats,
    default_queue_path,
    open_queue,
)
from .runner import QueueRunner, QueueRunStats

__all__ = [
    "Destination",
    "PendingRecipient",
    "Queue",
    "QueueEntry",
    "QueueRunStats",
    "QueueRunner",
    "QueueStats",
    "default_queue_path",
    "open_queue",
]
