"""One message's story, or one recipient's, across files and process restarts.

What this module owns: picking the records about a message id or a recipient out of a stream
and putting them in time order. A message's story is every event bound to its
``message_id`` (in every process that sent it: a deferred recipient sent again after a
restart keeps its Message-ID). A recipient's story is every event naming it in
``recipient`` or ``recipients``. Cap changes name neither (they belong to the destination),
so they are not part of a story.

Only the matching records are kept, so memory follows the story, not the log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .. import events as ev
from .parse import Record

__all__ = ["as_json", "normalize_message_id", "select"]


def normalize_message_id(value: str) -> str:
    """``<id@host>`` and ``id@host`` name the same message."""
    return value.strip().removeprefix("<").removesuffix(">").strip()


def select(records: Iterable[Record], *, message_id: str | None = None,
           recipient: str | None = None) -> list[Record]:
    """The records of one message (``message_id``) or one recipient (``recipient``,
    compared without regard to case, or by its hash in a log that hashes recipients),
    ordered by ``timestamp`` (records without one last),
    then by their order in the inputs."""
    if (message_id is None) == (recipient is None):
        raise ValueError("give exactly one of message_id and recipient")
    found: list[Record] = []
    if message_id is not None:
        wanted = normalize_message_id(message_id)
        for r in records:
            mid = r.message_id
            if mid is not None and normalize_message_id(mid) == wanted:
                found.append(r)
    else:
        assert recipient is not None
        # A log written with hash_recipients=True names the address by its hash.
        names = {recipient.strip().lower(), ev.hash_address(recipient)}
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
