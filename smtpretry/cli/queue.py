"""``smtpretry queue ...``: run, inspect and edit the deferred queue.

A thin click group over :mod:`smtpretry.queue`; the main CLI registers it
with ``main.add_command(queue_group)``. Every command takes ``--queue URL``
(or ``SMTPRETRY_QUEUE``; default: the user's state directory). Problems (a
corrupt or locked queue, a bad URL, a missing entry, a bad configuration) are
one line on stderr, ``smtpretry: error: ...``, and exit status 2, never a
traceback. Message bodies are never printed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import config as config_module
from .._logging import configure_logging
from ..errors import QueueError, SMTPRetryError
from ..mailer import Mailer
from ..queue.base import Destination, Queue, QueueEntry, default_queue_path, open_queue
from ..router import Router
from ..runner import QueueRunner, QueueRunStats, Resender
from ._errors import fail

__all__ = ["queue_group"]

T = TypeVar("T")




def _run(url: str | None, action: Callable[[Queue], Awaitable[T]]) -> T:
    """Open the queue, run ``action`` on it, close it; errors become one line."""

    async def main() -> T:
        queue = open_queue(url)
        try:
            return await action(queue)
        finally:
            await queue.close()

    try:
        return asyncio.run(main())
    except SMTPRetryError as exc:
        fail(str(exc))


def _queue_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--queue", "queue_url", metavar="URL", envvar="SMTPRETRY_QUEUE",
        help=f"The queue: sqlite:///path/queue.db or a file path [default: {default_queue_path()}].",
    )(f)


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


# -- rendering -------------------------------------------------------------------------------


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


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
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _console() -> Console:
    # Piped output is not folded to 80 columns: each entry stays one row, for grep.
    terminal = sys.stdout.isatty()
    return Console(file=sys.stdout, width=None if terminal else 400, force_terminal=None)


# -- commands --------------------------------------------------------------------------------


@click.group("queue")
def queue_group() -> None:
    """The deferred queue: recipients that could not be delivered yet."""


@queue_group.command("list")
@_queue_option
@_json_option
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many entries.")
@click.option("--by", "group_by", type=click.Choice(["domain", "provider"]),
              help="Count pending recipients per recipient domain, or per provider (the limit key they "
                   "were deferred under; a relay's host:port or profile).")
def list_command(queue_url: str | None, as_json: bool, limit: int | None, group_by: str | None) -> None:
    """List entries, the next due first."""
    entries = _run(queue_url, lambda q: q.entries(limit=limit))
    if group_by is not None:
        groups = _grouped(entries, group_by)
        if as_json:
            _echo_json([{group_by: k, **v} for k, v in groups.items()])
            return
        table = Table()
        for name in (group_by, "entries", "recipients", "next attempt (UTC)"):
            table.add_column(name, overflow="fold")
        for key, g in groups.items():
            table.add_row(Text(key), str(g["entries"]), str(g["recipients"]), _iso(g["next_attempt_at"]))
        _console().print(table)
        return
    if as_json:
        _echo_json([_entry_json(e) for e in entries])
        return
    if not entries:
        click.echo("the queue is empty")
        return
    now = time.time()
    table = Table()
    for name in ("id", "age", "destination", "pending", "last reply", "next attempt (UTC)"):
        table.add_column(name, overflow="fold")
    for e in entries:
        first = e.recipients[0]
        more = f" +{len(e.recipients) - 1}" if len(e.recipients) > 1 else ""
        table.add_row(
            e.id, _age(now - e.created_at), Text(e.destination.describe()),
            Text(f"{first.address}{more}"), Text(first.last_reply()),
            _iso(e.next_attempt_at) + (" (running)" if e.lease_until > now else ""),
        )
    _console().print(table)


@queue_group.command("show")
@click.argument("entry_id", metavar="ID")
@_queue_option
@_json_option
def show_command(entry_id: str, queue_url: str | None, as_json: bool) -> None:
    """Show one entry and each pending recipient's last reply (never the body)."""
    entry = _run(queue_url, lambda q: q.get(entry_id))
    if as_json:
        _echo_json(_entry_json(entry))
        return
    console = _console()
    rows = [
        ("id", entry.id),
        ("destination", entry.destination.describe()),
        ("sender", entry.sender),
        ("message id", entry.message_id or ""),
        ("size", f"{len(entry.data or b'')} bytes"),
        ("attempts", str(entry.attempts)),
        ("created", _iso(entry.created_at)),
        ("next attempt", _iso(entry.next_attempt_at)),
        ("expires", _iso(entry.expires_at)),
        ("leased by", f"{entry.owner} until {_iso(entry.lease_until)}" if entry.owner else ""),
    ]
    for label, value in rows:
        click.echo(f"{label + ':':14}{value}")
    table = Table(title="pending recipients")
    for name in ("recipient", "deferrals", "first attempt", "next attempt", "last reply"):
        table.add_column(name, overflow="fold")
    for r in entry.recipients:
        table.add_row(Text(r.address), str(r.deferrals), _iso(r.first_attempt_at),
                      _iso(r.next_attempt_at), Text(r.last_reply()))
    console.print(table)


