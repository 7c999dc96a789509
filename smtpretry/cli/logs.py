"""``smtpretry logs``: read decision logs back (summary, trace, tail, report).

The commands are thin over ``parse``, ``summary``, ``trace``, ``tail`` and ``report``.
Tables on a terminal, ``--json`` for scripts. Lines that could not be used are reported on
stderr as one ``smtpretry: warning:`` line; a file that holds no smtpretry record is a
warning of its own and exit status 1 (it is not a decision log: ``/etc/passwd``, the wrong
file); ``trace`` that finds nothing exits 1; a missing or unreadable file is
``smtpretry: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._time import iso
from ..logs.parse import LogInputError, ReadStats, Record, check_inputs, parse_time, read_records
from ..logs.report import render_report
from ..logs.summary import STATUSES, DestinationStats, Summary, summarize
from ..logs.tail import follow_many
from ..logs.trace import as_json, group_sends, select
from ._errors import Group, fail, nothing
from ._table import console
from .render import STYLES, describe, line

__all__ = ["logs_group"]




def _inputs(files: tuple[str, ...]) -> list[str]:
    try:
        return check_inputs(files)
    except LogInputError as exc:
        fail(str(exc))


def _time(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    ts = parse_time(value.strip())
    if ts is None:
        fail(f"{option}: expected an ISO-8601 time such as 2025-01-31T12:00:00Z, got {value!r}")
    return ts


def _warn(stats: ReadStats) -> bool:
    """Report what reading met: skipped lines, and each input that held no smtpretry
    record (one warning each). True when an input held none: the command then exits 1."""
    note = stats.describe()
    if note:
        click.echo(f"smtpretry: warning: {note}", err=True)
    empty = stats.without_records()
    for source in empty:
        click.echo(f"smtpretry: warning: {stats.no_records(source)}", err=True)
    return bool(empty)


def _console() -> Console:
    # Piped or redirected, a table is never folded: one row per line (_table.py).
    return console()


def _records(paths: list[str], stats: ReadStats) -> Iterator[Record]:
    try:
        yield from read_records(paths, stats)
    except LogInputError as exc:
        fail(str(exc))


@click.group("logs", cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def logs_group() -> None:
    """Read decision logs (JSON lines written by configure_logging) back.

    FILE may be gzipped (x.log.2.gz) and "-" reads standard input. Give rotated files
    oldest first: x.log.2.gz x.log.1 x.log.
    """


# -- summary -------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _counts(counts: dict[str, int]) -> str:
    return " / ".join(str(counts[s]) for s in STATUSES)


def _summary_tables(s: Summary, console: Console) -> None:
    table = Table(title="Per destination", title_justify="left")
    table.add_column("destination", style="bold")
    table.add_column("messages\ndlv/def/fail/pend", justify="right")
    table.add_column("recipients\ndlv/def/fail/pend", justify="right")
    table.add_column("421", justify="right")
    table.add_column("retries", justify="right")
    table.add_column("backoff s", justify="right")
    table.add_column("cap ↓/↑", justify="right")
    table.add_column("cap\ncfg/min/last", justify="right")
    table.add_column("to delivery s\np50 / p95 / max", justify="right")
    paced = s.total.pace_lowered + s.total.pace_raised > 0  # max_messages_per_minute moved somewhere
    if paced:
        table.add_column("pace ↓/↑\nmin/last per min", justify="right")
    rows: list[tuple[str, DestinationStats]] = sorted(s.destinations.items())
    if len(rows) > 1:
        rows.append(("all", s.total))
    for name, d in rows:
        q = d.delivery_time
        cap = "" if d is s.total else "/".join("–" if v is None else str(v)
                                              for v in (d.cap_configured, d.cap_min, d.cap_last))
        pace = [f"{d.pace_lowered}/{d.pace_raised}"]
        if d is not s.total and d.pace_last is not None:
            pace.append(f"{d.pace_min:g}/{d.pace_last:g}")
        table.add_row(
            name, _counts(d.messages), _counts(d.recipients), str(d.replies_421), str(d.retries),
            f"{d.backoff_s:.3f}", f"{d.cap_lowered}/{d.cap_raised}", cap,
            f"{_seconds(q.quantile(0.5))} / {_seconds(q.quantile(0.95))} / {_seconds(q.maximum)}",
            *(["\n".join(pace)] if paced else []),
        )
    console.print(table)
    cats = Table(title="Per category (recipients that met it, by how they ended)", title_justify="left")
    cats.add_column("destination", style="bold")
    cats.add_column("category")
    cats.add_column("decisions", justify="right")
    cats.add_column("messages\ndlv/def/fail/pend", justify="right")
    cats.add_column("recipients\ndlv/def/fail/pend", justify="right")
    for (dest, name), c in sorted(s.categories.items()):
        cats.add_row(dest, name, str(c.replies), _counts(c.messages), _counts(c.recipients))
    console.print(cats)
    if s.domains:
        doms = Table(title="Per recipient domain (routed by a Router)", title_justify="left")
        doms.add_column("domain", style="bold")
        doms.add_column("route")
        doms.add_column("provider (limit key)")
        doms.add_column("lookups\ncached/all", justify="right")
        doms.add_column("recipients\ndlv/def/fail/pend", justify="right")
        for name, dom in sorted(s.domains.items()):
            doms.add_row(name, ", ".join(sorted(dom.routes)), ", ".join(sorted(dom.providers)),
                         f"{dom.from_cache}/{dom.resolved}", _counts(dom.recipients))
        console.print(doms)
    span = f"{iso(s.total.first_ts, ms=True)} – {iso(s.total.last_ts, ms=True)}"
    console.print(f"{s.stats.records} records from {len(s.stats.files)} file(s), {span}"
                  + (f"; {s.filtered} outside --since/--until" if s.filtered else ""), style="dim")


@logs_group.command("summary")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json_", is_flag=True, help="Print one JSON object, for scripts.")
@click.option("--since", metavar="T", help="Only records at or after T (ISO-8601, UTC unless given).")
@click.option("--until", metavar="T", help="Only records at or before T (ISO-8601, UTC unless given).")
def summary_command(files: tuple[str, ...], as_json_: bool, since: str | None, until: str | None) -> None:
    """Delivered, deferred and failed per destination and category; 421s, retries,
    backoff, cap changes, time to delivery."""
    paths = _inputs(files)
    lo, hi = _time(since, "--since"), _time(until, "--until")
    stats = ReadStats()
    s = summarize(_records(paths, stats), stats=stats, since=lo, until=hi)
    empty = _warn(stats)
    if as_json_:
        click.echo(json.dumps(s.as_dict(), indent=2))
    elif stats.records:
        _summary_tables(s, _console())
    if empty:
        sys.exit(1)


# -- trace ---------------------------------------------------------------------------------


@logs_group.command("trace")
@click.option("--message-id", "message_id", metavar="ID", help="The Message-ID, with or without <>.")
@click.option("--recipient", metavar="ADDR", help="A recipient address.")
@click.option("--send-id", "send_id", metavar="ID",
              help="One send (the send_id of its events): a message sent without a Message-ID.")
@click.option("--json", "as_json_", is_flag=True,
              help="Print the records as JSON lines, in time order, each with its send_id if it has one.")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
def trace_command(
    message_id: str | None, recipient: str | None, send_id: str | None, as_json_: bool,
    files: tuple[str, ...],
) -> None:
    """The whole story of one message, recipient or send, in time order, across files.

    Where the log has send_id, the story is grouped by send: a message deferred and sent
    again from the queue shows as two sends."""
    if sum(x is not None for x in (message_id, recipient, send_id)) != 1:
        fail("give one of --message-id ID, --recipient ADDR or --send-id ID")
    paths = _inputs(files)
    stats = ReadStats()
    story = select(_records(paths, stats), message_id=message_id, recipient=recipient, send_id=send_id)
    empty = _warn(stats)
    wanted = (f"message {message_id}" if message_id else f"recipient {recipient}" if recipient
              else f"send {send_id}")
    if not story:
        nothing(f"no records for {wanted} in the {stats.records} records read")
    if as_json_:
        for r in story:
            click.echo(json.dumps(as_json(r)))
        if empty:
            sys.exit(1)
        return
    console = _console()
    groups = group_sends(story)
    counted = sum(g.send_id is not None for g in groups)
    # A log written before send_id has no sends to tell apart: one list, as it always read.
    split = counted > 0
    title = f"Story of {wanted}" + (f", {counted} send{'s' if counted != 1 else ''}" if split else "")
    table = Table(title=title, title_justify="left")
    table.add_column("time", no_wrap=True)
    table.add_column("+s", justify="right")
    table.add_column("event")
    table.add_column("destination")
    table.add_column("recipients")
    table.add_column("#", justify="right")
    table.add_column("what happened")
    table.add_column("from", style="dim")
    start = next((r.ts for r in story if r.ts is not None), None)
    if split:
        start = min((g.start for g in groups if g.start is not None), default=start)

    def offset(ts: float | None) -> str:
        return "" if ts is None or start is None else f"{ts - start:.3f}"

    number = 0
    for index, group in enumerate(groups):
        if split:
            if index:
                table.add_section()
            if group.send_id is not None:
                number += 1
                label, heading = f"send {number} of {counted}", f"send_id {group.send_id} starts"
            else:
                label, heading = "no send_id", "records that name no send"
            table.add_row(iso(group.start, ms=True), offset(group.start), Text(label, style="bold"),
                          group.destination, "", "", Text(heading, style="bold"), "")
        for r in group.records:
            style = STYLES.get(r.event, "")
            table.add_row(
                iso(r.ts, ms=True), offset(r.ts), Text(r.event.removeprefix("smtpretry."), style=style),
                r.destination, ", ".join(r.recipients), str(r.get("attempt", "")),
                Text(describe(r), style=style), f"{os.path.basename(r.source)}:{r.line}",
            )
    console.print(table)
    if empty:
        sys.exit(1)


# -- tail ----------------------------------------------------------------------------------


@logs_group.command("tail")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep reading as the files grow.")
@click.option("-F", "follow_name", is_flag=True,
              help="Follow by name: as -f, and wait for a file that does not exist yet (or was "
                   "rotated away) to appear.")
@click.option("-n", "--lines", "lines", type=click.IntRange(min=0), default=None,
              help="Start with the last N lines of each file (default: all).")
@click.option("--poll", type=click.FloatRange(min=0.01), default=0.5, show_default=True,
              help="Seconds between polls in follow mode.")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
def tail_command(follow_: bool, follow_name: bool, lines: int | None, poll: float,
                 files: tuple[str, ...]) -> None:
    """Render records for people as they arrive, coloured by decision.

    With several FILEs each line starts with the name of the file it came from."""
    keep = follow_ or follow_name
    if follow_name:
        paths = list(files)
        for path in paths:
            if path != "-" and os.path.isdir(path):
                fail(f"{path}: is a directory")
            if path != "-" and not os.path.exists(path):
                click.echo(f"smtpretry: warning: {path}: no such file yet; waiting for it to appear",
                           err=True)
    else:
        paths = _inputs(files)
    console = _console()
    stats = ReadStats()
    several = len(paths) > 1
    try:
        for r in follow_many(paths, stats=stats, keep_following=keep, last=lines, poll_s=poll,
                             wait=follow_name):
            text = line(r)
            if several:
                text = Text(f"{os.path.basename(r.source)}: ", style="dim") + text
            console.print(text, soft_wrap=True)
    except KeyboardInterrupt:
        pass
    except LogInputError as exc:
        fail(str(exc))
    empty = _warn(stats)
    if empty and not keep:
        sys.exit(1)


# -- report --------------------------------------------------------------------------------


@logs_group.command("report")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("-o", "--output", required=True, metavar="PATH",
              help="Where to write the HTML page; - for standard output.")
@click.option("--since", metavar="T", help="Only records at or after T (ISO-8601).")
@click.option("--until", metavar="T", help="Only records at or before T (ISO-8601).")
@click.option("--title", default="smtpretry decision log", show_default=True)
def report_command(files: tuple[str, ...], output: str, since: str | None, until: str | None,
                   title: str) -> None:
    """One self-contained HTML page: charts over time and the summary tables."""
    paths = _inputs(files)
    lo, hi = _time(since, "--since"), _time(until, "--until")
    folder = os.path.dirname(os.path.abspath(output))
    if output != "-" and not os.path.isdir(folder):
        fail(f"{output}: no such directory {folder}")
    stats = ReadStats()
    s = summarize(_records(paths, stats), stats=stats, since=lo, until=hi)
    empty = _warn(stats)
    if not stats.records:
        click.echo("smtpretry: warning: no report written: no smtpretry records to draw", err=True)
        sys.exit(1)
    page = render_report(s, title=title)
    if output == "-":
        click.echo(page)
        if empty:
            sys.exit(1)
        return
    try:
        # Write next to the target, then rename: a reader never sees half a page.
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except OSError as exc:
        fail(f"{output}: {exc.strerror or exc}")
    click.echo(f"wrote {output} ({len(page.encode()) // 1024 + 1} KiB, "
               f"{s.stats.records} records, {len(s.destinations)} destination(s))", err=True)
    if empty:
        sys.exit(1)
