"""``smtpretry queue ...``: run, inspect and edit the deferred queue.

A thin click group over :mod:`smtpretry.queue`; the main CLI registers it with
``main.add_command(queue_group)``. Every command finds its queue as ``send`` does
(``_resolve.py``): ``--queue URL``, else ``SMTPRETRY_QUEUE``, else the ``[queue] url``
of ``--config``/``SMTPRETRY_CONFIG``, else the user's state directory. The commands
that read or edit the queue never create one: a queue that does not exist is ``no
queue at PATH``.

The commands an operator of Postfix or KumoMTA knows (``mailq``, ``postsuper``,
``qshape``, ``kcli suspend``):

- ``list``, ``show``, ``retry``, ``delete``, ``hold``, ``release`` and ``purge`` act on
  the entries a selection names: entry IDs (a unique prefix is enough; an ambiguous one
  is an error), ``-`` for IDs on standard input (one per line, or the JSON lines of
  ``queue list --json``), ``--all``, and filters (``--destination host:port`` as the log
  writes it, or a host for every port; ``--domain``, ``--older-than``, ``--recipient``,
  ``--sender``, ``--held``), every one given having to hold;
- ``hold``/``release``: a held entry is never sent, not even by ``retry``, until released;
- ``shape``: entries and recipients per destination (``--by domain``: recipient domain)
  by age, as ``qshape``;
- ``suspend DESTINATION --for DURATION``/``resume``: the suspension is kept in the
  queue's store, so every process (every worker, with Redis) defers that destination's
  recipients at once, without connecting, until it ends; ``suspensions`` lists them.

Each prints one summary line. ``--json`` writes JSON lines, one object per entry (or
row), for ``jq``; the summary then goes to stderr. Exit status: 0 when something was
done or shown; 1 when the selection matched nothing (``smtpretry: no entry matches ...``);
2 for bad input (an unknown ID, an ambiguous prefix, a bad duration or destination) and
for a corrupt or locked queue or a bad URL, one line ``smtpretry: error: ...``, never a
traceback. Message bodies are never printed.

``queue run`` exits 1 when a recipient failed (or expired), 0 otherwise (deferred
again included), and prints its totals at the end, on Ctrl-C (exit 130) and on
SIGTERM (exit 143).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .._time import iso
from ..config import parse_duration
from ..errors import ConfigError, QueueError, SMTPRetryError
from ..mailer import Mailer
from ..queue.base import (
    Destination,
    Queue,
    QueueEntry,
    QueueStats,
    Selection,
    Suspension,
    parse_destination,
)
from ..queue.shape import shape
from ..router import Router
from ..runner import QueueRunner, QueueRunStats, Resender
from ._errors import Group, fail, nothing
from ._logfile import log_options, open_log
from ._resolve import Resolution, Source, config_option, queue_option, resolve
from ._table import show_table

__all__ = ["queue_group"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _missing(res: Resolution) -> str | None:
    """``no queue at PATH (...)`` when the queue is an SQLite file that does not exist."""
    path = res.queue_path
    if path is None or path.is_file():
        return None
    why = "the default queue" if res.queue_source is Source.DEFAULT else f"from {res.queue_origin}"
    return f"no queue at {path} ({why})"


def _run(where: dict[str, Any], action: Callable[[Queue], Awaitable[T]]) -> T:
    """Open the existing queue ``where`` names (the ``--config``/``--queue`` values of
    :func:`_queue_options`, resolved as every command resolves them: ``_resolve.py``),
    never creating one; run ``action`` on it, close it; errors become one line."""
    res = resolve(where.get("config_path"), where.get("queue_url"))
    if (missing := _missing(res)) is not None:
        fail(missing)

    async def main() -> T:
        queue = res.open_queue(create=False)
        try:
            return await action(queue)
        finally:
            await queue.close()

    try:
        return asyncio.run(main())
    except SMTPRetryError as exc:
        fail(str(exc))


def _queue_options(f: F) -> F:
    """Which configuration and queue: ``--config``/``--queue``, as every command (``_resolve.py``)."""
    return config_option(queue_option(f))


def _json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="JSON lines, one object per entry (or row), for jq.")(f)


# -- selection -------------------------------------------------------------------------------


def _selection_options(f: F) -> F:
    """The entry IDs and filters every selecting command takes, the same way."""
    for option in reversed((
        click.argument("ids", nargs=-1, metavar="[ID...|-]"),
        click.option("--all", "all_", is_flag=True, help="Every entry (the filters still apply)."),
        click.option("--destination", metavar="HOST[:PORT]",
                     help="Entries for this destination: host:port as the log writes it, a host for "
                          "every port, or a limit key such as mx:.google.com."),
        click.option("--domain", metavar="DOMAIN", help="Entries with a pending recipient at DOMAIN."),
        click.option("--older-than", metavar="DURATION",
                     help="Entries first deferred longer ago than DURATION (30m, 2h, 5d)."),
        click.option("--recipient", metavar="ADDR", help="Entries with this pending recipient."),
        click.option("--sender", metavar="ADDR", help="Entries from this envelope sender."),
        click.option("--held", is_flag=True, help="Only entries on hold."),
    )):
        f = option(f)
    return f


def _stdin_ids() -> tuple[str, ...]:
    """IDs from standard input: one or more per line, or JSON lines with an ``id``."""
    ids: list[str] = []
    for number, text in enumerate(sys.stdin, 1):
        text = text.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError:
                fail(f"standard input, line {number}: not JSON, and not entry IDs")
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                fail(f"standard input, line {number}: a JSON object without an \"id\"")
            ids.append(obj["id"])
        else:
            ids.extend(text.split())
    return tuple(ids)


def _duration(value: str, option: str) -> float:
    try:
        seconds = parse_duration(value.strip(), option)
    except ConfigError:
        fail(f"{option}: expected a duration such as 30m, 2h or 5d, got {value!r}")
    if seconds <= 0:
        fail(f"{option}: expected a duration > 0, got {value!r}")
    return seconds


def _destination(value: str, option: str) -> str:
    try:
        return parse_destination(value)
    except ValueError as exc:
        fail(f"{option}: {exc}")


@dataclasses.dataclass(frozen=True, slots=True)
class _Chosen:
    """A selection as the command line gave it, and how to name it in a message."""

    selection: Selection
    words: str
    given: bool


def _selection(
    ids: tuple[str, ...], all_: bool, destination: str | None, domain: str | None,
    older_than: str | None, recipient: str | None, sender: str | None, held: bool, *,
    now: float, extra: Sequence[str] = (),
) -> _Chosen:
    """The :class:`Selection` of the command line's IDs and filters."""
    words: list[str] = list(extra)
    if ids == ("-",):
        ids = _stdin_ids()
        if not ids:
            nothing("no entry IDs on standard input")
        words.append(f"{len(ids)} ID{'s' if len(ids) != 1 else ''} from standard input")
    elif "-" in ids:
        fail("give - (entry IDs on standard input) as the only ID")
    elif ids:
        words.append(" ".join(ids))
    if ids and all_:
        fail("give entry IDs or --all, not both")
    for flag, value in (("--destination", destination), ("--domain", domain), ("--older-than", older_than),
                        ("--recipient", recipient), ("--sender", sender)):
        if value is not None:
            if not value.strip():
                fail(f"{flag}: expected a value, got ''")
            words.append(f"{flag} {value}")
    if held:
        words.append("--held")
    selection = Selection(
        ids=ids,
        destination=_destination(destination, "--destination") if destination is not None else None,
        domain=domain.strip().lower() if domain is not None else None,
        recipient=recipient, sender=sender,
        created_before=now - _duration(older_than, "--older-than") if older_than is not None else None,
        held=True if held else None,
    )
    return _Chosen(selection, " ".join(words), bool(ids) or all_ or selection.filtered)


