"""Servers that lie or fall out of step: nothing is reported delivered that the server does
not have, and every extra copy is flagged.

Each server (``tests/liars.py``) is honest but for one lie. Six messages go through one
``Mailer`` (so a connection would be reused if it could be), and the invariant of the whole
suite is asserted at the server (``assert_nothing_false``), together with where each lie
must leave the recipients.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import pytest

from smtpretry import Category, FailureKind, Limits, Mailer, Phase, RetryPolicy, SendResult, Status
from tests.liars import Lie, LyingServer, assert_nothing_false, lying_server

POLICY = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=3)
MESSAGES = 6


def recipients(i: int) -> list[str]:
    return [f"m{i}-a@example.com", f"m{i}-b@example.com"]


def message(i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.org"
    msg["To"] = ", ".join(recipients(i))
    msg["Subject"] = f"lie {i}"
    msg["Message-ID"] = f"<{i}@lies.test>"
    msg.set_content("hello\n")
    return msg


async def send_through(server: LyingServer, *, tls: str = "none", concurrent: bool = False,
                       ) -> list[SendResult]:
    async with lying_server(server) as port, Mailer(
        "127.0.0.1", port, tls=tls, timeout=2.0, policy=POLICY, limits=Limits(max_connections=2),
    ) as mailer:
        if concurrent:
            results = list(await asyncio.gather(*(mailer.send(message(i)) for i in range(MESSAGES))))
        else:
            results = [await mailer.send(message(i)) for i in range(MESSAGES)]
    assert_nothing_false(results, server.copies, [recipients(i) for i in range(MESSAGES)])
    return results


def outcomes(results: list[SendResult]) -> list[object]:
    return [o for r in results for o in r.outcomes.values()]


@pytest.mark.parametrize(
    ("lie", "pipelining", "phase", "kind"),
    [
        (Lie.GREETING_250, False, Phase.GREETING, FailureKind.PROTOCOL),
        (Lie.SECOND_BANNER, False, Phase.EHLO, FailureKind.PROTOCOL),
        (Lie.MAIL_251, False, Phase.MAIL, FailureKind.PROTOCOL),
        (Lie.MAIL_251, True, Phase.MAIL, FailureKind.PROTOCOL),
        (Lie.DATA_250, False, Phase.DATA, FailureKind.PROTOCOL),
        (Lie.DATA_250, True, Phase.DATA, FailureKind.PROTOCOL),
        (Lie.GROUP_OUT_OF_ORDER, True, Phase.RCPT, FailureKind.PROTOCOL),
        (Lie.LINES_DISAGREE, False, Phase.RCPT, FailureKind.PROTOCOL),
        (Lie.LINES_DISAGREE, True, Phase.RCPT, FailureKind.PROTOCOL),
    ],
    ids=lambda v: str(v) if not isinstance(v, bool) else ("pipelined" if v else "one-at-a-time"),
)
async def test_a_success_code_where_it_does_not_belong_delivers_nothing(
    lie: Lie, pipelining: bool, phase: Phase, kind: FailureKind
) -> None:
    server = LyingServer(lie, pipelining=pipelining)
    results = await send_through(server)
    assert not server.copies, "nothing reached the server as a message"
    for o in outcomes(results):
        # Retried by the policy (a protocol failure is transient), then deferred: never delivered.
        assert o.status is Status.DEFERRED, o
        assert o.failure is not None and (o.failure.kind, o.failure.phase) == (kind, phase), o.failure
        assert o.attempts == POLICY.max_attempts


async def test_a_second_banner_a_moment_later_delivers_only_what_the_server_took() -> None:
    # Whether the late banner is read as the EHLO reply or arrives between commands, the
    # client never counts a recipient the server did not take.
    server = LyingServer(Lie.SECOND_BANNER_LATER)
    results = await send_through(server)
    for o in outcomes(results):
        assert o.status is not Status.FAILED


async def test_250_to_starttls_is_a_tls_failure_and_nothing_goes_in_clear() -> None:
    server = LyingServer(Lie.STARTTLS_250)
    results = await send_through(server, tls="starttls")
    assert server.after_starttls == [] or all(c.upper().startswith("QUIT") for c in server.after_starttls)
    assert not server.copies
    for o in outcomes(results):
        assert o.status is Status.FAILED
        assert o.classification.category is Category.AUTH_OR_TLS
        assert o.failure is not None and o.failure.kind is FailureKind.TLS
        assert "250" in o.failure.detail


@pytest.mark.parametrize("lie", [Lie.TWO_AFTER_DOT, Lie.TWO_AFTER_DOT_LATER])
@pytest.mark.parametrize("pipelining", [False, True], ids=["one-at-a-time", "pipelined"])
@pytest.mark.parametrize("concurrent", [False, True], ids=["in-turn", "concurrent"])
async def test_a_reply_nobody_asked_for_closes_the_connection_and_every_recipient_gets_one_copy(
    lie: Lie, pipelining: bool, concurrent: bool
) -> None:
    server = LyingServer(lie, pipelining=pipelining)
    results = await send_through(server, concurrent=concurrent)
    for o in outcomes(results):
        assert o.status is Status.DELIVERED, o.describe()
        assert server.copies[o.recipient] == 1
    # The stray reply made each connection unusable: a new one per message, none reused
    # out of step (a reused one would have paired the stray 250 with the next MAIL).
    assert server.sessions >= MESSAGES
