"""The arithmetic on queue entries, written once for every backend.

A backend stores an entry's recipients as JSON text and recomputes its
``next_attempt_at`` whenever they change. What a change does is decided here,
on plain values, with no storage in sight:

- :func:`merge` folds a new deferral of the same message (``Queue.put`` of an
  existing key) into the recipients already held;
- :func:`apply_attempt` records what a delivery attempt did (``Queue.update``);
- :func:`mark_sending` flags the recipients a runner is about to send
  (``Queue.mark_sending``), so that a send whose outcome is never written back
  is known on the next claim;
- :func:`made_due` makes recipients due at once (``Queue.retry``);
- :func:`encode_recipients` / :func:`decode_recipients` are the stored form,
  and :func:`next_attempt` the entry's due time.

Everything here is pure: the backends read, call one of these, and write.

.. versionadded:: 0.4
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .base import PendingRecipient, QueueEntry

__all__ = [
    "Attempted",
    "Merged",
    "apply_attempt",
    "decode_recipients",
    "encode_recipients",
    "made_due",
    "mark_sending",
    "merge",
    "next_attempt",
]

_FIELDS = frozenset(f.name for f in dataclasses.fields(PendingRecipient))


def encode_recipients(recipients: Sequence[PendingRecipient]) -> str:
    """The stored form: a compact JSON list of objects, one per recipient."""
    return json.dumps([dataclasses.asdict(r) for r in recipients], separators=(",", ":"))


def decode_recipients(text: str | bytes) -> tuple[PendingRecipient, ...]:
    """Back from :func:`encode_recipients`. Keys this version does not know
    (written by a newer one) are ignored; keys it lacks take their defaults."""
    return tuple(
        PendingRecipient(**{k: v for k, v in item.items() if k in _FIELDS}) for item in json.loads(text)
    )


def next_attempt(recipients: Sequence[PendingRecipient], expires_at: float) -> float:
    """When the entry is due: its earliest recipient, never later than ``expires_at``."""
    return min(min(r.next_attempt_at for r in recipients), expires_at)


@dataclass(frozen=True, slots=True)
class Merged:
    """An entry's recipients and times after a ``put`` merged into it."""

    recipients: tuple[PendingRecipient, ...]
    created_at: float
    expires_at: float
    next_attempt_at: float


def merge(
    held: Sequence[PendingRecipient], new: QueueEntry, *, created_at: float, expires_at: float
) -> Merged:
    """Fold ``new`` (a deferral of the same message) into an entry holding
    ``held``, created at ``created_at`` and expiring at ``expires_at``.

    A new record replaces the held one of the same address; the others are
    kept, in their order, the new addresses after them. The entry keeps the
    earlier creation and expiry. A recipient flagged ``possible_duplicate``
    stays flagged: the copy a runner may have delivered is still there,
    whatever the new deferral says.
    """
    merged = {r.address: r for r in held}
    for r in new.recipients:
        old = merged.get(r.address)
        if old is not None and old.possible_duplicate and not r.possible_duplicate:
            r = dataclasses.replace(r, possible_duplicate=True)
        merged[r.address] = r
    recipients = tuple(merged.values())
    created = min(created_at, new.created_at)
    expires = min(expires_at, new.expires_at)
    return Merged(recipients, created, expires, next_attempt(recipients, expires))


@dataclass(frozen=True, slots=True)
class Attempted:
    """An entry's recipients after an attempt, and its new due time
    (``None`` when nothing is left and the entry goes)."""

    recipients: tuple[PendingRecipient, ...]
    next_attempt_at: float | None


def apply_attempt(
    held: Sequence[PendingRecipient], *, remove: Collection[str], defer: Sequence[PendingRecipient],
    expires_at: float,
) -> Attempted:
    """What an attempt leaves: the recipients in ``remove`` (delivered or
    failed) go, those in ``defer`` replace the held record of the same address
    (a deferral for an address no longer held is dropped), and the rest
    (recipients not due, or merged in meanwhile) stay as they were."""
    gone = set(remove)
    replace = {r.address: r for r in defer}
    recipients = tuple(replace.get(r.address, r) for r in held if r.address not in gone)
    return Attempted(recipients, next_attempt(recipients, expires_at) if recipients else None)


def mark_sending(
    held: Sequence[PendingRecipient], addresses: Collection[str]
) -> tuple[PendingRecipient, ...]:
    """``held`` with the recipients in ``addresses`` flagged ``possible_duplicate``:
    a runner is about to send them, and until an update records the outcome
    the server may hold a copy."""
    wanted = set(addresses)
    return tuple(
        dataclasses.replace(r, possible_duplicate=True)
        if r.address in wanted and not r.possible_duplicate else r
        for r in held
    )


def made_due(held: Sequence[PendingRecipient], now: float) -> tuple[PendingRecipient, ...]:
    """Every recipient due at ``now`` (``smtpretry queue retry``)."""
    return tuple(dataclasses.replace(r, next_attempt_at=now) for r in held)