def _required(chosen: _Chosen, command: str) -> None:
    if not chosen.given:
        fail(f"queue {command}: give entry IDs, - (IDs on standard input), --all or a filter "
             "(--destination, --domain, --older-than, --recipient, --sender, --held)")


def _matched(where: dict[str, Any], chosen: _Chosen) -> list[QueueEntry]:
    """The entries selected; none is ``smtpretry: no entry matches ...`` and exit 1."""

    async def both(q: Queue) -> tuple[list[QueueEntry], int]:
        return await q.entries(selection=chosen.selection), (await q.stats(now=time.time())).entries

    found, held = _run(where, both)
    if not found:
        nothing(f"no entry matches {chosen.words or 'the selection'} (the queue holds {_n(held, 'entry')})")
    return found


def _n(count: int, word: str) -> str:
    """``1 entry``, ``3 entries``, ``1 recipient``, ``2 recipients``."""
    plural = word[:-1] + "ies" if word.endswith("y") else word + "s"
    return f"{count} {word if count == 1 else plural}"


def _recipients(entries: Sequence[QueueEntry]) -> int:
    return sum(len(e.recipients) for e in entries)


def _ids(entries: Sequence[QueueEntry]) -> Selection:
    return Selection(ids=tuple(e.id for e in entries))


# -- rendering -------------------------------------------------------------------------------


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _state(e: QueueEntry, now: float) -> str:
    if e.held:
        return "held"
    if e.lease_until > now:
        return "sending"
    return "due" if e.next_attempt_at <= now else "waiting"


