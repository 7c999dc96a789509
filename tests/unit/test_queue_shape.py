"""queue shape's arithmetic, pure: entries and recipients per destination or domain, by age
in qshape's buckets."""

from __future__ import annotations

import dataclasses

import pytest

from smtpretry.queue import Destination, QueueEntry
from smtpretry.queue.shape import shape
from tests.unit.test_queue_sqlite import NOW, entry, rcpt

OTHER = Destination("127.0.0.1", 2525, "none")


def aged(minutes: float, *addresses: str, destination: Destination | None = None) -> QueueEntry:
    e = entry(f"k{minutes}{addresses}", *(rcpt(a) for a in addresses))
    e = dataclasses.replace(e, created_at=NOW - minutes * 60)
    return dataclasses.replace(e, destination=destination) if destination else e


def test_entries_and_recipients_per_destination_by_age() -> None:
    queue = [aged(1, "a@x.com", "b@y.com"), aged(7, "c@x.com"), aged(3000, "d@x.com", destination=OTHER),
             aged(5, "e@x.com")]
    s = shape(queue, now=NOW)
    assert s.labels == ["5m", "10m", "20m", "40m", "80m", "160m", "320m", "640m", "1280m", "1280m+"]
    assert (s.total.entries, s.total.recipients) == (4, 5)
    assert s.total.entries_by_age == [2, 1, 0, 0, 0, 0, 0, 0, 0, 1]  # 5 minutes is still the first
    [first, second] = s.rows
    assert (first.name, first.entries, first.recipients) == ("mx.example.net:25", 3, 4)
    assert first.recipients_by_age[:2] == [3, 1]
    assert (second.name, second.entries_by_age[-1]) == ("127.0.0.1:2525", 1)
    row = s.as_dict()["rows"][0]["by_age"][0]
    assert row == {"age": "5m", "entries": 2, "recipients": 3}


def test_by_recipient_domain_an_entry_counts_under_each_of_its_domains() -> None:
    s = shape([aged(1, "a@X.com", "b@y.com", "c@x.com")], now=NOW, by="domain")
    assert [(r.name, r.entries, r.recipients) for r in s.rows] == [("x.com", 1, 2), ("y.com", 1, 1)]
    assert (s.total.entries, s.total.recipients) == (1, 3)


def test_buckets_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing minutes"):
        shape([], now=NOW, buckets_min=(10, 5))
    assert shape([], now=NOW, buckets_min=(60,)).labels == ["60m", "60m+"]
