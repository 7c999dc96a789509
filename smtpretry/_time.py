"""The one way smtpretry writes an instant for people: ISO 8601 in UTC, with its zone.

``2025-06-01T12:00:00Z``, or ``2025-06-01T12:00:00.123Z`` where milliseconds matter (a
record of the decision log). The log's own ``timestamp`` key has the same form. The CLI,
the log readers and the engine's own sentences (a suspension's reason) all write times
through :func:`iso`, so a time reads the same wherever it appears. Pure: no clock here.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso"]


def iso(ts: float | None, *, ms: bool = False) -> str:
    """``ts`` (epoch seconds) as ``YYYY-MM-DDTHH:MM:SSZ`` (``.mmm`` before the ``Z`` with
    ``ms``); an empty string for None."""
    if ts is None:
        return ""
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec="milliseconds" if ms else "seconds").replace("+00:00", "Z")