def _entry_json(entry: QueueEntry) -> dict[str, Any]:
    out = dataclasses.asdict(entry)
    out.pop("data")
    out.pop("key")
    if entry.destination.route is None:  # a Mailer's entry reads as it always did
        for name in ("route", "domain", "provider"):
            out["destination"].pop(name)
    if entry.data is not None:
        out["size"] = len(entry.data)
    return out


def _grouped(entries: list[QueueEntry], by: str) -> dict[str, dict[str, Any]]:
    """Pending recipients per recipient domain or per provider, the next due first."""
    groups: dict[str, dict[str, Any]] = {}
    for e in entries:
        d = e.destination
        for r in e.recipients:
            if by == "domain":
                key = d.domain or r.address.rpartition("@")[2].lower() or "(none)"
            else:
                key = d.provider or (f"profile {d.profile}" if d.profile else d.key)
            g = groups.setdefault(key, {"entries": set(), "recipients": 0, "next_attempt_at": None})
            g["entries"].add(e.id)
            g["recipients"] += 1
            if g["next_attempt_at"] is None or r.next_attempt_at < g["next_attempt_at"]:
                g["next_attempt_at"] = r.next_attempt_at
    out = {k: {**g, "entries": len(g["entries"])} for k, g in groups.items()}
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["next_attempt_at"], kv[0])))


def _echo_json(value: object) -> None:
    """One JSON line."""
    click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _summary(line: str, *, as_json: bool) -> None:
    """The command's summary line: after a table on stdout; on stderr beside JSON lines."""
    click.echo(line, err=as_json)


def _console() -> Console:
    # Piped output is not folded to 80 columns: each entry stays one row, for grep.
    terminal = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if terminal else 400, force_terminal=None)


# -- commands --------------------------------------------------------------------------------


@click.group("queue", cls=Group)
def queue_group() -> None:
    """The deferred queue: recipients that could not be delivered yet."""


@queue_group.command("list")
@_selection_options
@_queue_options
@_json_option
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many entries (says how "
                                                           "many more matched).")
@click.option("--by", "group_by", type=click.Choice(["domain", "provider"]),
              help="Count pending recipients per recipient domain, or per provider (the limit key they "
                   "were deferred under; a relay's host:port or profile).")
