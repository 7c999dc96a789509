"""The shape of a queue, as Postfix's ``qshape`` draws it: per destination (or per recipient
domain), how many entries and recipients wait, by how long they have waited.

What this module owns: :func:`shape`, pure arithmetic over :class:`QueueEntry` values and an
instant, and the :class:`Shape` it returns. Ages are counted from an entry's ``created_at``
(when the message was first deferred); the buckets are ``qshape``'s by default: 5, 10, 20,
40, 80, 160, 320, 640 and 1280 minutes, and older. ``smtpretry queue shape`` prints it.

.. versionadded:: 0.5
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .base import QueueEntry

__all__ = ["BUCKETS_MIN", "Row", "Shape", "shape"]

BUCKETS_MIN: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
"""Upper bounds of the age buckets, in minutes (``qshape``'s); one more bucket holds the older."""

By = Literal["destination", "domain"]


@dataclass(slots=True)
class Row:
    """One destination (or domain): entries and recipients in total and per age bucket
    (``len(BUCKETS_MIN) + 1`` buckets, the last for the older)."""

    name: str
    entries: int = 0
    recipients: int = 0
    entries_by_age: list[int] = field(default_factory=list)
    recipients_by_age: list[int] = field(default_factory=list)

    def as_dict(self, labels: Sequence[str]) -> dict[str, Any]:
        return {
            "name": self.name,
            "entries": self.entries,
            "recipients": self.recipients,
            "by_age": [
                {"age": label, "entries": e, "recipients": r}
                for label, e, r in zip(labels, self.entries_by_age, self.recipients_by_age, strict=True)
            ],
        }


@dataclass(frozen=True, slots=True)
class Shape:
    """What :func:`shape` found: ``total`` first, then one :class:`Row` per destination (or
    domain), the most recipients first."""

    by: By
    buckets_min: tuple[int, ...]
    total: Row
    rows: tuple[Row, ...]

    @property
    def labels(self) -> list[str]:
        """``5m``, ``10m``, ..., ``1280m``, ``1280m+``: each bucket's upper bound."""
        return [f"{b}m" for b in self.buckets_min] + [f"{self.buckets_min[-1]}m+"]

    def as_dict(self) -> dict[str, Any]:
        labels = self.labels
        return {"by": self.by, "total": self.total.as_dict(labels),
                "rows": [r.as_dict(labels) for r in self.rows]}


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".") or "(none)"


def shape(entries: Iterable[QueueEntry], *, now: float, by: By = "destination",
          buckets_min: Sequence[int] = BUCKETS_MIN) -> Shape:
    """The queue's shape at ``now`` (epoch seconds). By ``destination`` (``host:port``, as
    the log writes it), an entry counts once with all its pending recipients; by
    ``domain``, an entry counts under each domain its recipients are at, with those
    recipients. Pure.

    :raises ValueError: buckets that are not increasing whole minutes.
    """
    bounds = tuple(buckets_min)
    if not bounds or any(b <= 0 for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError(f"buckets: expected increasing minutes > 0, got {list(bounds)}")
    width = len(bounds) + 1
    total = Row("TOTAL", entries_by_age=[0] * width, recipients_by_age=[0] * width)
    rows: dict[str, Row] = {}
    for e in entries:
        minutes = max(0.0, now - e.created_at) / 60
        slot = bisect.bisect_left(bounds, minutes)  # ages up to 5 minutes in the first bucket
        groups: dict[str, int] = {}
        if by == "destination":
            groups[e.destination.key] = len(e.recipients)
        else:
            for r in e.recipients:
                groups[_domain(r.address)] = groups.get(_domain(r.address), 0) + 1
        for name, count in groups.items():
            row = rows.get(name)
            if row is None:
                row = rows[name] = Row(name, entries_by_age=[0] * width, recipients_by_age=[0] * width)
            row.entries += 1
            row.recipients += count
            row.entries_by_age[slot] += 1
            row.recipients_by_age[slot] += count
        total.entries += 1
        total.recipients += len(e.recipients)
        total.entries_by_age[slot] += 1
        total.recipients_by_age[slot] += len(e.recipients)
    ordered = sorted(rows.values(), key=lambda r: (-r.recipients, -r.entries, r.name))
    return Shape(by, bounds, total, tuple(ordered))