@queue_group.command("retry")
@click.argument("entry_id", metavar="ID", required=False)
@click.option("--all", "all_", is_flag=True, help="Every entry.")
@_queue_option
def retry_command(entry_id: str | None, all_: bool, queue_url: str | None) -> None:
    """Make an entry (or --all) due now; `queue run` sends it."""
    if (entry_id is None) == (not all_):
        fail("retry: give an entry ID or --all (not both)")
    changed = _run(queue_url, lambda q: q.retry(None if all_ else entry_id, now=time.time()))
    click.echo(f"{changed} {'entry' if changed == 1 else 'entries'} due now")


@queue_group.command("delete")
@click.argument("entry_id", metavar="ID")
@_queue_option
def delete_command(entry_id: str, queue_url: str | None) -> None:
    """Delete an entry: its recipients will not get the message."""
    _run(queue_url, lambda q: q.delete(entry_id))
    click.echo(f"deleted {entry_id}")


@queue_group.command("stats")
@_queue_option
@_json_option
def stats_command(queue_url: str | None, as_json: bool) -> None:
    """Counts: entries, recipients, due, running, expired."""
    now = time.time()
    s = _run(queue_url, lambda q: q.stats(now=now))
    if as_json:
        _echo_json(dataclasses.asdict(s))
        return
    oldest = _age(now - s.oldest_created_at) if s.oldest_created_at is not None else ""
    for label, value in (
        ("entries", s.entries), ("recipients", s.recipients), ("due now", s.due),
        ("running", s.leased), ("expired", s.expired), ("oldest", oldest),
        ("next attempt", _iso(s.next_attempt_at)),
    ):
        click.echo(f"{label + ':':14}{value}")


def _load_config(path: str | None) -> Any:
    """The configuration ``--config`` names, when this smtpretry can load one."""
    load = getattr(config_module, "load_config", None)
    return load(path) if path is not None and load is not None else None


def _mailer_factory(config: Any, user: str | None, password: str | None) -> Callable[[Destination], Mailer]:
    """Mailers for entries: from the configuration's profiles when ``--config``
    is given (a profile named by the entry, else one for its host and port),
    else host, port and TLS mode from the entry with ``--user``."""

    def build(d: Destination) -> Mailer:
        if config is not None:
            name = d.profile or next(
                (p.name for p in config.profiles.values() if (p.host, p.port) == (d.host, d.port)), None
            )
            if name is not None:
                return Mailer.from_profile(config, name)
            return Mailer(d.host, d.port, tls=d.tls, username=user, password=password, config=config)
        return Mailer(d.host, d.port, tls=d.tls, username=user, password=password)

    return build


@queue_group.command("run")
@click.option("--once/--forever", default=True, show_default=True,
              help="Send what is due now and stop, or keep polling.")
@_queue_option
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="TOML configuration: profiles (credentials), limits and policy per destination.")
@click.option("--user", help="Log in as this user where no profile applies.")
@click.option("--password-env", metavar="VAR", default="SMTPRETRY_PASSWORD", show_default=True,
              help="Environment variable holding the password for --user.")
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True,
              help="Entries sent at once.")
@click.option("--lease", "lease_s", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds a runner holds an entry (renewed while sending).")
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.01), default=5.0, show_default=True,
              help="Seconds between looks at the queue (--forever).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Append the JSON decision log here.")
def run_command(
    once: bool, queue_url: str | None, config_path: str | None, user: str | None, password_env: str,
    concurrency: int, lease_s: float, poll_s: float, log_file: str | None,
) -> None:
    """Send the due entries again."""
    password = None
    if user is not None:
        password = os.environ.get(password_env)
        if password is None:
            fail(f"--user given, but the environment variable {password_env} is not set")
    try:
        config = _load_config(config_path)
    except SMTPRetryError as exc:
        fail(str(exc))
    factory = _mailer_factory(config, user, password)
    if queue_url is None and config is not None:
        queue_url = getattr(config, "queue_url", None)
    if log_file is not None:
        configure_logging(file=log_file)
    console = _console()

    async def action(queue: Queue) -> QueueRunStats:
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
                if config is None or not getattr(config, "routes", ()):
                    raise QueueError(f"queue entry for {d.describe()}: resending it needs --config FILE "
                                     "with the [routes] it was sent by")
                router = Router(config, queue=queue)
            return router.resender(d)

        runner = QueueRunner(queue, build, concurrency=concurrency, lease_s=lease_s,
                             poll_interval_s=poll_s, on_progress=advance)
        try:
            with progress:
                return await runner.run(once=once)
        finally:
            if router is not None:
                await router.close()

    try:
        stats = _run(queue_url, action)
    except KeyboardInterrupt:
        click.echo("interrupted: entries being sent are due again", err=True)
        sys.exit(130)
    click.echo(
        f"entries: {stats.entries}, delivered: {stats.delivered}, deferred: {stats.deferred}, "
        f"failed: {stats.failed}, expired: {stats.expired}"
        + (f", possible duplicates: {stats.possible_duplicates}" if stats.possible_duplicates else "")
    )
