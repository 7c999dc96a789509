"""``smtpretry send``: send one message and print each recipient's outcome.

The command is thin: it parses the command line, calls :class:`~smtpretry.Mailer` (or the
:class:`~smtpretry.Router` when the configuration's routes send each recipient), and
renders what it returns, a table on a terminal and one line per recipient otherwise. Exit
status 0 when every recipient was delivered or deferred, 1 when any failed, 2 on bad input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.parser
import email.policy
import os
import sys
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError, MessageError, QueueError
from ..mailer import Mailer
from ..policy import Limits
from ..result import Outcome, SendResult, Status
from ..router import Router
from ._errors import fail
from ._logfile import open_log

__all__ = ["outcome_line", "send_command"]


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
    data: bytes, mailer: Mailer | Router, *, sender: str | None, recipients: list[str] | None
) -> SendResult:
    async with mailer:
        return await mailer.send(data, sender=sender, recipients=recipients)


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
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="SMTPRETRY_CONFIG",
              help="Configuration file (limits and retry policy per destination, profiles).")
@click.option("--profile", help="Connect as [profiles.NAME] of the configuration says.")
@click.option("--routes/--no-routes", "use_routes", default=None,
              help="Send each recipient by its domain's route ([routes] of the configuration): the "
                   "default when the configuration has routes and neither --host nor --profile is given.")
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
def send_command(
    host: str | None, port: int | None, tls: str | None, user: str | None, password_env: str,
    config_file: str | None, profile: str | None, use_routes: bool | None, sender: str | None,
    recipients: tuple[str, ...],
    max_connections: int | None, timeout: float, max_attempts: int | None, queue_url: str | None,
    log_file: str | None, verbose: bool, message: str,
) -> None:
    """Send one message (a file, or - for stdin) and print each recipient's outcome.

    Give the server with --host/--port, or a --profile of the configuration, or
    let the configuration's [routes] send each recipient by its domain.
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
        routed = use_routes if use_routes is not None else (
            bool(config.routes) and host is None and profile is None)
        if routed and (host is not None or profile is not None):
            fail("--routes sends by the configuration's [routes]: give no --host or --profile with it")
        if routed and not config.routes:
            fail("--routes: give --config FILE with a [routes] table")
        mailer: Mailer | Router
        if routed:
            # Overrides apply where the file's [defaults] would (a rule still wins for its key).
            if limits is not None:
                config = dataclasses.replace(config, limits=dataclasses.replace(
                    config.limits, max_connections=limits.max_connections))
            if max_attempts is not None:
                config = dataclasses.replace(config, policy=dataclasses.replace(
                    config.policy, max_attempts=max_attempts))
            mailer = Router(config)
        elif profile is not None:
            mailer = Mailer.from_profile(config, profile, limits=limits)
            if mailer.endpoint.username is not None and mailer.endpoint.password is None:
                fail(f"profile {profile}: the password variable is not set")
        else:
            if host is None:
                fail("give --host (and --port), or --profile NAME with --config FILE, or --config FILE "
                     "with [routes]")
            password = None
            if user is not None:
                password = os.environ.get(password_env)
                if password is None:
                    fail(f"--user given, but the environment variable {password_env} is not set")
            mailer = Mailer(
                host, port if port is not None else 587, username=user, password=password,
                tls=tls or "starttls", timeout=timeout, limits=limits, config=config,
            )
        if max_attempts is not None and isinstance(mailer, Mailer):
            mailer.policy = dataclasses.replace(mailer.policy, max_attempts=max_attempts)
    except (ConfigError, QueueError) as exc:
        fail(str(exc).replace("\n", "; "))
    open_log(log_file, to_stderr=verbose)
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
