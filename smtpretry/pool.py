"""Deprecated: connection limits live in :mod:`smtpretry.limits`.

This module keeps ``from smtpretry.pool import Limiter, DestinationPool, ...``
working.

.. deprecated:: 0.4
   Import from :mod:`smtpretry.limits`.
"""

from __future__ import annotations

import warnings

from .limits.cap import AdaptiveCap, AdaptiveRate, CapReport
from .limits.limiter import LINGER_S, Limiter
from .limits.pool import ABORT_GRACE_S, DestinationPool, Lease, Refusal, SessionSource
from .limits.slots import LocalSlots, Slots

__all__ = [
    "ABORT_GRACE_S",
    "LINGER_S",
    "AdaptiveCap",
    "AdaptiveRate",
    "CapReport",
    "DestinationPool",
    "Lease",
    "Limiter",
    "LocalSlots",
    "Refusal",
    "SessionSource",
    "Slots",
]

warnings.warn("smtpretry.pool is deprecated: import from smtpretry.limits", DeprecationWarning, stacklevel=2)
