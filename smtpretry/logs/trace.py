"""One message's story, or one recipient's, across files and process restarts.

What this module owns: picking the records about a message id, a recipient or one send
(``send_id``) out of a stream and putting them in time order. A message's story is every event bound to its
``message_id`` (in every process that sent it: a deferred recipient sent again after a
restart keeps its Message-ID). A recipient's story is every event naming it in
``recipient`` or ``recipients``. A cap or pace lowered by a reply to a send carries that
send's ``message_id`` and ``send_id``, so it is part of the message's story; a raise
follows many successes and names no message, and no cap change is part of a recipient's.

A story can hold several sends: a message deferred and sent again by the queue runner, or a
Message-ID an application reuses. Every event of one send (one ``deliver()`` call) carries
the same ``send_id``; :func:`group_sends` splits a story along it. Logs written before
``send_id`` existed have none, and their story stays one list.

Only the matching records are kept, so memory follows the story, not the log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import events as ev
from ..events import K
from .parse import Record

__all__ = ["Send", "as_json", "group_sends", "normalize_message_id", "select"]


def normalize_message_id(value: str) -> str:
    """``<id@host>`` and ``id@host`` name the same message."""
    return value.strip().removeprefix("<").removesuffix(">").strip()


def select(records: Iterable[Record], *, message_id: str | None = None,
           recipient: str | None = None, send_id: str | None = None) -> list[Record]:
    """The records of one message (``message_id``), one recipient (``recipient``,
    compared without regard to case, or by its hash in a log that hashes recipients)
    or one send (``send_id``: the way to a message sent without a Message-ID),
    ordered by ``timestamp`` (records without one last),
    then by their order in the inputs."""
    if sum(x is not None for x in (message_id, recipient, send_id)) != 1:
        raise ValueError("give exactly one of message_id, recipient and send_id")
    found: list[Record] = []
    if send_id is not None:
        wanted_send = send_id.strip()
        found = [r for r in records if r.send_id == wanted_send]
    elif message_id is not None:
        wanted = normalize_message_id(message_id)
        for r in records:
            mid = r.message_id
            if mid is not None and normalize_message_id(mid) == wanted:
                found.append(r)
    else:
        assert recipient is not None
        # A log written with hash_recipients=True names the address by its hash.
        from .._logging import hash_address  # the writing side: imported only when needed

        names = {recipient.strip().lower(), hash_address(recipient)}
        for r in records:
            if r.event in (ev.CAP_LOWERED, ev.CAP_RAISED, ev.SEND_COMPLETED):
                continue
            if any(a.lower() in names for a in r.recipients):
                found.append(r)
    found.sort(key=lambda r: (r.ts is None, r.ts if r.ts is not None else math.inf, r.seq))
    return found


def as_json(r: Record) -> dict[str, Any]:
    """The record as written, plus where it was read (``_source``: ``file:line``)."""
    return {**r.fields, "_source": f"{r.source}:{r.line}"}


@dataclass(slots=True)
class Send:
    """The records of one send within a story, in story order.

    ``send_id`` is None for records that name no send: those of a log written before
    ``send_id``, or a queue runner's ``message_expired``. ``start`` is when the send began as
    far as the log tells: its first record, or earlier when its ``send_completed`` says how
    long it took (epoch seconds; None without timestamps).
    """

    send_id: str | None
    records: list[Record] = field(default_factory=list)
    start: float | None = None

    @property
    def destination(self) -> str:
        return self.records[0].destination if self.records else "?"


def _earlier(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def group_sends(story: list[Record]) -> list[Send]:
    """``story`` (as :func:`select` returns it) split into its sends, ordered by start.

    Records with the same ``send_id`` form one :class:`Send`, even when two sends of a reused
    Message-ID ran at the same time. Consecutive records without one form a :class:`Send`
    whose ``send_id`` is None, so a story from a log without ``send_id`` is a single such
    group, in the order it came.
    """
    groups: list[Send] = []
    by_id: dict[str, Send] = {}
    loose: Send | None = None  # the run of records without send_id being collected
    for r in story:
        sid = r.send_id
        group: Send
        if sid is None:
            if loose is None:
                loose = Send(None)
                groups.append(loose)
            group = loose
        else:
            loose = None
            if sid not in by_id:
                by_id[sid] = Send(sid)
                groups.append(by_id[sid])
            group = by_id[sid]
        group.records.append(r)
        group.start = _earlier(group.start, r.ts)
        if r.event == ev.SEND_COMPLETED and r.ts is not None:
            took = r.get(K.DURATION_S)
            if isinstance(took, (int, float)) and not isinstance(took, bool):
                group.start = _earlier(group.start, r.ts - float(took))
    order = {id(g): i for i, g in enumerate(groups)}
    groups.sort(key=lambda g: (g.start is None, g.start if g.start is not None else math.inf, order[id(g)]))
    return groups
