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
- :func:`resolve_ids` turns the ids and id prefixes an operator typed into
  entry ids, and :func:`select` picks the entries a
  :class:`~smtpretry.queue.base.Selection` selects;
- :func:`encode_recipients` / :func:`decode_recipients` are the stored form,
  and :func:`next_attempt` the entry's due time.

Everything here is pure: the backends read, call one of these, and write.

.. versionadded:: 0.4
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from ..errors import QueueError
from .base import PendingRecipient, QueueEntry, QueueStats, Selection

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
    "resolve_ids",
    "select",
    "stats_of",
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


def resolve_ids(wanted: Sequence[str], known: Iterable[str], *, where: str) -> list[str]:
    """The entry ids that ``wanted`` names, in its order, each once: an id in
    full, or a prefix of exactly one of ``known`` (ids compare in lower case).

    :raises QueueError: ``"{where}: no entry 'x'"`` for one that names no
        entry, or ``"... 'a' is ambiguous: ..."`` for a prefix of several.

    .. versionadded:: 0.5
    """
    ids = set(known)
    out: list[str] = []
    for raw in wanted:
        typed = raw.strip().lower()
        if not typed:
            raise QueueError(f"{where}: an empty entry ID")
        found = [typed] if typed in ids else sorted(i for i in ids if i.startswith(typed))
        if not found:
            raise QueueError(f"{where}: no entry {raw!r}")
        if len(found) > 1:
            shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            raise QueueError(
                f"{where}: entry ID prefix {raw!r} is ambiguous: it names {len(found)} entries ({shown})"
            )
        if found[0] not in out:
            out.append(found[0])
    return out


def select(entries: Iterable[QueueEntry], selection: Selection, *, where: str) -> list[QueueEntry]:
    """The entries ``selection`` selects, in their order. Its ``ids`` are
    resolved against ``entries`` (pass them all when ``ids`` is given).

    :raises QueueError: as :func:`resolve_ids`.

    .. versionadded:: 0.5
    """
    every = list(entries)
    if selection.ids:
        chosen = set(resolve_ids(selection.ids, (e.id for e in every), where=where))
        every = [e for e in every if e.id in chosen]
    return [e for e in every if selection.matches(e)]


def stats_of(entries: Iterable[QueueEntry], now: float) -> QueueStats:
    """The :class:`QueueStats` of ``entries`` at ``now``, as ``Queue.stats`` counts them.

    .. versionadded:: 0.5
    """
    items = list(entries)
    free = [e for e in items if not e.held]
    return QueueStats(
        entries=len(items),
        recipients=sum(len(e.recipients) for e in items),
        due=sum(e.next_attempt_at <= now and e.lease_until <= now for e in free),
        leased=sum(e.lease_until > now for e in items),
        expired=sum(e.expires_at <= now for e in items),
        oldest_created_at=min((e.created_at for e in items), default=None),
        next_attempt_at=min((e.next_attempt_at for e in free), default=None),
        held=len(items) - len(free),
    )
