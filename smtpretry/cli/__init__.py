"""The ``smtpretry`` command: ``send`` one message, or run the throttling ``demo``.

The commands are thin: they parse the command line, call :class:`Mailer`, and
render what it returns. Bad input (a missing file, a message without sender or
recipients, a bad setting) is one line on stderr, ``smtpretry: error: ...``,
and exit status 2, never a traceback.

The CLI is an application, so unlike the library it may configure logging:
``--log-file`` (and ``send -v``) turn the JSON decision log on through
:func:`smtpretry.configure_logging`. The demo renders the decisions for people
through its own :class:`~smtpretry.events.Logger`, handed to the Mailer with
``logger=``, so it needs no global logging set-up to show them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.parser
import email.policy
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import __version__, events
from .._logging import Logger, configure_logging, get_logger
from ..errors import ConfigError, MessageError, QueueError
from ..mailer import Mailer
from ..policy import Limits, RetryPolicy
from ..result import Outcome, SendResult, Status
from ._errors import fail
from .demo_server import DemoServer, rcpt_reply

__all__ = ["cli", "main"]




@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="smtpretry")
def cli() -> None:
    """Send mail over SMTP that survives throttling."""


def main() -> None:
    """The console-script entry point."""
    cli(prog_name="smtpretry")


# -- rendering -------------------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _evidence(outcome: Outcome) -> str:
    """The last thing the server said (or the failure that stood for it)."""
    if outcome.reply is not None:
        return str(outcome.reply)
    return str(outcome.failure) if outcome.failure is not None else ""


def outcome_line(outcome: Outcome) -> str:
    """One recipient's end as one line: ``deferred a@b until <iso>: 422 4.2.2 ...``."""
    who = outcome.recipient
    match outcome.status:
        case Status.DELIVERED:
            line = f"delivered {who}"
        case Status.DEFERRED:
            at = _iso(outcome.next_attempt_at) if outcome.next_attempt_at is not None else "later"
            line = f"deferred {who} until {at}: {_evidence(outcome)}"
        case Status.FAILED:
            line = f"failed {who}{' (expired)' if outcome.expired else ''}: {_evidence(outcome)}"
    return line + (" (possible duplicate)" if outcome.possible_duplicate else "")


_STATUS_STYLE = {Status.DELIVERED: "green", Status.DEFERRED: "yellow", Status.FAILED: "red"}


def _outcome_table(result: SendResult) -> Table:
    table = Table()
    table.add_column("recipient", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("reply", ratio=1)
    table.add_column("next attempt (UTC)", no_wrap=True)
    for o in result.outcomes.values():
        status = o.status.value + (" (possible duplicate)" if o.possible_duplicate else "")
        # Text, not markup: addresses and server replies may hold "[...]".
        table.add_row(
            Text(o.recipient),
            Text(status, style=_STATUS_STYLE[o.status]),
            str(o.attempts),
            Text("" if o.status is Status.DELIVERED else _evidence(o)),
            _iso(o.next_attempt_at)[:19].replace("T", " ") if o.next_attempt_at is not None else "",
        )
    return table


def _summary(rows: Sequence[tuple[str, str]], console: Console, *, title: str) -> None:
    """Label/value rows: a table on a terminal, ``label: value`` lines otherwise."""
    if console.is_terminal:
        table = Table(title=title, show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for label, value in rows:
            table.add_row(label, Text(value))
        console.print(table)
    else:
        for label, value in rows:
            click.echo(f"{label}: {value}")


def _open_log(log_file: str | None, *, to_stderr: bool) -> None:
    """Turn the JSON decision log on: to ``log_file``, else to stderr if asked.

    The CLI opens the file itself (append, mode 0600 as ``configure_logging``
    would) so that it can close it when the command ends.
    """
    stream: IO[str] | None = sys.stderr if to_stderr else None
    if log_file is not None:
        try:
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            fail(f"cannot open the log file {log_file}: {exc.strerror or exc}")
        stream = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        click.get_current_context().call_on_close(stream.close)
    # The CLI is the application: it decides where the log goes, whatever
    # else may have configured structlog in this process.
    configure_logging(json=True, file=stream, level="info" if stream is not None else "none")


# -- send ------------------------------------------------------------------------------------


def _read_message(path: str) -> bytes:
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    if not data.strip():
        fail(f"{'stdin' if path == '-' else path}: the message is empty")
    headers = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data, headersonly=True)
    if not headers.keys():
        fail(f"{'stdin' if path == '-' else path}: not an email message (no header fields)")
    return data


async def _send(
    data: bytes, mailer: Mailer, *, sender: str | None, recipients: list[str] | None
) -> SendResult:
    async with mailer:
        return await mailer.send(data, sender=sender, recipients=recipients)


@cli.command(short_help="Send one message and print each recipient's outcome.")
@click.option("--host", help="SMTP server (relay or submission service).")
@click.option("--port", type=int, help="Port: 587 for STARTTLS (default), 465 implicit, 25.")
@click.option(
    "--tls", type=click.Choice(["starttls", "implicit", "none"]), default=None,
    help="How to encrypt (default starttls); starttls refuses to go on without it.",
)
@click.option("--user", help="Log in as this user (the password comes from --password-env).")
@click.option(
    "--password-env", metavar="VAR", default="SMTPRETRY_PASSWORD", show_default=True,
    help="Environment variable holding the password.",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="SMTPRETRY_CONFIG",
              help="Configuration file (limits and retry policy per destination, profiles).")
@click.option("--profile", help="Connect as [profiles.NAME] of the configuration says.")
@click.option("--from", "sender", metavar="ADDRESS", help="Envelope sender (default: From/Sender header).")
@click.option(
    "--to", "recipients", metavar="ADDRESS", multiple=True,
    help="Envelope recipient, repeatable (default: To, Cc and Bcc headers).",
)
@click.option("--max-connections", type=int, help="Connections open at once, at most (overrides the config).")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for each reply."
)
@click.option("--max-attempts", type=int, help="Connections to try before deferring (overrides the config).")
@click.option("--queue", "queue_url", metavar="URL",
              help="Write deferred recipients to this queue (sqlite:///path/queue.db) for `queue run`.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Append the JSON decision log here.")