def list_command(
    ids: tuple[str, ...], all_: bool, destination: str | None, domain: str | None, older_than: str | None,
    recipient: str | None, sender: str | None, held: bool, as_json: bool, limit: int | None,
    group_by: str | None, **where: Any,
) -> None:
    """List entries, the next due first: all of them, or those IDs and filters select.

    One row per entry: its ID, age, destination, pending recipients, the last reply and
    when it is due (or held, or being sent)."""
    now = time.time()
    chosen = _selection(ids, all_, destination, domain, older_than, recipient, sender, held, now=now)
    entries = _matched(where, chosen) if chosen.given else _run(where, lambda q: q.entries())
    if group_by is not None:
        groups = _grouped(entries, group_by)
        if as_json:
            for k, v in groups.items():
                _echo_json({group_by: k, **v})
            return
        show_table([group_by, "entries", "recipients", "next attempt"],
                   [[k, str(g["entries"]), str(g["recipients"]), iso(g["next_attempt_at"])]
                    for k, g in groups.items()], right=("entries", "recipients"))
        _summary(f"{_n(len(groups), group_by if group_by != 'domain' else 'domain')}, "
                 f"{_n(len(entries), 'entry')}, {_n(_recipients(entries), 'recipient')}", as_json=as_json)
        return
    if not entries:
        _summary("the queue is empty", as_json=as_json)
        return
    shown = entries[:limit] if limit is not None else entries
    if as_json:
        for e in shown:
            _echo_json(_entry_json(e))
    else:
        rows = []
        for e in shown:
            first = e.recipients[0]
            more = f" +{len(e.recipients) - 1}" if len(e.recipients) > 1 else ""
            rows.append([e.id, _age(now - e.created_at), e.destination.describe(), f"{first.address}{more}",
                         first.last_reply(), _state(e, now), iso(e.next_attempt_at)])
        show_table(["id", "age", "destination", "pending", "last reply", "state", "next attempt"], rows,
                   right=("age",))
    hidden = len(entries) - len(shown)
    summary = f"{_n(len(shown), 'entry')}, {_n(_recipients(shown), 'recipient')}"
    if hidden:
        summary += f"; {hidden} more matched, not shown (--limit {limit})"
    held_here = sum(e.held for e in shown)
    if held_here:
        summary += f"; {held_here} held"
    _summary(summary, as_json=as_json)


@queue_group.command("show")
@click.argument("ids", nargs=-1, required=True, metavar="ID...|-")
@_queue_options
@_json_option
def show_command(ids: tuple[str, ...], as_json: bool, **where: Any) -> None:
    """Show entries and each pending recipient's last reply (never the body)."""
    now = time.time()
    chosen = _selection(ids, False, None, None, None, None, None, False, now=now)
    found = _matched(where, chosen)

    async def bodies(q: Queue) -> list[QueueEntry]:
        return [await q.get(e.id) for e in found]  # the message's size; never its text

    entries = _run(where, bodies)
    console = _console()
    for number, entry in enumerate(entries):
        if as_json:
            _echo_json(_entry_json(entry))
            continue
        if number:
            click.echo()
        rows = [
            ("id", entry.id),
            ("destination", entry.destination.describe()),
            ("sender", entry.sender),
            ("message id", entry.message_id or ""),
            ("size", f"{len(entry.data or b'')} bytes"),
            ("attempts", str(entry.attempts)),
            ("state", _state(entry, now) + (" (queue release it to send it)" if entry.held else "")),
            ("created", iso(entry.created_at)),
            ("next attempt", iso(entry.next_attempt_at)),
            ("expires", iso(entry.expires_at)),
            ("leased by", f"{entry.owner} until {iso(entry.lease_until)}" if entry.owner else ""),
        ]
        for label, value in rows:
            click.echo(f"{label + ':':14}{value}")
        table = Table(title="pending recipients")
        for name in ("recipient", "deferrals", "first attempt", "next attempt", "last reply"):
            table.add_column(name, overflow="fold")
        for r in entry.recipients:
            table.add_row(Text(r.address), str(r.deferrals), iso(r.first_attempt_at),
                          iso(r.next_attempt_at), Text(r.last_reply()))
        console.print(table)
    if len(entries) > 1:
        _summary(f"{_n(len(entries), 'entry')}, {_n(_recipients(entries), 'recipient')}", as_json=as_json)


