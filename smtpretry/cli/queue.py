"""``smtpretry queue ...``: run, inspect and edit the deferred queue.

A thin click group over :mod:`smtpretry.queue`; the main CLI registers it
with ``main.add_command(queue_group)``. Every command finds its queue as
``send`` does (``_resolve.py``): ``--queue URL``, else ``SMTPRETRY_QUEUE``,
else the ``[queue] url`` of ``--config``/``SMTPRETRY_CONFIG``, else the user's
state directory. The commands that read or edit the queue never create one: a
queue that does not exist is ``no queue at PATH``. Problems (a corrupt or
locked queue, a bad URL, a missing entry, a bad configuration) are one line on
stderr, ``smtpretry: error: ...``, and exit status 2, never a traceback.
Message bodies are never printed.

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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError, QueueError, SMTPRetryError
from ..mailer import Mailer
from ..queue.base import Destination, Queue, QueueEntry, QueueStats
from ..router import Router
from ..runner import QueueRunner, QueueRunStats, Resender
from ._errors import fail
from ._logfile import open_log
from ._resolve import Resolution, Source, config_option, queue_option, resolve

__all__ = ["queue_group"]

T = TypeVar("T")




def _missing(res: Resolution) -> str | None:
    """``no queue at PATH (...)`` when the queue is an SQLite file that does not exist."""
    path = res.queue_path
    if path is None or path.is_file():
        return None
    why = "the default queue" if res.queue_source is Source.DEFAULT else f"from {res.queue_origin}"
    return f"no queue at {path} ({why})"


def _run(res: Resolution, action: Callable[[Queue], Awaitable[T]]) -> T:
    """Open the existing queue (never creating one), run ``action`` on it, close it;
    errors become one line."""
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


def _queue_options(f: Callable[..., Any]) -> Callable[..., Any]:
    return config_option(queue_option(f))


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
@_queue_options
@_json_option
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many entries.")
@click.option("--by", "group_by", type=click.Choice(["domain", "provider"]),
              help="Count pending recipients per recipient domain, or per provider (the limit key they "
                   "were deferred under; a relay's host:port or profile).")
def list_command(
    config_path: str | None, queue_url: str | None, as_json: bool, limit: int | None, group_by: str | None
) -> None:
    """List entries, the next due first."""
    entries = _run(resolve(config_path, queue_url), lambda q: q.entries(limit=limit))
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
@_queue_options
@_json_option
def show_command(entry_id: str, config_path: str | None, queue_url: str | None, as_json: bool) -> None:
    """Show one entry and each pending recipient's last reply (never the body)."""
    entry = _run(resolve(config_path, queue_url), lambda q: q.get(entry_id))
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
@_queue_options
def retry_command(entry_id: str | None, all_: bool, config_path: str | None, queue_url: str | None) -> None:
    """Make an entry (or --all) due now; `queue run` sends it."""
    if (entry_id is None) == (not all_):
        fail("retry: give an entry ID or --all (not both)")
    changed = _run(resolve(config_path, queue_url),
                   lambda q: q.retry(None if all_ else entry_id, now=time.time()))
    click.echo(f"{changed} {'entry' if changed == 1 else 'entries'} due now")


@queue_group.command("delete")
@click.argument("entry_id", metavar="ID")
@_queue_options
def delete_command(entry_id: str, config_path: str | None, queue_url: str | None) -> None:
    """Delete an entry: its recipients will not get the message."""
    _run(resolve(config_path, queue_url), lambda q: q.delete(entry_id))
    click.echo(f"deleted {entry_id}")


@queue_group.command("stats")
@_queue_options
@_json_option
def stats_command(config_path: str | None, queue_url: str | None, as_json: bool) -> None:
    """Counts: entries, recipients, due, running, expired."""
    now = time.time()
    s = _run(resolve(config_path, queue_url), lambda q: q.stats(now=now))
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
        said += f"; the next is due at {_iso(s.next_attempt_at)} (in {_age(s.next_attempt_at - now)})"
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
@click.option("--log-file", type=click.Path(dir_okay=False), help="Append the JSON decision log here.")
@click.option("-v", "--verbose", is_flag=True, help="Write the JSON decision log to stderr.")
def run_command(
    once: bool, config_path: str | None, queue_url: str | None, user: str | None, password_env: str,
    concurrency: int, lease_s: float, poll_s: float, timeout: float | None, max_attempts: int | None,
    log_file: str | None, verbose: bool,
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
    open_log(log_file, to_stderr=verbose)
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