@click.option("-v", "--verbose", is_flag=True, help="Write the JSON decision log to stderr.")
@click.argument("message", metavar="FILE.eml|-")
def send(
    host: str | None, port: int | None, tls: str | None, user: str | None, password_env: str,
    config_file: str | None, profile: str | None, sender: str | None, recipients: tuple[str, ...],
    max_connections: int | None, timeout: float, max_attempts: int | None, queue_url: str | None,
    log_file: str | None, verbose: bool, message: str,
) -> None:
    """Send one message (a file, or - for stdin) and print each recipient's outcome.

    Give the server with --host/--port, or a --profile of the configuration.
    Exit status: 0 when every recipient was delivered or deferred, 1 when any
    failed, 2 on bad input.
    """
    from ..config import Config, load_config

    data = _read_message(message)
    try:
        config = load_config(config_file) if config_file else Config()
        limits = Limits(max_connections=max_connections) if max_connections is not None else None
        if queue_url is not None:
            config = dataclasses.replace(config, queue_url=queue_url)
        if profile is not None:
            mailer = Mailer.from_profile(config, profile, limits=limits)
            if mailer.endpoint.username is not None and mailer.endpoint.password is None:
                fail(f"profile {profile}: the password variable is not set")
        else:
            if host is None:
                fail("give --host (and --port), or --profile NAME with --config FILE")
            password = None
            if user is not None:
                password = os.environ.get(password_env)
                if password is None:
                    fail(f"--user given, but the environment variable {password_env} is not set")
            mailer = Mailer(
                host, port if port is not None else 587, username=user, password=password,
                tls=tls or "starttls", timeout=timeout, limits=limits, config=config,
            )
        if max_attempts is not None:
            mailer.policy = dataclasses.replace(mailer.policy, max_attempts=max_attempts)
    except (ConfigError, QueueError) as exc:
        fail(str(exc).replace("\n", "; "))
    _open_log(log_file, to_stderr=verbose)
    try:
        result = asyncio.run(_send(data, mailer, sender=sender, recipients=list(recipients) or None))
    except (ConfigError, MessageError, QueueError) as exc:
        fail(str(exc))

    console = Console()
    if console.is_terminal:
        console.print(_outcome_table(result))
    else:
        for outcome in result.outcomes.values():
            click.echo(outcome_line(outcome))
    if result.failed:
        sys.exit(1)


# -- demo ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """What the demo counts from the decision log as it goes."""

    cap_changes: list[tuple[int, int]] = field(default_factory=list)
    events: int = 0
    started: float = field(default_factory=time.monotonic)

    def record(self, event: str, kw: dict[str, Any]) -> None:
        self.events += 1
        if event in (events.CAP_LOWERED, events.CAP_RAISED):
            self.cap_changes.append((kw["previous_cap"], kw["connections_cap"]))


