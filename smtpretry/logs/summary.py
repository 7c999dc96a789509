"""Summaries of the decision log, per destination and per category, and its timeline.

What this module owns: :func:`summarize` folds a stream of :class:`Record` into a
:class:`Summary` in one pass, keeping only what is still open:

- a message is known by its ``message_id``; one sent without a Message-ID (unchanged
  smtplib code often sends them so) by its ``send_id``, each send its own message (its
  deferred recipients sent again by the queue runner are then a message of their own:
  nothing in the log ties the two sends together). Records with neither (a log written
  before ``send_id``) share one message, as they always did.
- a recipient is known by ``(message, recipient)``; its story starts at the first event
  that names it and ends at ``message_delivered`` (delivered) or ``recipient_failed``
  (failed). ``recipient_deferred`` leaves it waiting (deferred) until a later process
  delivers or fails it; a recipient with no final event is ``pending``.
- a message is counted once, by its recipients: ``deferred`` if any is still waiting, else
  ``failed`` if any failed, else ``delivered`` (``pending`` if one never finished).
- a message's state is dropped at its ``send_completed`` once every recipient is final, so
  memory follows what is in flight and the deferred backlog, not the size of the log.

Figures per destination: messages and recipients by status; 421 replies (one per session
refused or closed with 421: events repeating one reply for several recipients count
once); retries (one per backoff wait of a send) and backoff time (the ``delay_s`` of each
wait); cap changes and the cap's lowest and last value; time to delivery, p50/p95/max:
from the recipient's first event, or the start of the first send that named it if earlier
(``send_completed`` timestamp minus its ``duration_s``; no event marks a send's start), to
its ``message_delivered``. Recipients count at the destination of their last event (a later
process may deliver a deferred recipient elsewhere), messages at their message's last one.
Per category, the recipients (and messages) that met it at least once and how they ended.
A recipient delivered at once meets only ``accepted``.

:class:`Timeline` keeps the same events in at most ``MAX_BUCKETS`` time buckets per
destination (buckets widen as the log's span grows), for the report's charts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

from .. import events as ev
from ..events import K
from .parse import ReadStats, Record

__all__ = [
    "BUCKET_WIDTHS",
    "STATUSES",
    "Bucket",
    "CategoryStats",
    "DomainStats",
    "DestinationStats",
    "Quantiles",
    "Summary",
    "Timeline",
    "summarize",
]

STATUSES = ("delivered", "deferred", "failed", "pending")
ACCEPTED = "accepted"
_RANK = {"pending": 3, "deferred": 2, "failed": 1, "delivered": 0}
_QUANTILE_SAMPLE = 65_536
# The events the summary interprets; others known to the schema (the queue's) are counted in
# ``Summary.events`` and otherwise left alone.
_HANDLED = frozenset({ev.MESSAGE_DELIVERED, ev.RETRY_SCHEDULED, ev.RECIPIENT_DEFERRED, ev.RECIPIENT_FAILED,
                      ev.CONNECTION_LOST, ev.SEND_COMPLETED})


class Quantiles:
    """Count, max and p50/p95 of a stream of durations in bounded memory: exact up to
    ``capacity`` values, from a uniform reservoir sample (seeded, so repeatable) beyond."""

    __slots__ = ("_rng", "capacity", "count", "maximum", "sample", "total")

    def __init__(self, capacity: int = _QUANTILE_SAMPLE) -> None:
        self.capacity = capacity
        self.count = 0
        self.total = 0.0
        self.maximum: float | None = None
        self.sample: list[float] = []
        self._rng = random.Random(0)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.maximum = value if self.maximum is None else max(self.maximum, value)
        if len(self.sample) < self.capacity:
            self.sample.append(value)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.capacity:
                self.sample[slot] = value

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile, ``q`` in [0, 1]."""
        if not self.sample:
            return None
        ordered = sorted(self.sample)
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50_s": _round(self.quantile(0.5)),
            "p95_s": _round(self.quantile(0.95)),
            "max_s": _round(self.maximum),
            "exact": self.count <= self.capacity,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _counts() -> dict[str, int]:
    return dict.fromkeys(STATUSES, 0)


