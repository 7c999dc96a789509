"""The arithmetic on queue entries (queue/entry.py), on plain values: what a merge, an
attempt and a retry leave, and the stored form of the recipients. Both backends call
these; the Queue contract tests (test_queue_sqlite.py) run them through each backend."""

from __future__ import annotations

import json

from smtpretry.queue import Destination, PendingRecipient, QueueEntry
from smtpretry.queue import entry as e

NOW = 1_800_000_000.0


def rcpt(address: str, at: float = NOW, **kw: object) -> PendingRecipient:
    return PendingRecipient(address, at, **kw)  # type: ignore[arg-type]


def new_entry(
    *recipients: PendingRecipient, created_at: float = NOW, expires_at: float = NOW + 1000
) -> QueueEntry:
    return QueueEntry(
        key="k", destination=Destination("mx.example.net", 25), sender="s@example.org", message_id=None,
        recipients=recipients, created_at=created_at, next_attempt_at=NOW, expires_at=expires_at,
        data=b"x",
    )


def test_the_stored_form_round_trips_and_reads_older_and_newer_records() -> None:
    people = (rcpt("a@x", NOW + 1, deferrals=2, code=422, enhanced="4.2.2", text="full"), rcpt("b@x"))
    text = e.encode_recipients(people)
    assert " " not in text and e.decode_recipients(text) == people
    assert e.decode_recipients(text.encode()) == people
    # Written by an older version (fewer keys) or a newer one (a key unknown here).
    older = json.dumps([{"address": "c@x", "next_attempt_at": NOW}])
    newer = json.dumps([{"address": "d@x", "next_attempt_at": NOW, "route": "eu"}])
    assert e.decode_recipients(older) == (rcpt("c@x"),)
    assert e.decode_recipients(newer) == (rcpt("d@x"),)


def test_next_attempt_is_the_earliest_recipient_but_never_past_expiry() -> None:
    assert e.next_attempt([rcpt("a@x", NOW + 50), rcpt("b@x", NOW + 10)], NOW + 100) == NOW + 10
    assert e.next_attempt([rcpt("a@x", NOW + 500)], NOW + 100) == NOW + 100


def test_a_merge_replaces_the_same_address_keeps_the_rest_and_the_earlier_times() -> None:
    held = (rcpt("a@x", NOW + 300), rcpt("b@x", NOW + 300))
    later_b = rcpt("b@x", NOW + 900, text="later")
    m = e.merge(held, new_entry(later_b, rcpt("c@x", NOW + 100), created_at=NOW - 5, expires_at=NOW + 2000),
                created_at=NOW, expires_at=NOW + 1000)
    assert m == e.Merged(
        recipients=(rcpt("a@x", NOW + 300), later_b, rcpt("c@x", NOW + 100)),
        created_at=NOW - 5, expires_at=NOW + 1000, next_attempt_at=NOW + 100,
    )


def test_an_attempt_removes_the_done_replaces_the_deferred_held_and_keeps_the_others() -> None:
    held = (rcpt("a@x"), rcpt("b@x"), rcpt("c@x", NOW + 600), rcpt("d@x", NOW + 50))
    b_again = rcpt("b@x", NOW + 900, deferrals=2)
    done = e.apply_attempt(held, remove={"a@x"}, defer=[b_again, rcpt("gone@x", NOW + 1)],
                           expires_at=NOW + 700)
    # c was not due and d was merged in meanwhile: both untouched; gone@x is not held.
    assert done == e.Attempted((b_again, rcpt("c@x", NOW + 600), rcpt("d@x", NOW + 50)), NOW + 50)
    assert e.apply_attempt(held, remove={"a@x", "b@x", "c@x", "d@x"}, defer=[], expires_at=NOW) == (
        e.Attempted((), None)
    )
    capped = e.apply_attempt((rcpt("a@x", NOW + 900),), remove=(), defer=(), expires_at=NOW + 700)
    assert capped.next_attempt_at == NOW + 700


def test_made_due_moves_every_recipient_to_now_and_nothing_else() -> None:
    held = (rcpt("a@x", NOW + 900, deferrals=3), rcpt("b@x", NOW + 5))
    assert e.made_due(held, NOW) == (rcpt("a@x", NOW, deferrals=3), rcpt("b@x", NOW))


def test_marking_flags_the_recipients_about_to_be_sent_and_a_merge_keeps_the_flag() -> None:
    held = (rcpt("a@x"), rcpt("b@x"), rcpt("c@x", possible_duplicate=True))
    marked = e.mark_sending(held, ["a@x", "c@x", "nobody@x"])
    assert marked == (rcpt("a@x", possible_duplicate=True), rcpt("b@x"), rcpt("c@x", possible_duplicate=True))
    # A new deferral of a flagged recipient does not make the copy at the server go away.
    m = e.merge(marked, new_entry(rcpt("a@x", NOW + 60), rcpt("b@x", NOW + 60)), created_at=NOW,
                expires_at=NOW + 1000)
    assert m.recipients == (
        rcpt("a@x", NOW + 60, possible_duplicate=True), rcpt("b@x", NOW + 60),
        rcpt("c@x", possible_duplicate=True),
    )
    # An attempt's deferral replaces the record: its outcome says whether a copy may be there.
    done = e.apply_attempt(marked, remove=["c@x"], defer=[rcpt("a@x", NOW + 300)], expires_at=NOW + 1000)
    assert done.recipients == (rcpt("a@x", NOW + 300), rcpt("b@x"))