def _said(kw: dict[str, Any]) -> str:
    """An event's evidence as people read it."""
    if kw.get("code") is not None:
        return f"{kw['code']} {kw.get('text') or ''}".rstrip()
    if kw.get("failure"):
        return f"{kw['failure']} during {kw.get('phase')}: {kw.get('text') or ''}".rstrip(": ")
    return ""


def render_event(event: str, kw: dict[str, Any]) -> tuple[str, str] | None:
    """One decision as (line, rich style), or None for events not worth a line."""
    msg = kw.get("message_id") or "?"
    attempt = kw.get("attempt")
    conns = f"[{kw.get('connections_active')}/{kw.get('connections_cap')} connections]"
    match event:
        case events.MESSAGE_DELIVERED:
            how = "assumed delivered" if kw.get("assumed") else "delivered"
            rcpts = ", ".join(kw.get("recipients", []))
            return f"{how:<10} {msg} attempt {attempt} to {rcpts} {conns}", "green"
        case events.RETRY_SCHEDULED:
            n = len(kw.get("recipients", []))
            return (
                f"{'retry':<10} {msg} attempt {attempt} ({n} rcpt): {_said(kw)} [{kw.get('category')}]"
                f" -> again in {kw.get('delay_s')}s {conns}",
                "yellow",
            )
        case events.RECIPIENT_DEFERRED:
            at = kw.get("next_attempt_at")
            when = datetime.fromtimestamp(at).strftime("%H:%M:%S") if isinstance(at, float | int) else "?"
            return (
                f"{'deferred':<10} {kw.get('recipient')} until {when}: {_said(kw)} [{kw.get('category')}]",
                "cyan",
            )
        case events.RECIPIENT_FAILED:
            expired = " (expired)" if kw.get("expired") else ""
            return (
                f"{'failed':<10} {kw.get('recipient')}{expired}: {_said(kw)} [{kw.get('category')}]",
                "red",
            )
        case events.CONNECTION_LOST:
            dup = " (possible duplicate)" if kw.get("possible_duplicate") else ""
            return f"{'lost':<10} {msg} attempt {attempt}: {_said(kw)}{dup}", "magenta"
        case events.CAP_LOWERED | events.CAP_RAISED:
            verb = "lowered" if event == events.CAP_LOWERED else "raised"
            why = f" after {_said(kw)}" if kw.get("code") is not None else ""
            return (
                f"{'cap':<10} {verb} {kw.get('previous_cap')} -> {kw.get('connections_cap')}{why}"
                f" ({kw.get('connections_active')} open)",
                "bold",
            )
    return None  # send_completed: the summary says it


