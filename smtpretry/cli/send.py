"""``smtpretry send``: send one message and print each recipient's outcome.

The command is thin: it parses the command line, finds the configuration and the queue
(``_resolve.py``: ``--config`` over ``SMTPRETRY_CONFIG``; ``--queue`` over
``SMTPRETRY_QUEUE`` over ``[queue] url``), calls :class:`~smtpretry.Mailer` (or the
:class:`~smtpretry.Router` when the configuration's routes send each recipient), and
renders what it returns: a table on a terminal, one line per recipient otherwise, one JSON
object with ``--json``. Deferred recipients are queued only when a queue is named; the
default queue is for the ``queue`` commands.

Exit status (:func:`exit_status`): 0 when every recipient was delivered or durably queued;
75 (``EX_TEMPFAIL``, as sendmail) when a recipient was deferred and not queued, so nothing
will retry it; 1 when any recipient failed (over 75); 2 on bad input, before anything is
sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.parser
import email.policy
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import events
from .._logging import classified_keys, evidence_keys, get_logger
from .._time import iso
from ..errors import ConfigError, MessageError, QueueError
from ..events import K
from ..logs.parse import Record
from ..mailer import Mailer
from ..policy import Limits
from ..result import Outcome, SendResult, Status
from ..router import Router
from ._errors import fail
from ._logfile import log_options, open_log
from ._resolve import QUEUE_ENV, Resolution, config_option, resolve
from .render import line

__all__ = ["EX_TEMPFAIL", "exit_status", "outcome_line", "send_command"]

EX_TEMPFAIL = 75
"""sysexits.h: a temporary failure; the same message may go through later (sendmail's code
for mail it could not deliver and did not queue)."""

NOT_QUEUED = "not queued: will not be retried"


def exit_status(result: SendResult, *, queued: bool) -> int:
    """1 when a recipient failed; else 75 when one was deferred and not ``queued``; else 0."""
    if result.failed:
        return 1
    if result.deferred and not queued:
        return EX_TEMPFAIL
    return 0


def _iso(epoch: float) -> str:
    return iso(epoch)


def _evidence(outcome: Outcome) -> str:
    """The last thing the server said (or the failure that stood for it)."""
    if outcome.reply is not None:
        return str(outcome.reply)
    return str(outcome.failure) if outcome.failure is not None else ""


def outcome_line(outcome: Outcome, *, queued: bool = True) -> str:
    """One recipient's end as one line: ``deferred a@b until <iso>: 422 4.2.2 ...``; a
    deferred recipient that was not ``queued`` says ``not queued: will not be retried``."""
    who = outcome.recipient
    match outcome.status:
        case Status.DELIVERED:
            line = f"delivered {who}"
        case Status.DEFERRED if not queued:
            line = f"deferred {who} ({NOT_QUEUED}): {_evidence(outcome)}"
        case Status.DEFERRED:
            at = _iso(outcome.next_attempt_at) if outcome.next_attempt_at is not None else "later"
            line = f"deferred {who} until {at}: {_evidence(outcome)}"
        case Status.FAILED:
            line = f"failed {who}{' (expired)' if outcome.expired else ''}: {_evidence(outcome)}"
    return line + (" (possible duplicate)" if outcome.possible_duplicate else "")


_STATUS_STYLE = {Status.DELIVERED: "green", Status.DEFERRED: "yellow", Status.FAILED: "red"}


def _outcome_table(result: SendResult, *, queued: bool) -> Table:
    table = Table()
    table.add_column("recipient", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("reply", ratio=1)
    table.add_column("next attempt", no_wrap=True)
    for o in result.outcomes.values():
        status = o.status.value
        if o.status is Status.DEFERRED and not queued:
            status += " (not queued)"
        status += " (possible duplicate)" if o.possible_duplicate else ""
        comes_back = o.next_attempt_at is not None and queued
        # Text, not markup: addresses and server replies may hold "[...]".
        table.add_row(
            Text(o.recipient),
            Text(status, style=_STATUS_STYLE[o.status]),
            str(o.attempts),
            Text("" if o.status is Status.DELIVERED else _evidence(o)),
            _iso(o.next_attempt_at) if comes_back and o.next_attempt_at else "",
        )
    return table


def _outcome_json(o: Outcome, *, queued: bool) -> dict[str, Any]:
    """A recipient's outcome in the log's words (``phase``, ``code``, ``category``, ...)."""
    last = o.history[-1] if o.history else None
    keys: dict[str, Any] = {
        "recipient": o.recipient,
        "status": o.status.value,
        "queued": o.status is Status.DEFERRED and queued,
        "attempts": o.attempts,
        "next_attempt_at": o.next_attempt_at if queued else None,
    }
    if last is not None:
        keys.update(evidence_keys(last.evidence))
    else:
        keys.update(phase=None, code=None, enhanced=None, text=None, failure=None)
    keys.update(classified_keys(o.classification))
    keys.update(possible_duplicate=o.possible_duplicate, expired=o.expired, assumed=o.assumed)
    return keys


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


# What a person watching a send on a terminal is shown as it happens: why it waits.
_PROGRESS = frozenset({events.RETRY_SCHEDULED, events.CONNECTION_LOST, events.CAP_LOWERED,
                       events.RATE_LOWERED})


class _Watch:
    """A :class:`~smtpretry._logging.Logger` for ``Mailer(logger=...)``: every event goes
    on to the JSON log (the logger of the moment, asked at each event), and those that
    explain a wait (a retry: the attempt, the reason, the delay; a lost connection; a
    lowered cap or pace) are shown to the person at the terminal, as ``logs tail`` shows
    them, with the seconds since the send began."""

    def __init__(self, show: Callable[[Text], None] | None, started: float,
                 bound: dict[str, Any] | None = None) -> None:
        self._show = show
        self._started = started
        self._bound = bound or {}

    def bind(self, **kw: Any) -> _Watch:
        return _Watch(self._show, self._started, {**self._bound, **kw})

    def info(self, event: str, **kw: Any) -> None:
        self._handle("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._handle("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._handle("error", event, kw)

    def _handle(self, level: str, event: str, kw: dict[str, Any]) -> None:
        getattr(get_logger(**self._bound), level)(event, **kw)
        if self._show is not None and event in _PROGRESS:
            record = Record(event, {K.EVENT: event, **self._bound, **kw}, None, "<send>", 0, 0)
            self._show(line(record, lead=f"{time.monotonic() - self._started:6.3f}s"))


async def _send(
    data: bytes, mailer: Mailer | Router, *, sender: str | None, recipients: list[str] | None
) -> SendResult:
    async with mailer:
        return await mailer.send(data, sender=sender, recipients=recipients)


def _check_host(host: str) -> None:
    if not host.strip():
        fail("--host: expected a host name, got ''")
    try:
        host.encode("idna")
    except UnicodeError as exc:
        fail(f"--host {host!r}: not a host name ({exc})")


def _profile_mailer(
    ctx: click.Context, res: Resolution, profile: str, *, given: dict[str, object], **kw: Any
) -> Mailer:
    """The Mailer of ``--profile``: an unknown profile is said first, then flags that
    would change where or as whom it connects, then an unset password variable."""
    if res.config_path is None:
        fail(f"--profile {profile}: no configuration to find it in (give --config FILE or set "
             "SMTPRETRY_CONFIG)")
    try:
        res.config.profile(profile)
    except ConfigError as exc:
        fail(str(exc))
    # A profile is where, how and as whom to connect, together: a --host with the
    # profile's credentials could send its password to another server.
    conflicts = [flag for flag, value in given.items() if value is not None]
    if ctx.get_parameter_source("password_env") is ParameterSource.COMMANDLINE:
        conflicts.append("--password-env")
    if conflicts:
        fail(f"--profile {profile} names the server, its TLS and its login; it cannot be combined "
             f"with {', '.join(conflicts)} (give --profile, or the flags without it)")
    return Mailer.from_profile(res.config, profile, **kw)


@click.command("send", short_help="Send one message and print each recipient's outcome.")
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
@config_option
@click.option("--profile", help="Connect as [profiles.NAME] of the configuration says "
                                "(not with --host, --port, --tls, --user).")
@click.option("--routes/--no-routes", "use_routes", default=None,
              help="Send each recipient by its domain's route ([routes] of the configuration): the "
                   "default when the configuration has routes and neither --host nor --profile is given.")
@click.option("--from", "sender", metavar="ADDRESS", help="Envelope sender (default: From/Sender header).")
@click.option(
    "--to", "recipients", metavar="ADDRESS", multiple=True,
    help="Envelope recipient, repeatable (default: To, Cc and Bcc headers).",
)
@click.option("--max-connections", type=int, help="Connections open at once, at most (overrides the config).")
@click.option("--timeout", type=float, default=None,
              help="Seconds to wait for each reply [default: the profile's, else 60].")
@click.option("--max-attempts", type=int, help="Connections to try before deferring (overrides the config).")
@click.option(
    "--queue", "queue_url", metavar="URL",
    help=f"Write deferred recipients to this queue (sqlite:///path/queue.db) for `queue run` "
         f"[default: ${QUEUE_ENV}, else [queue] url of the configuration, else none: not queued].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every recipient's outcome.")
@log_options
@click.argument("message", metavar="FILE.eml|-")
@click.pass_context
def send_command(
    ctx: click.Context, host: str | None, port: int | None, tls: str | None, user: str | None,
    password_env: str, config_path: str | None, profile: str | None, use_routes: bool | None,
    sender: str | None, recipients: tuple[str, ...], max_connections: int | None, timeout: float | None,
    max_attempts: int | None, queue_url: str | None, as_json: bool, log_file: str | None, verbose: bool,
    log_format: str, message: str,
) -> None:
    """Send one message (a file, or - for stdin) and print each recipient's outcome.

    Give the server with --host/--port, or a --profile of the configuration, or
    let the configuration's [routes] send each recipient by its domain.
    Deferred recipients are queued when a queue is named (--queue, SMTPRETRY_QUEUE
    or the configuration's [queue] url). Exit status: 0 when every recipient was
    delivered or queued, 75 when one was deferred and not queued (nothing will
    retry it), 1 when any failed, 2 on bad input.
    """
    data = _read_message(message)
    res = resolve(config_path, queue_url)
    queue = res.queue_url if res.queue_named else None
    started = time.monotonic()
    stderr = Console(stderr=True)
    watch = _Watch(stderr.print if stderr.is_terminal and not verbose else None, started)
    try:
        limits = Limits(max_connections=max_connections) if max_connections is not None else None
        config = res.config
        routed = use_routes if use_routes is not None else (
            bool(config.routes) and host is None and profile is None)
        if routed and (host is not None or profile is not None):
            fail("--routes sends by the configuration's [routes]: give no --host or --profile with it")
        if routed and not config.routes:
            fail("--routes: give --config FILE with a [routes] table")
        mailer: Mailer | Router
        if routed:
            if timeout is not None:
                fail("--timeout: not with --routes (each route's profile, or the MX settings, say)")
            # Overrides apply where the file's [defaults] would (a rule still wins for its key).
            if limits is not None:
                config = dataclasses.replace(config, limits=dataclasses.replace(
                    config.limits, max_connections=limits.max_connections))
            if max_attempts is not None:
                config = dataclasses.replace(config, policy=dataclasses.replace(
                    config.policy, max_attempts=max_attempts))
            mailer = Router(config, queue=queue, logger=watch)
        elif profile is not None:
            common: dict[str, Any] = {"limits": limits, "queue": queue, "logger": watch}
            if timeout is not None:
                common["timeout"] = timeout
            mailer = _profile_mailer(ctx, res, profile, given={"--host": host, "--port": port, "--tls": tls,
                                                               "--user": user}, **common)
        else:
            if host is None:
                fail("give --host (and --port), or --profile NAME with --config FILE, or --config FILE "
                     "with [routes]")
            _check_host(host)
            password = None
            if user is not None:
                password = os.environ.get(password_env)
                if password is None:
                    fail(f"--user given, but the environment variable {password_env} is not set")
            mailer = Mailer(
                host, port if port is not None else 587, username=user, password=password,
                tls=tls or "starttls", timeout=timeout if timeout is not None else 60.0, limits=limits,
                config=config, queue=queue, logger=watch,
            )
        if max_attempts is not None and isinstance(mailer, Mailer):
            mailer.policy = dataclasses.replace(mailer.policy, max_attempts=max_attempts)
    except (ConfigError, QueueError) as exc:
        fail(str(exc).replace("\n", "; "))
    open_log(log_file, verbose=verbose, log_format=log_format)
    problem: QueueError | None = None
    try:
        result = asyncio.run(_send(data, mailer, sender=sender, recipients=list(recipients) or None))
    except (ConfigError, MessageError) as exc:
        fail(str(exc))
    except QueueError as exc:
        # The deferral could not be written (a full disk, a locked file, Redis gone), or the
        # shared backend gave no connection: what was done is on the error.
        if exc.result is None:
            fail(str(exc))
        result, problem = exc.result, exc
    queued = result.queue_id is not None and problem is None
    status = exit_status(result, queued=queued)
    if as_json:
        click.echo(json.dumps({
            "message_id": result.message_id,
            "destination": mailer.destination if isinstance(mailer, Mailer) else None,
            "profile": profile,
            "queue": mailer.queue.url if mailer.queue is not None else None,
            "queue_id": result.queue_id if queued else None,
            "queue_ids": list(result.queue_ids) if queued else [],
            "error": str(problem) if problem is not None else None,
            "exit_status": status,
            "recipients": [_outcome_json(o, queued=queued) for o in result.outcomes.values()],
        }, indent=2, ensure_ascii=False))
    else:
        console = Console()
        if console.is_terminal:
            console.print(_outcome_table(result, queued=queued))
        else:
            for outcome in result.outcomes.values():
                click.echo(outcome_line(outcome, queued=queued))
        if queued and mailer.queue is not None:
            n, ids = len(result.deferred), result.queue_ids
            held = f"{n} recipient{'s' if n != 1 else ''}"
            held += f" in {len(ids)} entries" if len(ids) > 1 else ""
            click.echo(f"queued as {', '.join(ids)} in {mailer.queue.url} ({held}; `smtpretry queue run` "
                       f"sends {'them' if len(ids) > 1 else 'it'} again)")
    if problem is not None:
        click.echo(f"smtpretry: error: {problem}", err=True)
    if result.deferred and not queued:
        n = len(result.deferred)
        why = ("see the error above" if problem is not None
               else f"no queue named: give --queue, set {QUEUE_ENV} or [queue] url")
        click.echo(f"smtpretry: warning: {n} deferred recipient{'s' if n != 1 else ''} {NOT_QUEUED} "
                   f"({why})", err=True)
    if status:
        sys.exit(status)