@queue_group.command("retry")
@_selection_options
@_queue_options
def retry_command(
    ids: tuple[str, ...], all_: bool, destination: str | None, domain: str | None, older_than: str | None,
    recipient: str | None, sender: str | None, held: bool, **where: Any,
) -> None:
    """Make the selected entries due now; `queue run` sends them. Held entries are left
    as they are: release them first."""
    now = time.time()
    chosen = _selection(ids, all_, destination, domain, older_than, recipient, sender, held, now=now)
    _required(chosen, "retry")
    found = _matched(where, chosen)
    free = [e for e in found if not e.held]
    changed = _run(where, lambda q: q.retry(_ids(free), now=now)) if free else 0
    line = f"{_n(changed, 'entry')} due now ({_n(_recipients(free), 'recipient')})"
    kept = len(found) - len(free)
    if kept:
        line += f"; {_n(kept, 'held entry')} left as {'it is' if kept == 1 else 'they are'} " \
                "(smtpretry queue release first)"
    click.echo(line)


@queue_group.command("delete")
@_selection_options
@_queue_options
def delete_command(
    ids: tuple[str, ...], all_: bool, destination: str | None, domain: str | None, older_than: str | None,
    recipient: str | None, sender: str | None, held: bool, **where: Any,
) -> None:
    """Delete the selected entries: their recipients will not get the message."""
    now = time.time()
    chosen = _selection(ids, all_, destination, domain, older_than, recipient, sender, held, now=now)
    _required(chosen, "delete")
    found = _matched(where, chosen)
    deleted = _run(where, lambda q: q.delete(_ids(found)))
    click.echo(f"deleted {_n(deleted, 'entry')} ({_n(_recipients(found), 'recipient')} will not get "
               "the message)")


@queue_group.command("hold")
@_selection_options
@_queue_options
def hold_command(
    ids: tuple[str, ...], all_: bool, destination: str | None, domain: str | None, older_than: str | None,
    recipient: str | None, sender: str | None, held: bool, **where: Any,
) -> None:
    """Put the selected entries on hold: never sent, not even by `queue retry`, until
    `queue release`."""
    now = time.time()
    chosen = _selection(ids, all_, destination, domain, older_than, recipient, sender, held, now=now)
    _required(chosen, "hold")
    found = _matched(where, chosen)
    todo = [e for e in found if not e.held]
    changed = _run(where, lambda q: q.hold(_ids(todo))) if todo else 0
    line = f"held {_n(changed, 'entry')} ({_n(_recipients(todo), 'recipient')}): not sent until released"
    if len(found) > len(todo):
        line += f"; {len(found) - len(todo)} already held"
    click.echo(line)


@queue_group.command("release")
@_selection_options
@_queue_options
def release_command(
    ids: tuple[str, ...], all_: bool, destination: str | None, domain: str | None, older_than: str | None,
    recipient: str | None, sender: str | None, held: bool, **where: Any,
) -> None:
    """Release the selected entries from hold: `queue run` sends them when they are due."""
    now = time.time()
    chosen = _selection(ids, all_, destination, domain, older_than, recipient, sender, held, now=now)
    _required(chosen, "release")
    found = _matched(where, chosen)
    todo = [e for e in found if e.held]
    changed = _run(where, lambda q: q.hold(_ids(todo), held=False)) if todo else 0
    line = f"released {_n(changed, 'entry')} ({_n(_recipients(todo), 'recipient')}): sent when due"
    if len(found) > len(todo):
        line += f"; {len(found) - len(todo)} not held"
    click.echo(line)


@queue_group.command("purge")
@click.option("--older-than", required=True, metavar="DURATION",
              help="Delete the entries first deferred longer ago than DURATION (7d, 12h).")
@click.option("--destination", metavar="HOST[:PORT]", help="Only entries for this destination.")
@click.option("--domain", metavar="DOMAIN", help="Only entries with a pending recipient at DOMAIN.")
@click.option("--held", is_flag=True, help="Only entries on hold.")
@_queue_options
def purge_command(older_than: str, destination: str | None, domain: str | None, held: bool,
                  **where: Any) -> None:
    """Delete what has waited longer than --older-than: its recipients will not get the
    message."""
    now = time.time()
    chosen = _selection((), False, destination, domain, older_than, None, None, held, now=now)
    found = _matched(where, chosen)
    deleted = _run(where, lambda q: q.delete(_ids(found)))
    click.echo(f"purged {_n(deleted, 'entry')} older than {older_than} "
               f"({_n(_recipients(found), 'recipient')} will not get the message)")