class _Decisions:
    """A :class:`~smtpretry.events.Logger` that shows each decision as a line
    for people, counts what the summary needs, and, with ``forward``, passes the
    event on to the JSON log (the logger of the moment, asked at each event)."""

    def __init__(
        self, tally: _Tally, show: Callable[[str, str], None] | None, forward: bool,
        bound: dict[str, Any] | None = None,
    ) -> None:
        self._tally = tally
        self._show = show
        self._forward = forward
        self._bound = bound or {}

    def bind(self, **kw: Any) -> _Decisions:
        return _Decisions(self._tally, self._show, self._forward, {**self._bound, **kw})

    def info(self, event: str, **kw: Any) -> None:
        self._handle("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._handle("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._handle("error", event, kw)

    def _handle(self, level: str, event: str, kw: dict[str, Any]) -> None:
        if self._forward:
            getattr(get_logger(**self._bound), level)(event, **kw)
        self._tally.record(event, kw)
        if self._show is not None:
            rendered = render_event(event, {**self._bound, **kw})
            if rendered is not None:
                line, style = rendered
                self._show(f"{time.monotonic() - self._tally.started:6.3f}s {line}", style)


def _batch(messages: int, recipients: int, rng: random.Random) -> list[EmailMessage]:
    """Messages with unique recipients: about 4% ``full...`` (over quota, deferred),
    3% ``big...`` (too large, failed), the rest ordinary."""
    batch = []
    for i in range(messages):
        rcpts = []
        for j in range(recipients):
            roll = rng.random()
            kind = "full" if roll < 0.04 else "big" if roll < 0.07 else "user"
            rcpts.append(f"{kind}{i}.{j}@example.com")
        msg = EmailMessage()
        msg["From"] = "demo@example.org"
        msg["To"] = ", ".join(rcpts)
        msg["Subject"] = f"smtpretry demo message {i}"
        msg["Message-ID"] = f"<demo-{i}@smtpretry.invalid>"
        msg.set_content(f"Demo message {i}.\n")
        batch.append(msg)
    return batch


@dataclass(frozen=True, slots=True)
class _DemoRun:
    results: list[SendResult]
    server: DemoServer
    duration_s: float


async def _run_demo(
    batch: list[EmailMessage], *, server_limit: int, cap: int, seed: int, logger: Logger,
    advance: Callable[[], None],
) -> _DemoRun:
    started = time.monotonic()
    async with DemoServer(max_connections=server_limit) as server:
        mailer = Mailer(
            "127.0.0.1", server.port, tls="none", timeout=10.0,
            policy=RetryPolicy(backoff_base=0.05, backoff_cap=1.0, max_attempts=8),
            limits=Limits(max_connections=cap), logger=logger, rng=random.Random(seed),
        )
        gate = asyncio.Semaphore(20)

        async def one(message: EmailMessage) -> SendResult:
            async with gate:
                result = await mailer.send(message)
            advance()
            return result

        async with mailer:
            results = await asyncio.gather(*(one(m) for m in batch))
    return _DemoRun(list(results), server, time.monotonic() - started)


def _check(run: _DemoRun, batch: list[EmailMessage], server_limit: int) -> tuple[list[str], str]:
    """Problems found (none when the run is consistent), and the copies verdict."""
    problems: list[str] = []
    delivered: set[str] = set()
    for message, result in zip(batch, run.results, strict=True):
        sent = [a.strip() for a in str(message["To"]).split(",")]
        if list(result.outcomes) != sent:
            problems.append(f"{message['Message-ID']}: outcomes for {list(result.outcomes)}, sent to {sent}")
        for rcpt, o in result.outcomes.items():
            if o.status is Status.DELIVERED:
                delivered.add(rcpt)
            scripted = rcpt_reply(rcpt)
            expected = (
                {Status.DELIVERED, Status.DEFERRED} if scripted is None
                else {Status.DEFERRED} if scripted.startswith("422 4.2.2")
                else {Status.FAILED}
            )
            if o.status not in expected:
                problems.append(f"{rcpt}: {o.status.value}, expected {' or '.join(sorted(expected))}")
    copies = run.server.copies
    duplicated = sorted(r for r, n in copies.items() if n > 1)
    missing = sorted(delivered - copies.keys())
    unexpected = sorted(copies.keys() - delivered)
    if duplicated:
        problems.append(f"{len(duplicated)} recipients got more than one copy: {', '.join(duplicated[:5])}")
    if missing:
        problems.append(f"{len(missing)} delivered recipients have no copy: {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} recipients got a copy not reported delivered")
    if run.server.max_active > server_limit:
        problems.append(f"the server saw {run.server.max_active} sessions, over its limit {server_limit}")
    verdict = "exactly 1" if not (duplicated or missing or unexpected) else (
        f"NOT exactly 1 ({len(duplicated)} duplicated, {len(missing)} missing, {len(unexpected)} unexpected)"
    )
    return problems, verdict


def _cap_changes(changes: list[tuple[int, int]], configured: int) -> str:
    if not changes:
        return f"none (stayed at {configured})"
    moves = [f"{a} -> {b}" for a, b in changes]
    shown = ", ".join(moves[:8]) + (", ..." if len(moves) > 8 else "")
    return f"{len(moves)}: {shown}"


@cli.command(short_help="Send a batch through an embedded server that throttles like an ISP.")
@click.option("--messages", type=click.IntRange(min=1), default=200, show_default=True,
              help="Messages to send.")
@click.option("--recipients", type=click.IntRange(min=1), default=3, show_default=True,
              help="Recipients per message.")
@click.option("--server-limit", type=click.IntRange(min=1), default=3, show_default=True,
              help="Concurrent connections the demo server takes before it answers 421.")
@click.option("--cap", type=click.IntRange(min=1), default=8, show_default=True,
              help="The client's configured connection cap (Limits.max_connections).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the batch and the jitter.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Append the JSON decision log here.")
@click.option("--quiet", is_flag=True, help="Show the summary only, not each decision.")
def demo(
    messages: int, recipients: int, server_limit: int, cap: int, seed: int, log_file: str | None,
    quiet: bool,
) -> None:
    """Send a batch through an embedded server that throttles like an ISP.

    The server takes SERVER_LIMIT connections at once and answers 421 to the
    rest; some mailboxes are over quota (422 4.2.2, deferred) and some refuse
    the size (422 4.3.4, failed). Every decision is shown as it is taken; the
    summary checks the figures at the server. Exit status 0 when the run is
    consistent: every recipient accounted for, one copy per delivered one.
    """
    console = Console(highlight=False)
    _open_log(log_file, to_stderr=False)

    def show(line: str, style: str) -> None:
        if console.is_terminal:
            console.print(line, style=style, markup=False, soft_wrap=True)
        else:
            click.echo(line)

    tally = _Tally()
    logger = _Decisions(tally, None if quiet else show, forward=log_file is not None)
    batch = _batch(messages, recipients, random.Random(seed))
    progress = Progress(
        TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not console.is_terminal, transient=True,
    )
    with progress:
        task = progress.add_task("sending", total=len(batch))
        tally.started = time.monotonic()
        run = asyncio.run(_run_demo(
            batch, server_limit=server_limit, cap=cap, seed=seed, logger=logger,
            advance=lambda: progress.advance(task),
        ))

    problems, copies = _check(run, batch, server_limit)
    outcomes = [o for r in run.results for o in r.outcomes.values()]
    count = {s: sum(1 for o in outcomes if o.status is s) for s in Status}
    # One 421 per attempt at most: an attempt ends with the session a 421 closes.
    seen_421 = sum(
        len({a.attempt for o in r.outcomes.values() for a in o.history
             if getattr(a.evidence, "code", None) == 421})
        for r in run.results
    )
    retries = sum(
        max((a.attempt for o in r.outcomes.values() for a in o.history), default=1) - 1 for r in run.results
    )
    rows = [
        ("messages", str(len(run.results))),
        ("recipients", str(len(outcomes))),
        ("delivered", str(count[Status.DELIVERED])),
        ("deferred", str(count[Status.DEFERRED])),
        ("failed", str(count[Status.FAILED])),
        ("421s seen", f"{seen_421} (the server refused {run.server.refused} connections)"),
        ("retries", str(retries)),
        ("cap changes", _cap_changes(tally.cap_changes, cap)),
        ("max concurrent sessions",
         f"{run.server.max_active} (server limit {server_limit}, client cap {cap})"),
        ("copies per delivered recipient", copies),
        ("duration", f"{run.duration_s:.2f}s"),
        ("consistent", "yes" if not problems else "NO"),
    ]
    _summary(rows, console, title="smtpretry demo")
    if problems:
        for problem in problems:
            click.echo(f"smtpretry: inconsistent: {problem}", err=True)
        sys.exit(1)


# -- config ----------------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Check a configuration file."""


def _fmt_seconds(value: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="Also show the settings this host gets (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_check(file: str, hosts: tuple[str, ...], as_json: bool) -> None:
    """Check FILE and print the effective settings per destination.

    Exit status 2, with one line per problem, when the file is not valid.
    """
    import json as json_module

    from ..config import load_config

    try:
        config = load_config(file)
    except ConfigError as exc:
        for problem in str(exc).splitlines():
            click.echo(f"smtpretry: error: {problem}", err=True)
        sys.exit(2)
    chosen = [("[defaults]", config.settings_of(None))]
    chosen += [(rule.key, config.settings_of(rule.key)) for rule in config.rules]
    chosen += [(f"profile {n}", config.settings_for(p.host, p.port)) for n, p in config.profiles.items()]
    chosen += [(host, config.settings_for(host)) for host in hosts]
    rows = []
    for label, s in chosen:
        rows.append({
            "destination": label,
            "rule": s.rule,
            "max_connections": s.limits.max_connections,
            "max_messages_per_connection": s.limits.max_messages_per_connection,
            "max_messages_per_minute": s.limits.max_messages_per_minute,
            "backoff": f"{_fmt_seconds(s.policy.backoff_base)}..{_fmt_seconds(s.policy.backoff_cap)}",
            "max_attempts": s.policy.max_attempts,
            "defer_schedule": ", ".join(_fmt_seconds(v) for v in s.policy.defer_schedule),
            "max_lifetime": _fmt_seconds(s.policy.max_lifetime),
            "delivery": s.policy.delivery.value,
        })
    if as_json:
        click.echo(json_module.dumps({"file": file, "queue_url": config.queue_url, "destinations": rows},
                                     indent=2))
        return
    console = Console()
    table = Table(title=f"{file}: valid")
    columns = ["destination", "rule", "max_connections", "max_messages_per_minute", "backoff",
               "max_attempts", "defer_schedule", "max_lifetime", "delivery"]
    for name in columns:
        table.add_column(name.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if row[c] is None else str(row[c])) for c in columns))
    console.print(table)
    if config.queue_url:
        console.print(Text(f"queue: {config.queue_url}"))


def _register() -> None:
    from .logs import logs_group
    from .queue import queue_group

    cli.add_command(queue_group)
    cli.add_command(logs_group)


_register()
