"""How one record reads to a person: a label, a colour and a sentence.

Shared by ``tail`` and ``trace``. The colour follows the decision: green delivered, yellow
retry, magenta deferred, red failed, orange/cyan for the cap going down/up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from .. import events as ev
from .parse import Record

__all__ = ["LABELS", "STYLES", "clock", "describe", "line"]

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
}


def clock(ts: float | None, *, date: bool = False) -> str:
    """``HH:MM:SS.mmm`` (UTC), with the date in front when asked."""
    if ts is None:
        return "?" * (23 if date else 12)
    moment = datetime.fromtimestamp(ts, UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")
    return text[:-3]


def _reply(f: dict[str, Any]) -> str:
    """The server's words, or the failure that stood for them."""
    parts = []
    if f.get("phase"):
        parts.append(str(f["phase"]))
    if f.get("failure"):
        parts.append(str(f["failure"]))
    if f.get("code") is not None:
        parts.append(str(f["code"]))
    text = f.get("text")
    if isinstance(text, str) and text:
        enhanced = f.get("enhanced")
        if isinstance(enhanced, str) and text.startswith(enhanced):
            text = text[len(enhanced):].lstrip()
        if f.get("enhanced"):
            parts.append(str(f["enhanced"]))
        parts.append(text)
    elif f.get("enhanced"):
        parts.append(str(f["enhanced"]))
    return " ".join(parts)


def _verdict(f: dict[str, Any]) -> str:
    category, action = f.get("category"), f.get("action")
    if category and action:
        return f"{category}/{action}"
    return str(category or action or "")


def describe(r: Record) -> str:
    """The decision in one sentence, from the record's documented keys."""
    f = r.fields
    e = r.event
    if e == ev.MESSAGE_DELIVERED:
        said = "assumed delivered (reply lost, at-most-once)" if f.get("assumed") else "delivered"
        reply = _reply(f)
        return f"{said}{': ' + reply if reply else ''}"
    if e == ev.RETRY_SCHEDULED:
        return f"retry in {f.get('delay_s')} s after {_reply(f)} [{_verdict(f)}]"
    if e == ev.RECIPIENT_DEFERRED:
        return f"deferred until {_when(f.get('next_attempt_at'))} after {_reply(f)} [{_verdict(f)}]"
    if e == ev.RECIPIENT_FAILED:
        why = " (expired)" if f.get("expired") else ""
        return f"failed{why} after {_reply(f)} [{_verdict(f)}]"
    if e == ev.CONNECTION_LOST:
        dup = "; possible duplicate" if f.get("possible_duplicate") else ""
        return f"connection lost: {_reply(f)}{dup}"
    if e in (ev.CAP_LOWERED, ev.CAP_RAISED):
        cause = _reply(f)
        return (f"connection cap {f.get('previous_cap')} -> {f.get('connections_cap')} "
                f"(configured {f.get('configured_cap')}, {f.get('connections_active')} open)"
                + (f" after {cause}" if cause else ""))
    if e in (ev.RATE_LOWERED, ev.RATE_RAISED):
        cause = _reply(f)
        return (f"pace {f.get('previous')} -> {f.get('messages_per_minute')} messages/minute "
                f"(configured {f.get('configured')})" + (f" after {cause}" if cause else ""))
    if e == ev.SEND_COMPLETED:
        return (f"send completed: {f.get('delivered')} delivered, {f.get('deferred')} deferred, "
                f"{f.get('failed')} failed in {f.get('attempts')} attempt(s), {f.get('duration_s')} s")
    if e == ev.QUEUED:
        return f"queued as {f.get('queue_id')}, next attempt {_when(f.get('next_attempt_at'))}"
    if e == ev.EXPIRED:
        return f"expired from the queue ({f.get('queue_id')}), past {_when(f.get('expires_at'))}"
    if e == ev.WRITEBACK_FAILED:
        return (f"sent, but the outcome was not written back to the queue ({f.get('queue_id')}): "
                f"{f.get('error')}; they are marked as possible duplicates for the next attempt")
    if e == ev.LEASE_LOST:
        return (f"{f.get('leases')} connection slot lease(s) ran out before renewal "
                f"(the process stalled over {f.get('lease_s')} s)")
    if e == ev.BACKEND_LOST:
        return f"backend {f.get('backend')} unreachable, could not {f.get('doing')}: {f.get('error')}"
    return e


def _when(at: object) -> str:
    return clock(float(at), date=True) if isinstance(at, (int, float)) and not isinstance(at, bool) else "?"


def line(r: Record, *, date: bool = False) -> Text:
    """One record as one coloured line: time, label, destination, message, recipients,
    attempt, and what was decided."""
    style = STYLES.get(r.event, "")
    text = Text()
    text.append(clock(r.ts, date=date), style="dim")
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
    attempt = r.get("attempt")
    if attempt is not None:
        text.append(f" #{attempt}", style="dim")
    text.append("  ")
    text.append(describe(r), style=style)
    return text