@queue_group.command("shape")
@click.option("--by", type=click.Choice(["destination", "domain"]), default="destination",
              show_default=True, help="Rows per destination (host:port), or per recipient domain.")
@click.option("--recipients", "count_recipients", is_flag=True,
              help="Count recipients in the age columns, not entries.")
@_selection_options
@_queue_options
@_json_option
def shape_command(
    by: str, count_recipients: bool, ids: tuple[str, ...], all_: bool, destination: str | None,
    domain: str | None, older_than: str | None, recipient: str | None, sender: str | None, held: bool,
    as_json: bool, **where: Any,
) -> None:
    """What waits where, and for how long, as Postfix's qshape: entries (or --recipients)
    per destination by age since first deferred, in minutes."""
    now = time.time()
    chosen = _selection(ids, all_, destination, domain, older_than, recipient, sender, held, now=now)
    entries = _matched(where, chosen) if chosen.given else _run(where, lambda q: q.entries())
    s = shape(entries, now=now, by="domain" if by == "domain" else "destination")
    if as_json:
        labels = s.labels
        _echo_json(s.total.as_dict(labels))
        for row in s.rows:
            _echo_json(row.as_dict(labels))
    else:
        def cells(r: Any) -> list[str]:
            ages = r.recipients_by_age if count_recipients else r.entries_by_age
            return [r.name, str(r.entries), str(r.recipients), *(str(n) for n in ages)]

        columns = [by, "entries", "recipients", *s.labels]
        show_table(columns, [cells(s.total), *(cells(r) for r in s.rows)],
                   right=tuple(columns[1:]))
    _summary(f"{_n(s.total.entries, 'entry')}, {_n(s.total.recipients, 'recipient')} at "
             f"{len(s.rows)} {by if len(s.rows) == 1 else by + 's' if by == 'destination' else 'domains'}; "
             f"the age columns count {'recipients' if count_recipients else 'entries'} by minutes since "
             "first deferred", as_json=as_json)


@queue_group.command("suspend")
@click.argument("destination", metavar="DESTINATION")
@click.option("--for", "for_", required=True, metavar="DURATION", help="How long: 30m, 2h, 1d.")
@click.option("--reason", default="", metavar="TEXT",
              help="Why (the reply that made you do it: \"421 4.7.0 [TSS04]\"), logged with it.")
@_queue_options
def suspend_command(destination: str, for_: str, reason: str, **where: Any) -> None:
    """Suspend DESTINATION for a while: every process using this queue (every worker,
    with Redis) defers its recipients at once, without connecting, until it ends.

    DESTINATION is host:port as the log writes it, a host (every port), or a limit key
    such as mx:.google.com."""
    key = _destination(destination, "DESTINATION")
    seconds = _duration(for_, "--for")
    now = time.time()
    suspension = Suspension(key, now + seconds, reason.strip(), now)

    async def act(q: Queue) -> int:
        await q.suspend(suspension)
        return len(await q.entries(selection=Selection(destination=key)))

    waiting = _run(where, act)
    note = f" ({suspension.reason})" if suspension.reason else ""
    click.echo(f"suspended {key} until {iso(suspension.until)}{note}: its recipients are deferred "
               f"unsent until then; {_n(waiting, 'queued entry')} for it")


@queue_group.command("resume")
@click.argument("destination", metavar="DESTINATION")
@_queue_options
def resume_command(destination: str, **where: Any) -> None:
    """Lift the suspension of DESTINATION, and make due the entries it deferred."""
    key = _destination(destination, "DESTINATION")
    now = time.time()

    async def act(q: Queue) -> tuple[Suspension | None, int]:
        lifted = await q.resume(key)
        if lifted is None:
            return None, 0
        waiting = [e for e in await q.entries(selection=Selection(destination=key, held=False))
                   if any(r.failure == "suspended" for r in e.recipients)]
        return lifted, (await q.retry(_ids(waiting), now=now) if waiting else 0)

    lifted, due = _run(where, act)
    if lifted is None or lifted.until <= now:
        nothing(f"no suspension of {key} in force" + (" (it had ended)" if lifted is not None else ""))
    click.echo(f"resumed {key} (suspended until {iso(lifted.until)}); {_n(due, 'entry')} it deferred "
               "due now")


