"""Deprecated: the queue runner lives in :mod:`smtpretry.runner`.

``queue/`` is storage; the runner, which drives Mailers over a queue, sits above
it. This module keeps ``from smtpretry.queue.runner import QueueRunner`` working.

.. deprecated:: 0.4
   Import :class:`~smtpretry.runner.QueueRunner` from :mod:`smtpretry.runner`
   (or :mod:`smtpretry.queue`, which still names it).
"""

from __future__ import annotations

import warnings

from ..runner import QueueRunner, QueueRunStats, default_owner

__all__ = ["QueueRunStats", "QueueRunner", "default_owner"]

warnings.warn(
    "smtpretry.queue.runner is deprecated: import QueueRunner from smtpretry.runner",
    DeprecationWarning,
    stacklevel=2,
)
