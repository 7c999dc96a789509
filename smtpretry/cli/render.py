"""How a decision reads to a person: a label, a colour and a sentence, for every event.

The one renderer of events for people, used by ``logs tail``, ``logs trace`` and ``demo``
(which shows each decision as it is taken). The sentence says what was decided from the
event's documented keys; the colour follows the decision: green delivered, yellow retry,
magenta deferred, red failed, orange/cyan for the cap going down/up.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from .. import events as ev
from .._time import iso
from ..events import K
from ..logs.parse import Record

__all__ = ["LABELS", "STYLES", "describe", "line"]

LABELS = {
    ev.MESSAGE_DELIVERED: "DELIVERED",
    ev.RETRY_SCHEDULED: "RETRY",
    ev.RECIPIENT_DEFERRED: "DEFERRED",
    ev.RECIPIENT_FAILED: "FAILED",
    ev.CONNECTION_LOST: "LOST",
    ev.CAP_LOWERED: "CAP DOWN",
    ev.CAP_RAISED: "CAP UP",
    ev.RATE_LOWERED: "RATE DOWN",
    ev.RATE_RAISED: "RATE UP",
    ev.SEND_COMPLETED: "DONE",
    ev.QUEUED: "QUEUED",
    ev.EXPIRED: "EXPIRED",
    ev.WRITEBACK_FAILED: "WRITEBACK",
    ev.LEASE_LOST: "LEASE",
    ev.BACKEND_LOST: "BACKEND",
    ev.ROUTE_RESOLVED: "ROUTE",
    ev.MX_SKIPPED: "MX SKIP",
    ev.DESTINATION_SUSPENDED: "SUSPENDED",
    ev.DESTINATION_RESUMED: "RESUMED",
}

STYLES = {
    ev.MESSAGE_DELIVERED: "green",
    ev.RETRY_SCHEDULED: "yellow",
    ev.RECIPIENT_DEFERRED: "magenta",
    ev.RECIPIENT_FAILED: "bold red",
    ev.CONNECTION_LOST: "yellow",
    ev.CAP_LOWERED: "dark_orange",
    ev.CAP_RAISED: "cyan",
    ev.RATE_LOWERED: "dark_orange",
    ev.RATE_RAISED: "cyan",
    ev.SEND_COMPLETED: "blue",
    ev.QUEUED: "magenta",
    ev.EXPIRED: "bold red",
    ev.WRITEBACK_FAILED: "bold red",
    ev.LEASE_LOST: "bold yellow",
    ev.BACKEND_LOST: "bold yellow",
    ev.ROUTE_RESOLVED: "dim",
    ev.MX_SKIPPED: "yellow",
    ev.DESTINATION_SUSPENDED: "bold magenta",
    ev.DESTINATION_RESUMED: "cyan",
}


def _reply(f: dict[str, Any]) -> str:
    """The server's words, or the failure that stood for them."""
    parts = []
    if f.get(K.PHASE):
        parts.append(str(f[K.PHASE]))
    if f.get(K.FAILURE):
        parts.append(str(f[K.FAILURE]))
    if f.get(K.CODE) is not None:
        parts.append(str(f[K.CODE]))
    text = f.get(K.TEXT)
    if isinstance(text, str) and text:
        enhanced = f.get(K.ENHANCED)
        if isinstance(enhanced, str) and text.startswith(enhanced):
            text = text[len(enhanced):].lstrip()
        if f.get(K.ENHANCED):
            parts.append(str(f[K.ENHANCED]))
        parts.append(text)
    elif f.get(K.ENHANCED):
        parts.append(str(f[K.ENHANCED]))
    return " ".join(parts)


def _verdict(f: dict[str, Any]) -> str:
    category, action = f.get(K.CATEGORY), f.get(K.ACTION)
    if category and action:
        return f"{category}/{action}"
    return str(category or action or "")


