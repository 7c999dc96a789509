"""``smtpretry demo``: a batch through an embedded server that throttles like an ISP.

The server (``demo_server.py``, on aiosmtpd) takes a few connections at once and answers
421 to the rest; some mailboxes are over quota, some refuse the size. The first line says
so. The decisions that are not plain deliveries (every one with ``--verbose``) are shown as
they are taken, through a :class:`~smtpretry.events.Logger` handed to the Mailer with
``logger=``, so the demo needs no global logging set-up to show them; on a terminal a live
line below them counts the recipients delivered, deferred and failed and shows the cap.
``--log-file`` also writes every decision as JSON lines. The summary checks the figures at
the server and says what they mean.

With ``--routes`` the recipients of each message are at three domains on two providers
(two embedded servers), and a :class:`~smtpretry.Router` sends each domain by its route:
``one.example`` and ``two.example`` through provider A, ``three.example`` through provider B,
each provider under its own cap, one result per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import events
from .._logging import Logger, get_logger
from .._time import iso
from ..config import Config, parse_config
from ..events import K
from ..logs.parse import Record
from ..mailer import Mailer
from ..policy import Limits, RetryPolicy
from ..result import Outcome, SendResult, Status
from ..router import Router
from ._errors import fail
from ._logfile import open_log
from .demo_server import R422_OVER_QUOTA, R422_TOO_LARGE, DemoServer, rcpt_reply
from .render import line

__all__ = ["demo_command"]


@dataclass(slots=True)
class _Tally:
    """What the demo counts from the decision log as it goes: recipients by outcome, the
    cap now and each change of it."""

    cap_changes: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Per destination (a provider's ``host:port`` with ``--routes``): each (from, to)."""
    events: int = 0
    started: float = field(default_factory=time.monotonic)
    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    cap: int | None = None

    def record(self, event: str, kw: dict[str, Any]) -> None:
        """Count one event (``kw`` holds its keys and those bound, ``destination`` among them)."""
        self.events += 1
        if event in (events.CAP_LOWERED, events.CAP_RAISED):
            where = str(kw.get(K.DESTINATION, ""))
            self.cap_changes.setdefault(where, []).append((kw[K.PREVIOUS_CAP], kw[K.CONNECTIONS_CAP]))
            self.cap = kw[K.CONNECTIONS_CAP]
        elif event == events.MESSAGE_DELIVERED:
            self.delivered += len(kw[K.RECIPIENTS])
        elif event == events.RECIPIENT_DEFERRED:
            self.deferred += 1
        elif event == events.RECIPIENT_FAILED:
            self.failed += 1

    def counts(self) -> str:
        """For the live view: ``558 delivered · 24 deferred · 18 failed · cap 3 of 8``."""
        return f"{self.delivered} delivered · {self.deferred} deferred · {self.failed} failed"


def _plain(event: str, kw: dict[str, Any]) -> bool:
    """A decision the demo leaves out unless --verbose: a delivery as it should be."""
    return event == events.MESSAGE_DELIVERED and not kw.get(K.ASSUMED)