@queue_group.command("suspensions")
@_queue_options
@_json_option
def suspensions_command(as_json: bool, **where: Any) -> None:
    """The destinations suspended now, and until when."""
    now = time.time()
    found = _run(where, lambda q: q.suspensions(now=now))
    if as_json:
        for s in found:
            _echo_json({"destination": s.key, "until": s.until, "reason": s.reason,
                        "created_at": s.created_at})
    else:
        show_table(["destination", "until", "left", "reason"],
                   [[s.key, iso(s.until), _age(s.until - now), s.reason] for s in found])
    _summary(f"{_n(len(found), 'destination')} suspended", as_json=as_json)


@queue_group.command("stats")
@_queue_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def stats_command(as_json: bool, **where: Any) -> None:
    """Counts: entries, recipients, due, running, held, expired."""
    now = time.time()
    s = _run(where, lambda q: q.stats(now=now))
    if as_json:
        _echo_json(dataclasses.asdict(s))
        return
    oldest = _age(now - s.oldest_created_at) if s.oldest_created_at is not None else ""
    for label, value in (
        ("entries", s.entries), ("recipients", s.recipients), ("due now", s.due),
        ("running", s.leased), ("held", s.held), ("expired", s.expired), ("oldest", oldest),
        ("next attempt", iso(s.next_attempt_at)),
    ):
        click.echo(f"{label + ':':14}{value}")


def _mailer_factory(
    res: Resolution, user: str | None, password: str | None, *, timeout: float | None,
    max_attempts: int | None,
) -> Callable[[Destination], Mailer]:
    """Mailers for entries: a profile of the configuration (the one the entry names,
    else one for its host and port), else host, port and TLS mode from the entry with
    ``--user``. ``--timeout`` and ``--max-attempts`` apply to every one."""
    config = res.config

    def build(d: Destination) -> Mailer:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        name = d.profile or next(
            (p.name for p in config.profiles.values() if (p.host, p.port) == (d.host, d.port)), None
        )
        if name is not None:
            if name not in config.profiles:
                # Sending it without the profile's credentials would fail its recipients.
                why = (f"{res.config_path} has no such profile" if res.config_path is not None
                       else "no configuration is named (give --config FILE or set SMTPRETRY_CONFIG)")
                raise ConfigError(f"queue entries for {d.key} were deferred as profile {name!r}: {why}")
            mailer = Mailer.from_profile(config, name, **extra)
        else:
            mailer = Mailer(d.host, d.port, tls=d.tls, username=user, password=password, config=config,
                            **extra)
        if max_attempts is not None:
            mailer.policy = dataclasses.replace(mailer.policy, max_attempts=max_attempts)
        return mailer

    return build


def _totals(stats: QueueRunStats) -> str:
    return (
        f"entries: {stats.entries}, delivered: {stats.delivered}, deferred: {stats.deferred}, "
        f"failed: {stats.failed}, expired: {stats.expired}"
        + (f", possible duplicates: {stats.possible_duplicates}" if stats.possible_duplicates else "")
    )


def _nothing_due(s: QueueStats, now: float) -> str:
    """What a run that found nothing due says instead of zeros."""
    if s.entries == 0:
        return "nothing due: the queue is empty"
    said = f"nothing due now: {s.entries} {'entry' if s.entries == 1 else 'entries'} waiting"
    if s.leased:
        said += f", {s.leased} being sent by another runner"
    if s.next_attempt_at is not None and s.next_attempt_at > now:
        said += f"; the next is due at {iso(s.next_attempt_at)} (in {_age(s.next_attempt_at - now)})"
    return said


_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report


@queue_group.command("run")
@click.option("--once/--forever", default=True, show_default=True,
              help="Send what is due now and stop, or keep polling.")
@_queue_options
@click.option("--user", help="Log in as this user where no profile applies.")
@click.option("--password-env", metavar="VAR", default="SMTPRETRY_PASSWORD", show_default=True,
              help="Environment variable holding the password for --user.")
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True,
              help="Entries sent at once.")