def describe(r: Record) -> str:
    """The decision in one sentence, from the record's documented keys."""
    f = r.fields
    e = r.event
    if e == ev.MESSAGE_DELIVERED:
        said = "assumed delivered (reply lost, at-most-once)" if f.get(K.ASSUMED) else "delivered"
        reply = _reply(f)
        return f"{said}{': ' + reply if reply else ''}"
    if e == ev.RETRY_SCHEDULED:
        return f"retry in {f.get(K.DELAY_S)} s after {_reply(f)} [{_verdict(f)}]"
    if e == ev.RECIPIENT_DEFERRED:
        return f"deferred until {_when(f.get(K.NEXT_ATTEMPT_AT))} after {_reply(f)} [{_verdict(f)}]"
    if e == ev.RECIPIENT_FAILED:
        why = " (expired)" if f.get(K.EXPIRED) else ""
        return f"failed{why} after {_reply(f)} [{_verdict(f)}]"
    if e == ev.CONNECTION_LOST:
        dup = "; possible duplicate" if f.get(K.POSSIBLE_DUPLICATE) else ""
        return f"connection lost: {_reply(f)}{dup}"
    if e == ev.CAP_LOWERED:
        cause = _reply(f)
        cap, active = f.get(K.CONNECTIONS_CAP), f.get(K.CONNECTIONS_ACTIVE)
        # Connections already open stay open; only new ones wait, so "7 open" under a cap of 4
        # is the cap doing its work, not a breach.
        still = (f"; {active} still open, no new one until fewer than {cap}"
                 if isinstance(active, int) and isinstance(cap, int) and active >= cap else "")
        return (f"connection cap lowered {f.get(K.PREVIOUS_CAP)} -> {cap} "
                f"(configured {f.get(K.CONFIGURED_CAP)})" + (f" after {cause}" if cause else "") + still)
    if e == ev.CAP_RAISED:
        return (f"connection cap raised {f.get(K.PREVIOUS_CAP)} -> {f.get(K.CONNECTIONS_CAP)} "
                f"(configured {f.get(K.CONFIGURED_CAP)}) after successes in a row")
    if e in (ev.RATE_LOWERED, ev.RATE_RAISED):
        cause = _reply(f)
        return (f"pace {_num(f.get(K.PREVIOUS))} -> {_num(f.get(K.MESSAGES_PER_MINUTE))} messages/minute "
                f"(configured {_num(f.get(K.CONFIGURED))})" + (f" after {cause}" if cause else ""))
    if e == ev.SEND_COMPLETED:
        return (f"send completed: {f.get(K.DELIVERED)} delivered, {f.get(K.DEFERRED)} deferred, "
                f"{f.get(K.FAILED)} failed in {f.get(K.ATTEMPTS)} attempt(s), {f.get(K.DURATION_S)} s")
    if e == ev.QUEUED:
        return f"queued as {f.get(K.QUEUE_ID)}, next attempt {_when(f.get(K.NEXT_ATTEMPT_AT))}"
    if e == ev.EXPIRED:
        return f"expired from the queue ({f.get(K.QUEUE_ID)}), past {_when(f.get(K.EXPIRES_AT))}"
    if e == ev.WRITEBACK_FAILED:
        return (f"sent, but the outcome was not written back to the queue ({f.get(K.QUEUE_ID)}): "
                f"{f.get(K.ERROR)}; they are marked as possible duplicates for the next attempt")
    if e == ev.LEASE_LOST:
        return (f"{f.get(K.LEASES)} connection slot lease(s) ran out before renewal "
                f"(the process stalled over {f.get(K.LEASE_S)} s)")
    if e == ev.BACKEND_LOST:
        return f"backend {f.get(K.BACKEND)} unreachable, could not {f.get(K.DOING)}: {f.get(K.ERROR)}"
    if e == ev.ROUTE_RESOLVED:
        hosts = f.get(K.MX_HOSTS)
        via = f"MX {', '.join(map(str, hosts))}" if isinstance(hosts, list) and hosts else "no MX host"
        cached = " (cached)" if f.get(K.FROM_CACHE) else ""
        return (f"{f.get(K.DOMAIN)} by route {f.get(K.ROUTE)}: {via}{cached}, "
                f"limit {f.get(K.LIMIT_KEY)}")
    if e == ev.MX_SKIPPED:
        return f"skipped MX {f.get(K.HOST)} ({f.get(K.ADDRESS)}): {f.get(K.REASON)}, {_reply(f)}"
    if e == ev.DESTINATION_SUSPENDED:
        note = f" ({f.get(K.REASON)})" if f.get(K.REASON) else ""
        return f"suspended until {_when(f.get(K.SUSPENDED_UNTIL))}{note}: its recipients are deferred unsent"
    if e == ev.DESTINATION_RESUMED:
        return f"suspension ended (was until {_when(f.get(K.SUSPENDED_UNTIL))}): sending again"
    return e


def _num(value: object) -> str:
    """A number as people write it: 60, not 60.0."""
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


def _when(at: object) -> str:
    return iso(float(at)) if isinstance(at, (int, float)) and not isinstance(at, bool) else "?"


def _stamp(ts: float | None) -> str:
    """The record's time, ISO 8601 in UTC to the millisecond, as every time for people."""
    return iso(ts, ms=True) if ts is not None else "?" * 24


def line(r: Record, *, lead: str | None = None) -> Text:
    """One record as one coloured line: time (ISO 8601, UTC), label, destination, message,
    recipients, attempt, and what was decided. ``lead`` stands in front instead of the
    record's time (the demo shows the seconds since it began)."""
    style = STYLES.get(r.event, "")
    text = Text()
    text.append(_stamp(r.ts) if lead is None else lead, style="dim")
    text.append(" ")
    text.append(f"{LABELS.get(r.event, r.event):<9}", style=style)
    text.append(" ")
    text.append(r.destination, style="bold")
    if r.message_id:
        text.append(f" {r.message_id}")
    rcpts = r.recipients
    if rcpts:
        shown = ", ".join(rcpts[:3]) + (f" +{len(rcpts) - 3}" if len(rcpts) > 3 else "")
        text.append(f" {shown}", style="italic")
    attempt = r.get(K.ATTEMPT)
    if attempt is not None:
        text.append(f" #{attempt}", style="dim")
    text.append("  ")
    text.append(describe(r), style=style)
    return text