@dataclass(slots=True)
class DestinationStats:
    """Figures for one destination (``host:port``). Durations in seconds."""

    destination: str
    messages: dict[str, int] = field(default_factory=_counts)
    recipients: dict[str, int] = field(default_factory=_counts)
    replies_421: int = 0
    retries: int = 0
    recipient_retries: int = 0
    backoff_s: float = 0.0
    cap_lowered: int = 0
    cap_raised: int = 0
    cap_configured: int | None = None
    cap_min: int | None = None
    cap_last: int | None = None
    pace_lowered: int = 0
    pace_raised: int = 0
    pace_configured: float | None = None
    pace_min: float | None = None
    pace_last: float | None = None
    connections_lost: int = 0
    possible_duplicates: int = 0
    assumed_delivered: int = 0
    delivery_time: Quantiles = field(default_factory=Quantiles)
    first_ts: float | None = None
    last_ts: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "messages": dict(self.messages),
            "recipients": dict(self.recipients),
            "replies_421": self.replies_421,
            "retries": self.retries,
            "recipient_retries": self.recipient_retries,
            "backoff_s": round(self.backoff_s, 6),
            "cap": {
                "lowered": self.cap_lowered,
                "raised": self.cap_raised,
                "configured": self.cap_configured,
                "min": self.cap_min,
                "last": self.cap_last,
            },
            "pace": {  # messages per minute (max_messages_per_minute), from rate_lowered/raised
                "lowered": self.pace_lowered,
                "raised": self.pace_raised,
                "configured": self.pace_configured,
                "min": self.pace_min,
                "last": self.pace_last,
            },
            "connections_lost": self.connections_lost,
            "possible_duplicates": self.possible_duplicates,
            "assumed_delivered": self.assumed_delivered,
            "delivery_time": self.delivery_time.as_dict(),
            "first": _iso(self.first_ts),
            "last": _iso(self.last_ts),
        }


@dataclass(slots=True)
class CategoryStats:
    """Recipients and messages of one destination that met ``category`` at least once
    (a reply classified so), by how they ended; ``replies`` counts the decision events."""

    destination: str
    category: str
    replies: int = 0
    messages: dict[str, int] = field(default_factory=_counts)
    recipients: dict[str, int] = field(default_factory=_counts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "category": self.category,
            "replies": self.replies,
            "messages": dict(self.messages),
            "recipients": dict(self.recipients),
        }


@dataclass(slots=True)
class DomainStats:
    """One recipient domain of a routed log: the routes and providers (limit keys)
    ``route_resolved`` gave it, how many times, and its recipients by how they ended
    (counted by their address's domain; hashed addresses name none)."""

    domain: str
    routes: set[str] = field(default_factory=set)
    providers: set[str] = field(default_factory=set)
    resolved: int = 0
    from_cache: int = 0
    recipients: dict[str, int] = field(default_factory=_counts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "routes": sorted(self.routes),
            "providers": sorted(self.providers),
            "resolved": self.resolved,
            "from_cache": self.from_cache,
            "recipients": dict(self.recipients),
        }


@dataclass(slots=True)
class Bucket:
    """One time bucket of one destination: recipient decisions by outcome, retries that
    named no recipient (the facade's ``connect()`` and ``login()``), 421 replies, the change
    in the deferred backlog, and the effective connection cap (lowest seen and last seen,
    with the time of the last)."""

    delivered: int = 0
    retried: int = 0
    deferred: int = 0
    failed: int = 0
    connect_retried: int = 0
    replies_421: int = 0
    backlog_delta: int = 0
    cap_min: int | None = None
    cap_last: int | None = None
    cap_last_ts: float = -math.inf

    def cap(self, value: int, ts: float) -> None:
        self.cap_min = value if self.cap_min is None else min(self.cap_min, value)
        if ts >= self.cap_last_ts:
            self.cap_last, self.cap_last_ts = value, ts

    def merge(self, other: Bucket) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.deferred += other.deferred
        self.failed += other.failed
        self.connect_retried += other.connect_retried
        self.replies_421 += other.replies_421
        self.backlog_delta += other.backlog_delta
        if other.cap_min is not None:
            self.cap_min = other.cap_min if self.cap_min is None else min(self.cap_min, other.cap_min)
        if other.cap_last is not None and other.cap_last_ts >= self.cap_last_ts:
            self.cap_last, self.cap_last_ts = other.cap_last, other.cap_last_ts