@click.option("--lease", "lease_s", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds a runner holds an entry (renewed while sending).")
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.01), default=5.0, show_default=True,
              help="Seconds between looks at the queue (--forever).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds to wait for each reply [default: the profile's, else 60].")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None,
              help="Connections to try per entry before deferring it again (overrides the config).")
@log_options
def run_command(
    once: bool, config_path: str | None, queue_url: str | None, user: str | None, password_env: str,
    concurrency: int, lease_s: float, poll_s: float, timeout: float | None, max_attempts: int | None,
    log_file: str | None, verbose: bool, log_format: str,
) -> None:
    """Send the due entries again.

    Exit status: 0 when nothing failed (recipients deferred again included), 1 when a
    recipient failed or expired, 2 on bad input or a queue that cannot be used, 130 on
    Ctrl-C and 143 on SIGTERM (the totals so far are printed; entries being sent are
    due again at once).
    """
    password = None
    if user is not None:
        password = os.environ.get(password_env)
        if password is None:
            fail(f"--user given, but the environment variable {password_env} is not set")
    res = resolve(config_path, queue_url)
    factory = _mailer_factory(res, user, password, timeout=timeout, max_attempts=max_attempts)
    missing = _missing(res)
    if missing is not None and once:
        # No deferral ever made that queue: nothing to send, and nothing is created.
        click.echo(f"nothing due: {missing}")
        return
    open_log(log_file, verbose=verbose, log_format=log_format)
    console = _console()
    runner: QueueRunner | None = None
    stopped_by: list[int] = []

    async def main() -> tuple[QueueRunStats, str | None]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(signum: int) -> None:
            if not stopped_by:
                stopped_by.append(signum)
                task.cancel()

        for signum in _SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
        try:
            if missing is not None:
                # --forever: wait for the first deferral to create the queue, creating nothing.
                click.echo(f"waiting: {missing}", err=True)
                while _missing(res) is not None:
                    await asyncio.sleep(poll_s)
            queue = res.open_queue(create=False)
            try:
                return await _drain(queue)
            finally:
                await queue.close()
        finally:
            for signum in _SIGNALS:
                loop.remove_signal_handler(signum)

    async def _drain(queue: Queue) -> tuple[QueueRunStats, str | None]:
        nonlocal runner
        due = (await queue.stats(now=time.time())).due
        progress = Progress(
            TextColumn("sending queued mail"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal,
        )
        task = progress.add_task("queue", total=due if once else None)

        def advance(stats: QueueRunStats) -> None:
            progress.update(task, completed=stats.entries, total=max(due, stats.entries) if once else None)

        # Entries a Router wrote for an MX route go back through a Router: their
        # domain takes its route as configured now, its MX hosts looked up again.
        router: Router | None = None

        def build(d: Destination) -> Resender:
            nonlocal router
            if not d.is_mx:
                return factory(d)
            if router is None:
                if not res.config.routes:
                    raise QueueError(f"queue entry for {d.describe()}: resending it needs --config FILE "
                                     "with the [routes] it was sent by")
                router = Router(res.config, queue=queue)
            return router.resender(d)

        runner = QueueRunner(queue, build, concurrency=concurrency, lease_s=lease_s,
                             poll_interval_s=poll_s, on_progress=advance)
        try:
            with progress:
                stats = await runner.run(once=once)
        finally:
            if router is not None:
                await router.close()
        if stats.entries:
            return stats, None
        now = time.time()
        return stats, _nothing_due(await queue.stats(now=now), now)

    try:
        stats, idle = asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        signum = stopped_by[0] if stopped_by else signal.SIGINT
        if runner is not None:
            click.echo(_totals(runner.stats))
        name = "SIGTERM" if signum == signal.SIGTERM else "interrupted"
        click.echo(f"{name}: stopped; entries being sent are due again", err=True)
        sys.exit(_SIGNALS[signal.Signals(signum)])
    except SMTPRetryError as exc:
        if runner is not None:
            click.echo(_totals(runner.stats))
        fail(str(exc).replace("\n", "; "))
    click.echo(idle if idle is not None else _totals(stats))
    if stats.failed or stats.expired:
        sys.exit(1)