class _Decisions:
    """A :class:`~smtpretry.events.Logger` that shows decisions as lines for people (as
    ``logs tail`` shows them, with the seconds since the demo began in front): those that
    are not plain deliveries, or all with ``verbose``. It counts what the live view and the
    summary need, and, with ``forward``, passes each event on to the JSON log (the logger
    of the moment, asked at each event)."""

    def __init__(
        self, tally: _Tally, show: Callable[[Text], None] | None, forward: bool, *,
        verbose: bool = False, bound: dict[str, Any] | None = None,
    ) -> None:
        self._tally = tally
        self._show = show
        self._forward = forward
        self._verbose = verbose
        self._bound = bound or {}

    def bind(self, **kw: Any) -> _Decisions:
        return _Decisions(self._tally, self._show, self._forward, verbose=self._verbose,
                          bound={**self._bound, **kw})

    def info(self, event: str, **kw: Any) -> None:
        self._handle("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._handle("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._handle("error", event, kw)

    def _handle(self, level: str, event: str, kw: dict[str, Any]) -> None:
        if self._forward:
            getattr(get_logger(**self._bound), level)(event, **kw)
        self._tally.record(event, {**self._bound, **kw})
        if self._show is None or event == events.SEND_COMPLETED:  # the summary says it
            return
        if _plain(event, kw) and not self._verbose:
            return
        record = Record(event, {K.EVENT: event, **self._bound, **kw}, None, "<demo>", 0, 0)
        self._show(line(record, lead=f"{time.monotonic() - self._tally.started:6.3f}s"))


ROUTED_DOMAINS = ("one.example", "two.example", "three.example")
"""The domains of ``--routes``: the first two on provider A, the third on provider B."""


def _batch(messages: int, recipients: int, rng: random.Random, *, routed: bool = False) -> list[EmailMessage]:
    """Messages with unique recipients: about 4% ``full...`` (over quota, deferred),
    3% ``big...`` (too large, failed), the rest ordinary; with ``routed``, at the three
    :data:`ROUTED_DOMAINS` in turn."""
    batch = []
    for i in range(messages):
        rcpts = []
        for j in range(recipients):
            roll = rng.random()
            kind = "full" if roll < 0.04 else "big" if roll < 0.07 else "user"
            domain = ROUTED_DOMAINS[(i + j) % 3] if routed else "example.com"
            rcpts.append(f"{kind}{i}.{j}@{domain}")
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
    servers: dict[str, DemoServer]
    duration_s: float

    @property
    def server(self) -> DemoServer:
        """The one server of a run without routes."""
        return next(iter(self.servers.values()))


def _routes_config(ports: dict[str, int], cap: int) -> Config:
    """Two providers as profiles, three domains routed to them."""
    return parse_config({
        "defaults": {"max_connections": cap,
                     "retry": {"backoff_base": 0.05, "backoff_cap": 1.0, "max_attempts": 8}},
        "profiles": {name: {"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 10.0}
                     for name, port in ports.items()},
        "routes": {
            f"domain:{ROUTED_DOMAINS[0]}": {"via": "profile:provider-a"},
            f"domain:{ROUTED_DOMAINS[1]}": {"via": "profile:provider-a"},
            f"domain:{ROUTED_DOMAINS[2]}": {"via": "profile:provider-b"},
        },
    }, source="<demo>")


async def _run_demo(
    batch: list[EmailMessage], *, server_limit: int, cap: int, seed: int, logger: Logger,
    advance: Callable[[], None], routed: bool = False, delay_s: float = 0.0,
) -> _DemoRun:
    started = time.monotonic()
    names = ("provider-a", "provider-b") if routed else ("server",)
    async with contextlib.AsyncExitStack() as stack:
        servers = {n: await stack.enter_async_context(DemoServer(max_connections=server_limit,
                                                                 delay_s=delay_s))
                   for n in names}
        sender: Mailer | Router
        if routed:
            sender = Router(_routes_config({n: s.port for n, s in servers.items()}, cap), logger=logger,
                            rng=random.Random(seed))
        else:
            sender = Mailer(
                "127.0.0.1", servers["server"].port, tls="none", timeout=10.0,
                policy=RetryPolicy(backoff_base=0.05, backoff_cap=1.0, max_attempts=8),
                limits=Limits(max_connections=cap), logger=logger, rng=random.Random(seed),
            )
        gate = asyncio.Semaphore(20)

        async def one(message: EmailMessage) -> SendResult:
            async with gate:
                result = await sender.send(message)
            advance()
            return result

        async with sender:
            results = await asyncio.gather(*(one(m) for m in batch))
    return _DemoRun(list(results), servers, time.monotonic() - started)


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
    copies: dict[str, int] = {}
    for server in run.servers.values():
        for rcpt, n in server.copies.items():
            copies[rcpt] = copies.get(rcpt, 0) + n
    duplicated = sorted(r for r, n in copies.items() if n > 1)
    missing = sorted(delivered - copies.keys())
    unexpected = sorted(copies.keys() - delivered)
    if duplicated:
        problems.append(f"{len(duplicated)} recipients got more than one copy: {', '.join(duplicated[:5])}")
    if missing:
        problems.append(f"{len(missing)} delivered recipients have no copy: {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} recipients got a copy not reported delivered")
    for name, server in run.servers.items():
        if server.max_active > server_limit:
            problems.append(f"{name} saw {server.max_active} sessions, over its limit {server_limit}")
    verdict = "exactly 1" if not (duplicated or missing or unexpected) else (
        f"NOT exactly 1 ({len(duplicated)} duplicated, {len(missing)} missing, {len(unexpected)} unexpected)"
    )
    return problems, verdict


def _provider(recipient: str) -> str:
    """The provider a recipient of ``--routes`` goes to (one server without routes)."""
    return "provider-b" if recipient.endswith("@" + ROUTED_DOMAINS[2]) else "provider-a"


def _cap_changes(changes: list[tuple[int, int]], configured: int) -> str:
    """``8 -> 4 -> 2 -> 3 (2 lowered after a 421, 1 raised after 20 successes in a row)``."""
    if not changes:
        return f"none: it stayed at {configured}"
    chain = [changes[0][0]]
    for previous, new in changes:
        if previous != chain[-1]:
            chain.append(previous)  # a change the demo did not see (never, in one process)
        chain.append(new)
    shown = " -> ".join(map(str, chain[:12])) + (" -> ..." if len(chain) > 12 else "")
    downs = sum(b < a for a, b in changes)
    ups = len(changes) - downs
    parts = [f"{downs} lowered after a 421"] if downs else []
    if ups:
        parts.append(f"{ups} raised after {Limits().cap_recovery} successes in a row")
    return f"{shown} ({', '.join(parts)})"


def _why(outcomes: Sequence[Outcome], status: Status, scripted: str, meaning: str) -> str:
    """``28 (over quota, ...)``, and how many ended so for another reason (retries that ran out)."""
    ended = [o for o in outcomes if o.status is status]
    other = sum(rcpt_reply(o.recipient) != scripted for o in ended)
    return f"{len(ended)} ({meaning}" + (f"; {other} for another reason, see above" if other else "") + ")"


def _scenario(batch: list[EmailMessage], *, server_limit: int, cap: int, routed: bool) -> str:
    """The first line: what is about to happen."""
    rcpts = [a.strip() for m in batch for a in str(m["To"]).split(",")]
    full = sum(rcpt_reply(r) == R422_OVER_QUOTA for r in rcpts)
    big = sum(rcpt_reply(r) == R422_TOO_LARGE for r in rcpts)
    where = (
        f"a Router, {ROUTED_DOMAINS[0]} and {ROUTED_DOMAINS[1]} to provider A, {ROUTED_DOMAINS[2]} to "
        f"provider B (two local servers that each allow {server_limit} connections at once, 421 to "
        f"more), with a client cap of {cap} connections per provider"
        if routed else
        f"a local server that allows {server_limit} connections at once (421 to more), with a client "
        f"cap of {cap} connections"
    )
    return (
        f"Scenario: {len(batch)} messages to {len(rcpts)} recipients through {where}; {full} recipients "
        f"are over quota (full*: 422 4.2.2, deferred) and {big} get a message too large for their "
        f"mailbox (big*: 422 4.3.4, failed)."
    )


def _caps(run: _DemoRun, changes: dict[str, list[tuple[int, int]]], configured: int) -> str:
    """Each provider's cap changes (the one server's, without routes)."""
    if len(run.servers) == 1:
        return _cap_changes([c for cs in changes.values() for c in cs], configured)
    ports = {f"127.0.0.1:{s.port}": name for name, s in run.servers.items()}
    return "; ".join(f"{ports.get(where, where)}: {_cap_changes(cs, configured)}"
                     for where, cs in sorted(changes.items(), key=lambda kv: ports.get(kv[0], kv[0]))
                     ) or _cap_changes([], configured)


@click.command("demo", short_help="Send a batch through an embedded server that throttles like an ISP.")
@click.option("--messages", type=click.IntRange(min=1), default=200, show_default=True,
              help="Messages to send.")
@click.option("--recipients", type=click.IntRange(min=1), default=3, show_default=True,
              help="Recipients per message.")
@click.option("--server-limit", type=click.IntRange(min=1), default=3, show_default=True,
              help="Concurrent connections the demo server takes before it answers 421.")
@click.option("--cap", type=click.IntRange(min=1), default=8, show_default=True,
              help="The client's configured connection cap (Limits.max_connections).")
@click.option("--server-delay", "delay_s", type=click.FloatRange(min=0), default=0.02, show_default=True,
              help="Seconds the server takes to accept each message.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the batch and the jitter.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Append the JSON decision log here.")
@click.option("--verbose", is_flag=True, help="Show every decision, plain deliveries too.")
@click.option("--quiet", is_flag=True, help="Show the scenario and the summary only, no decision.")
@click.option("--routes", "routed", is_flag=True,
              help="Recipients at three domains on two providers (two servers), sent by a Router.")
def demo_command(
    messages: int, recipients: int, server_limit: int, cap: int, delay_s: float, seed: int,
    log_file: str | None, verbose: bool, quiet: bool, routed: bool,
) -> None:
    """Send a batch through an embedded server that throttles like an ISP.

    The server takes SERVER_LIMIT connections at once and answers 421 to the
    rest; some mailboxes are over quota (422 4.2.2, deferred) and some refuse
    the size (422 4.3.4, failed). With --routes, a Router sends three domains
    to two such servers (providers). The decisions other than plain deliveries are
    shown as they are taken (--verbose: all of them), under a live view of the
    counts and the cap on a terminal; the summary checks the figures at the
    server. Exit status 0 when the run is consistent: every recipient accounted
    for, one copy per delivered one.
    """
    if verbose and quiet:
        fail("give --verbose or --quiet, not both")
    console = Console(highlight=False)
    open_log(log_file)

    def say(text: str | Text) -> None:
        if console.is_terminal:
            console.print(text, soft_wrap=True)
        else:
            click.echo(text.plain if isinstance(text, Text) else text)

    tally = _Tally()
    logger = _Decisions(tally, None if quiet else say, forward=log_file is not None, verbose=verbose)
    batch = _batch(messages, recipients, random.Random(seed), routed=routed)
    say(Text(_scenario(batch, server_limit=server_limit, cap=cap, routed=routed), style="bold"))
    began = time.time()
    if not quiet:
        which = "every decision" if verbose else "the decisions other than plain deliveries (--verbose: all)"
        say(Text(f"Shown: {which}, at seconds since {iso(began)}.", style="dim"))
    progress = Progress(
        TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TextColumn("messages ·"),
        TextColumn("{task.fields[counts]} · cap {task.fields[cap]} of " + str(cap)), TimeElapsedColumn(),
        console=console, disable=not console.is_terminal, transient=True,
    )

    def advance() -> None:
        progress.update(task, advance=1, counts=tally.counts(),
                        cap=tally.cap if tally.cap is not None else cap)

    with progress:
        task = progress.add_task("sending", total=len(batch), counts=tally.counts(), cap=cap)
        tally.started = time.monotonic()
        run = asyncio.run(_run_demo(
            batch, server_limit=server_limit, cap=cap, seed=seed, logger=logger, advance=advance,
            routed=routed, delay_s=delay_s,
        ))

    problems, copies = _check(run, batch, server_limit)
    outcomes = [o for r in run.results for o in r.outcomes.values()]
    count = {s: sum(1 for o in outcomes if o.status is s) for s in Status}
    # One 421 per attempt at most: an attempt ends with the session a 421 closes. A routed
    # message is one send per provider, each numbering its attempts from 1.
    seen_421 = sum(
        len({(_provider(o.recipient), a.attempt) for o in r.outcomes.values() for a in o.history
             if getattr(a.evidence, "code", None) == 421})
        for r in run.results
    )
    retries = sum(
        max((a.attempt for o in r.outcomes.values() for a in o.history), default=1) - 1 for r in run.results
    )
    consistent = (
        "yes: every recipient ended delivered, deferred or failed as the server scripted it, and each "
        "delivered recipient got exactly one copy, counted at the server"
        if not problems else f"NO: {len(problems)} problem(s), listed on stderr"
    )
    rows = [
        ("messages", str(len(run.results))),
        ("recipients", str(len(outcomes))),
        ("delivered", str(count[Status.DELIVERED])),
        ("deferred", _why(outcomes, Status.DEFERRED, R422_OVER_QUOTA,
                          "over quota, 422 4.2.2: a queue would send them later")),
        ("failed", _why(outcomes, Status.FAILED, R422_TOO_LARGE,
                        "message too large for the mailbox, 422 4.3.4: never sent again")),
        ("421s seen", f"{seen_421} (the server{'s' if routed else ''} refused "
                      f"{sum(s.refused for s in run.servers.values())} connections)"),
        ("retries", f"{retries} (each on a new connection, after a backoff)"),
        ("cap changes", _caps(run, tally.cap_changes, cap)),
        ("max concurrent sessions",
         ", ".join(f"{n} {s.max_active}" if routed else str(s.max_active) for n, s in run.servers.items())
         + f" (server limit {server_limit}, client cap {cap}{' per provider' if routed else ''})"),
        ("copies per delivered recipient", f"{copies} (counted at the server)"),
        ("duration", f"{run.duration_s:.2f} s, from {iso(began)}"),
        ("consistent", consistent),
    ]
    _summary(rows, console, title="smtpretry demo: the result")
    if problems:
        for problem in problems:
            click.echo(f"smtpretry: inconsistent: {problem}", err=True)
        sys.exit(1)


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