# Bucket widths in seconds; each is a multiple of the one before, so buckets merge exactly.
BUCKET_WIDTHS: tuple[float, ...] = (
    0.001, 0.002, 0.01, 0.02, 0.1, 0.2, 1.0, 2.0, 10.0, 20.0, 60.0, 120.0, 600.0, 1200.0, 3600.0, 7200.0,
    21600.0, 43200.0, 86400.0, 172800.0, 604800.0,
)
_WIDTHS = BUCKET_WIDTHS


class Timeline:
    """Per-destination :class:`Bucket` series over time, never more than ``max_buckets``
    between the earliest and the latest bucket: when the span grows past it, the width
    steps up (1 ms ... 1 week) and neighbouring buckets merge."""

    MAX_BUCKETS = 480

    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        self.max_buckets = max_buckets
        self._level = 0
        self.width = _WIDTHS[0]
        self.series: dict[str, dict[int, Bucket]] = {}
        self.lo: int | None = None
        self.hi: int | None = None

    def at(self, destination: str, ts: float) -> Bucket:
        idx = math.floor(ts / self.width)
        if self.lo is None or self.hi is None:
            self.lo = self.hi = idx
        else:
            lo, hi = min(self.lo, idx), max(self.hi, idx)
            while hi - lo >= self.max_buckets and self._level + 1 < len(_WIDTHS):
                self._coarsen()
                idx = math.floor(ts / self.width)
                assert self.lo is not None and self.hi is not None
                lo, hi = min(self.lo, idx), max(self.hi, idx)
            self.lo, self.hi = lo, hi
        series = self.series.setdefault(destination, {})
        bucket = series.get(idx)
        if bucket is None:
            bucket = series[idx] = Bucket()
        return bucket

    def _coarsen(self) -> None:
        self._level += 1
        ratio = round(_WIDTHS[self._level] / self.width)
        self.width = _WIDTHS[self._level]
        for name, series in self.series.items():
            merged: dict[int, Bucket] = {}
            for idx, bucket in series.items():
                target = merged.get(idx // ratio)
                if target is None:
                    merged[idx // ratio] = bucket
                else:
                    target.merge(bucket)
            self.series[name] = merged
        assert self.lo is not None and self.hi is not None
        self.lo, self.hi = self.lo // ratio, self.hi // ratio

    def span(self) -> range:
        """Every bucket index from the first to the last, gaps included."""
        if self.lo is None or self.hi is None:
            return range(0)
        return range(self.lo, self.hi + 1)


class _Rcpt:
    __slots__ = ("categories", "deferred_at", "delivered_ts", "destination", "first_ts", "status")

    def __init__(self, first_ts: float | None, destination: str) -> None:
        self.first_ts = first_ts
        self.destination = destination
        self.status = "pending"
        self.delivered_ts: float | None = None
        self.categories: set[str] = set()
        self.deferred_at: str | None = None  # the destination whose backlog holds it


_MsgKey = tuple[str, str] | None


def _message_key(r: Record) -> _MsgKey:
    """Which message a record is about: its Message-ID, else its send (``send_id``)."""
    if r.message_id is not None:
        return ("message_id", r.message_id)
    if r.send_id is not None:
        return ("send_id", r.send_id)
    return None


class _Msg:
    __slots__ = ("destination", "rcpts", "retry_attempts", "throttled_attempts")

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self.rcpts: dict[str, _Rcpt] = {}
        self.retry_attempts: set[int] = set()
        self.throttled_attempts: set[int] = set()


@dataclass(slots=True)
class Summary:
    """The result of :func:`summarize`. ``stats`` is what reading met (skipped lines);
    ``filtered`` counts records left out by ``since``/``until`` (or for lack of a
    timestamp when a bound was given)."""

    destinations: dict[str, DestinationStats]
    categories: dict[tuple[str, str], CategoryStats]
    total: DestinationStats
    timeline: Timeline
    stats: ReadStats
    since: float | None = None
    until: float | None = None
    filtered: int = 0
    events: dict[str, int] = field(default_factory=dict)
    domains: dict[str, DomainStats] = field(default_factory=dict)
    """Per recipient domain, for logs with ``route_resolved`` events (a Router's); empty otherwise."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": ev.SCHEMA_VERSION,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "input": {**self.stats.as_dict(), "filtered_out": self.filtered},
            "events": dict(sorted(self.events.items())),
            "destinations": [d.as_dict() for _, d in sorted(self.destinations.items())],
            "total": {k: v for k, v in self.total.as_dict().items() if k != "destination"},
            "categories": [c.as_dict() for _, c in sorted(self.categories.items())],
            **({"domains": [d.as_dict() for _, d in sorted(self.domains.items())]} if self.domains else {}),
        }


def _domain(address: str) -> str:
    """An address's domain as the router names it: lower case, IDNA-encoded."""
    name = address.rpartition("@")[2].lower().rstrip(".")
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Summarizer:
    def __init__(self, stats: ReadStats, since: float | None, until: float | None) -> None:
        self.summary = Summary({}, {}, DestinationStats("*"), Timeline(), stats, since, until)
        self.msgs: dict[_MsgKey, _Msg] = {}

    # -- helpers -------------------------------------------------------------------------

    def dest(self, name: str) -> DestinationStats:
        found = self.summary.destinations.get(name)
        if found is None:
            found = self.summary.destinations[name] = DestinationStats(name)
        return found

    def category(self, destination: str, name: str) -> CategoryStats:
        key = (destination, name)
        found = self.summary.categories.get(key)
        if found is None:
            found = self.summary.categories[key] = CategoryStats(destination, name)
        return found

    def msg(self, r: Record) -> _Msg:
        key = _message_key(r)
        found = self.msgs.get(key)
        if found is None:
            found = self.msgs[key] = _Msg(r.destination)
        else:
            found.destination = r.destination
        return found

    @staticmethod
    def rcpt(m: _Msg, address: str, ts: float | None) -> _Rcpt:
        found = m.rcpts.get(address)
        if found is None:
            found = m.rcpts[address] = _Rcpt(ts, m.destination)
        else:
            found.destination = m.destination
            if found.first_ts is None:
                found.first_ts = ts
        return found

    def bucket(self, destination: str, ts: float | None) -> Bucket | None:
        return None if ts is None else self.summary.timeline.at(destination, ts)

    def cap(self, d: DestinationStats, value: object, ts: float | None) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            return
        d.cap_last = value
        d.cap_min = value if d.cap_min is None else min(d.cap_min, value)
        b = self.bucket(d.destination, ts)
        if b is not None and ts is not None:
            b.cap(value, ts)

    def throttled(self, m: _Msg, r: Record, d: DestinationStats, b: Bucket | None) -> None:
        """Count a 421 once per send attempt: the events that repeat it for several
        recipients (a retry group, or one deferral each) share the attempt number."""
        if r.get(K.CODE) != 421:
            return
        attempt = r.get(K.ATTEMPT)
        if isinstance(attempt, int):
            if attempt in m.throttled_attempts:
                return
            m.throttled_attempts.add(attempt)
        d.replies_421 += 1
        self.summary.total.replies_421 += 1
        if b is not None:
            b.replies_421 += 1

    def leave_backlog(self, rc: _Rcpt, ts: float | None) -> None:
        if rc.status == "deferred" and rc.deferred_at is not None:
            b = self.bucket(rc.deferred_at, ts)
            if b is not None:
                b.backlog_delta -= 1
            rc.deferred_at = None

    # -- events --------------------------------------------------------------------------

    def feed(self, r: Record) -> None:
        s = self.summary
        ts = r.ts
        if (s.since is not None or s.until is not None) and (
            ts is None or (s.since is not None and ts < s.since) or (s.until is not None and ts > s.until)
        ):
            s.filtered += 1
            return
        s.events[r.event] = s.events.get(r.event, 0) + 1
        d = self.dest(r.destination)
        if ts is not None:
            for target in (d, s.total):
                target.first_ts = ts if target.first_ts is None else min(target.first_ts, ts)
                target.last_ts = ts if target.last_ts is None else max(target.last_ts, ts)
        event = r.event
        if event == ev.CAP_LOWERED or event == ev.CAP_RAISED:
            self.cap_changed(r, d, ts)
            return
        if event == ev.RATE_LOWERED or event == ev.RATE_RAISED:
            self.pace_changed(r, d)
            return
        if event == ev.ROUTE_RESOLVED:
            self.routed(r)
            return
        if event not in _HANDLED:
            return
        m = self.msg(r)
        b = self.bucket(d.destination, ts)
        if event == ev.MESSAGE_DELIVERED:
            self.delivered(r, m, d, b, ts)
        elif event == ev.RETRY_SCHEDULED:
            self.retry(r, m, d, b, ts)
        elif event == ev.RECIPIENT_DEFERRED or event == ev.RECIPIENT_FAILED:
            self.final(r, m, d, b, ts, "deferred" if event == ev.RECIPIENT_DEFERRED else "failed")
        elif event == ev.CONNECTION_LOST:
            d.connections_lost += 1
            s.total.connections_lost += 1
            if r.get(K.POSSIBLE_DUPLICATE) is True:
                d.possible_duplicates += 1
                s.total.possible_duplicates += 1
            for address in r.recipients:
                self.rcpt(m, address, ts)
        elif event == ev.SEND_COMPLETED:
            self.completed(r, m, ts)

    def domain(self, name: str) -> DomainStats:
        found = self.summary.domains.get(name)
        if found is None:
            found = self.summary.domains[name] = DomainStats(name)
        return found

    def routed(self, r: Record) -> None:
        name = r.get(K.DOMAIN)
        if not isinstance(name, str):
            return
        dom = self.domain(name)
        dom.resolved += 1
        if r.get(K.FROM_CACHE) is True:
            dom.from_cache += 1
        route, provider = r.get(K.ROUTE), r.get(K.LIMIT_KEY)
        if isinstance(route, str):
            dom.routes.add(route)
        if isinstance(provider, str):
            dom.providers.add(provider)

    def cap_changed(self, r: Record, d: DestinationStats, ts: float | None) -> None:
        lowered = r.event == ev.CAP_LOWERED
        for target in (d, self.summary.total):
            if lowered:
                target.cap_lowered += 1
            else:
                target.cap_raised += 1
        configured = r.get(K.CONFIGURED_CAP)
        if isinstance(configured, int):
            d.cap_configured = configured
        previous = r.get(K.PREVIOUS_CAP)
        if d.cap_last is None and d.first_ts is not None:
            # The first news of the cap is a change: it stood at previous_cap until then.
            self.cap(d, previous, d.first_ts)
        self.cap(d, r.get(K.CONNECTIONS_CAP), ts)

    def pace_changed(self, r: Record, d: DestinationStats) -> None:
        """A ``rate_lowered``/``rate_raised``: count it, and follow the pace (records
        come in time order, so the last one read is the pace now)."""
        lowered = r.event == ev.RATE_LOWERED
        for target in (d, self.summary.total):
            if lowered:
                target.pace_lowered += 1
            else:
                target.pace_raised += 1
        configured, new = r.get(K.CONFIGURED), r.get(K.MESSAGES_PER_MINUTE)
        if _number(configured):
            d.pace_configured = float(configured)
        if _number(new):
            d.pace_last = float(new)
            d.pace_min = d.pace_last if d.pace_min is None else min(d.pace_min, d.pace_last)

    def delivered(self, r: Record, m: _Msg, d: DestinationStats, b: Bucket | None, ts: float | None) -> None:
        assumed = r.get(K.ASSUMED) is True
        for address in r.recipients:
            rc = self.rcpt(m, address, ts)
            self.leave_backlog(rc, ts)
            rc.status = "delivered"
            rc.delivered_ts = ts
            rc.categories.add(ACCEPTED)
            self.category(d.destination, ACCEPTED).replies += 1
            if assumed:
                d.assumed_delivered += 1
                self.summary.total.assumed_delivered += 1
        if b is not None:
            b.delivered += len(r.recipients)
        self.cap(d, r.get(K.CONNECTIONS_CAP), ts)

    def retry(self, r: Record, m: _Msg, d: DestinationStats, b: Bucket | None, ts: float | None) -> None:
        addresses = r.recipients
        category = r.get(K.CATEGORY)
        for address in addresses:
            rc = self.rcpt(m, address, ts)
            if isinstance(category, str):
                rc.categories.add(category)
        if isinstance(category, str):
            self.category(d.destination, category).replies += 1
        attempt = r.get(K.ATTEMPT)
        # One wait per send attempt, however many recipient groups it names.
        if not isinstance(attempt, int) or attempt not in m.retry_attempts:
            if isinstance(attempt, int):
                m.retry_attempts.add(attempt)
            delay = r.get(K.DELAY_S)
            delay_s = float(delay) if isinstance(delay, (int, float)) else 0.0
            for target in (d, self.summary.total):
                target.retries += 1
                target.backoff_s += delay_s
        d.recipient_retries += len(addresses)
        self.summary.total.recipient_retries += len(addresses)
        if b is not None:
            b.retried += len(addresses)
            if not addresses:
                b.connect_retried += 1  # connect() or login(): a destination tried, no message
        self.throttled(m, r, d, b)
        self.cap(d, r.get(K.CONNECTIONS_CAP), ts)

    def final(self, r: Record, m: _Msg, d: DestinationStats, b: Bucket | None, ts: float | None,
              status: str) -> None:
        category = r.get(K.CATEGORY)
        if isinstance(category, str):
            self.category(d.destination, category).replies += 1
        for address in r.recipients:
            rc = self.rcpt(m, address, ts)
            if isinstance(category, str):
                rc.categories.add(category)
            if status == "deferred":
                if rc.status != "deferred" and b is not None:
                    b.backlog_delta += 1
                rc.deferred_at = d.destination
            else:
                self.leave_backlog(rc, ts)
            rc.status = status
        if b is not None:
            if status == "deferred":
                b.deferred += len(r.recipients)
            else:
                b.failed += len(r.recipients)
        self.throttled(m, r, d, b)

    def completed(self, r: Record, m: _Msg, ts: float | None) -> None:
        # No event marks the start of a send, but its end says how long it took: a recipient
        # delivered at the first attempt has waited that long, not zero.
        duration = r.get(K.DURATION_S)
        if ts is not None and isinstance(duration, (int, float)) and not isinstance(duration, bool):
            started = ts - float(duration)
            for rc in m.rcpts.values():
                if rc.first_ts is None or started < rc.first_ts:
                    rc.first_ts = started
        # The next send of this message (a later process) numbers its attempts from 1 again.
        m.retry_attempts.clear()
        m.throttled_attempts.clear()
        if all(rc.status in ("delivered", "failed") for rc in m.rcpts.values()):
            self.fold(_message_key(r), m)

    def fold(self, key: _MsgKey, m: _Msg) -> None:
        """Count a message and its recipients, and forget them."""
        self.msgs.pop(key, None)
        if not m.rcpts:
            return
        worst = "delivered"
        met: set[str] = set()
        for address, rc in m.rcpts.items():
            d = self.dest(rc.destination)
            if rc.delivered_ts is not None and rc.first_ts is not None:
                waited = max(0.0, rc.delivered_ts - rc.first_ts)
                d.delivery_time.add(waited)
                self.summary.total.delivery_time.add(waited)
            d.recipients[rc.status] += 1
            self.summary.total.recipients[rc.status] += 1
            if self.summary.domains and "@" in address:  # a routed log: by recipient domain too
                self.domain(_domain(address)).recipients[rc.status] += 1
            if _RANK[rc.status] > _RANK[worst]:
                worst = rc.status
            met |= rc.categories
            for name in rc.categories:
                self.category(d.destination, name).recipients[rc.status] += 1
        d = self.dest(m.destination)
        d.messages[worst] += 1
        self.summary.total.messages[worst] += 1
        for name in met:
            self.category(d.destination, name).messages[worst] += 1

    def finish(self) -> Summary:
        for key, m in list(self.msgs.items()):
            self.fold(key, m)
        return self.summary


def summarize(records: Iterable[Record], *, stats: ReadStats | None = None, since: float | None = None,
              until: float | None = None) -> Summary:
    """Fold ``records`` into a :class:`Summary` in one pass.

    ``since``/``until`` (epoch seconds, inclusive) keep records whose ``timestamp`` falls
    between them; with either given, records without a timestamp are left out. ``stats`` is
    the :class:`ReadStats` the records were read with, carried into the summary.
    """
    folder = _Summarizer(stats if stats is not None else ReadStats(), since, until)
    for record in records:
        folder.feed(record)
    return folder.finish()


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
