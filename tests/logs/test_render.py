"""Every event the library writes reads as a sentence in `logs tail` and `logs trace`."""

from __future__ import annotations

from typing import Any

import pytest

from smtpretry import events as ev
from smtpretry.cli.render import LABELS, STYLES, describe
from smtpretry.logs import Record

TS = 1_800_000_000.0


def record(event: str, **fields: Any) -> Record:
    return Record(event, {"event": event, "schema_version": 1, "destination": "mx.example.net:25", **fields},
                  TS, "app.log", 1, 0)


def test_every_event_has_a_label_and_a_colour() -> None:
    assert set(LABELS) == set(ev.EVENTS)
    assert set(STYLES) == set(ev.EVENTS)


@pytest.mark.parametrize(("event", "fields", "sentence"), [
    (ev.RATE_LOWERED, {"messages_per_minute": 30.0, "previous": 60.0, "configured": 60.0, "code": 421,
                       "enhanced": "4.7.0", "text": "Too many messages, slow down"},
     "pace 60 -> 30 messages/minute (configured 60) after 421 4.7.0 Too many messages, slow down"),
    (ev.RATE_RAISED, {"messages_per_minute": 36.0, "previous": 30.0, "configured": 60.0},
     "pace 30 -> 36 messages/minute (configured 60)"),
    (ev.QUEUED, {"queue_id": "q1", "recipients": ["a@x"], "next_attempt_at": TS + 300, "queue": "sqlite:///q"},
     "queued as q1, next attempt 2027-01-15T08:05:00Z"),
    (ev.EXPIRED, {"queue_id": "q1", "recipients": ["a@x"], "created_at": TS, "expires_at": TS + 86400},
     "expired from the queue (q1), past 2027-01-16T08:00:00Z"),
    (ev.WRITEBACK_FAILED, {"queue_id": "q1", "recipients": ["a@x"], "delivered": ["a@x"],
                           "error": "queue /q.db: database or disk is full", "queue": "sqlite:///q.db"},
     "sent, but the outcome was not written back to the queue (q1): queue /q.db: database or disk is "
     "full; they are marked as possible duplicates for the next attempt"),
    (ev.LEASE_LOST, {"leases": 2, "lease_s": 30.0},
     "2 connection slot lease(s) ran out before renewal (the process stalled over 30.0 s)"),
    (ev.BACKEND_LOST, {"backend": "redis://:***@127.0.0.1:6379/0", "doing": "move the shared cap",
                              "error": "ConnectionError: refused"},
     "backend redis://:***@127.0.0.1:6379/0 unreachable, could not move the shared cap: "
     "ConnectionError: refused"),
    (ev.CAP_LOWERED, {"connections_cap": 4, "previous_cap": 8, "configured_cap": 8, "connections_active": 7,
                      "code": 421, "enhanced": "4.7.0", "text": "4.7.0 Too many connections"},
     "connection cap lowered 8 -> 4 (configured 8) after 421 4.7.0 Too many connections; 7 still open, "
     "no new one until fewer than 4"),
    (ev.CAP_RAISED, {"connections_cap": 3, "previous_cap": 2, "configured_cap": 8, "connections_active": 2},
     "connection cap raised 2 -> 3 (configured 8) after successes in a row"),
    (ev.DESTINATION_SUSPENDED, {"suspended_until": TS + 3600, "reason": "421 4.7.0 [TSS04]"},
     "suspended until 2027-01-15T09:00:00Z (421 4.7.0 [TSS04]): its recipients are deferred unsent"),
    (ev.DESTINATION_RESUMED, {"suspended_until": TS + 3600, "reason": ""},
     "suspension ended (was until 2027-01-15T09:00:00Z): sending again"),
])
def test_events_beyond_the_send_read_as_sentences(event: str, fields: dict[str, Any], sentence: str) -> None:
    assert describe(record(event, **fields)) == sentence
