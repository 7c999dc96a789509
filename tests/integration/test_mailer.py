"""Mailer end to end against scripted aiosmtpd servers on 127.0.0.1.

Assertions are made at the server (copies per recipient, concurrent sessions)
and on the captured decision log.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import Counter

import pytest
from structlog.testing import capture_logs

from smtpretry import (
    Action,
    Category,
    Delivery,
    FailureKind,
    Limits,
    Mailer,
    Phase,
    RetryPolicy,
    Status,
)
from tests.messages import message
from tests.servers import (
    ACCEPT_DROP,
    DROP,
    R421_SHUTDOWN,
    R421_TOO_MANY,
    R422_OVER_QUOTA,
    R422_TOO_LARGE,
    R450_GREYLISTED,
    R452_TOO_MANY_RCPTS,
    R550_UNKNOWN,
    R552_TOO_LARGE,
    ScriptedHandler,
    raw_server,
    serve,
)

FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=6)
NOW = 1_800_000_000.0


def mailer(port: int, **kw: object) -> Mailer:
    kw.setdefault("tls", "none")
    kw.setdefault("policy", FAST)
    kw.setdefault("rng", random.Random(0))
    return Mailer("127.0.0.1", port, **kw)  # type: ignore[arg-type]


def names(logs: list[dict[str, object]]) -> Counter[object]:
    return Counter(e["event"] for e in logs)


# -- 421 at each phase: retried on a new connection, one copy each ----------


@pytest.mark.parametrize(
    ("script", "phase"),
    [
        ({"greeting": [R421_TOO_MANY]}, "greeting"),
        ({"ehlo": [R421_TOO_MANY]}, "ehlo"),
        ({"mail": [R421_SHUTDOWN]}, "mail"),
        ({"rcpt": ["250 OK", R421_TOO_MANY]}, "rcpt"),
        ({"data": [R421_SHUTDOWN]}, "data_end"),
    ],
)
async def test_421_at_each_phase_is_retried_and_each_recipient_gets_one_copy(
    script: dict[str, list[str]], phase: str
) -> None:
    handler = ScriptedHandler(**script)  # type: ignore[arg-type]
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port) as m:
                result = await m.send(message("a@example.com", "b@example.com"))
    assert result.delivered == ["a@example.com", "b@example.com"]
    assert handler.copies == Counter({"a@example.com": 1, "b@example.com": 1})
    retries = [e for e in logs if e["event"] == "smtpretry.retry_scheduled"]
    assert len(retries) == 1
    assert retries[0]["phase"] == phase
    assert retries[0]["code"] == 421
    assert retries[0]["action"] == "retry"
    assert sorted(retries[0]["recipients"]) == ["a@example.com", "b@example.com"]  # type: ignore[arg-type]
    assert result.outcomes["a@example.com"].attempts == 2


async def test_partial_acceptance_sends_only_the_pending_recipients_again() -> None:
    # a accepted, b over quota (defer), c unknown (fail), d gets 421 -> whole transaction
    # aborted; the retry names only a and d, never b and c again.
    handler = ScriptedHandler(
        rcpt={
            "b@example.com": [R422_OVER_QUOTA],
            "c@example.com": [R550_UNKNOWN],
            "d@example.com": [R421_TOO_MANY],
        }
    )
    async with serve(handler) as port, mailer(port, clock=lambda: NOW) as m:
        result = await m.send(message("a@example.com", "b@example.com", "c@example.com", "d@example.com"))
    assert result.delivered == ["a@example.com", "d@example.com"]
    assert list(result.deferred) == ["b@example.com"]
    assert list(result.failed) == ["c@example.com"]
    assert handler.copies == Counter({"a@example.com": 1, "d@example.com": 1})
    rcpts = Counter(arg for cmd, arg in handler.commands if cmd == "RCPT")
    assert rcpts == Counter(
        {"<a@example.com>": 2, "<b@example.com>": 1, "<c@example.com>": 1, "<d@example.com>": 2}
    )


async def test_422_mailbox_full_defers_and_422_too_large_fails_at_once() -> None:
    handler = ScriptedHandler(
        rcpt={"full@example.com": [R422_OVER_QUOTA], "big@example.com": [R422_TOO_LARGE]}
    )
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port, clock=lambda: NOW) as m:
                result = await m.send(message("ok@example.com", "full@example.com", "big@example.com"))
    assert result.delivered == ["ok@example.com"]
    full = result.deferred["full@example.com"]
    assert (full.classification.category, full.classification.action) == (
        Category.MAILBOX_FULL,
        Action.DEFER,
    )
    assert full.next_attempt_at == NOW + FAST.defer_schedule[0]
    assert full.code == 422 and str(full.enhanced) == "4.2.2"
    big = result.failed["big@example.com"]
    assert big.classification.category is Category.MESSAGE_TOO_LARGE
    assert big.attempts == 1
    assert handler.copies == Counter({"ok@example.com": 1})
    deferred = [e for e in logs if e["event"] == "smtpretry.recipient_deferred"]
    failed = [e for e in logs if e["event"] == "smtpretry.recipient_failed"]
    assert [(e["recipient"], e["category"], e["next_attempt_at"]) for e in deferred] == [
        ("full@example.com", "mailbox_full", NOW + 300.0)
    ]
    assert [(e["recipient"], e["category"], e["code"]) for e in failed] == [
        ("big@example.com", "message_too_large", 422)
    ]


async def test_552_too_large_after_data_fails_without_resending() -> None:
    handler = ScriptedHandler(data=[R552_TOO_LARGE])
    async with serve(handler) as port, mailer(port) as m:
        result = await m.send(message("a@example.com"))
    assert list(result.failed) == ["a@example.com"]
    assert result.failed["a@example.com"].reply is not None
    assert result.failed["a@example.com"].reply.phase is Phase.DATA_END  # type: ignore[union-attr]
    assert sum(1 for cmd, _ in handler.commands if cmd == "DATA") == 1


async def test_message_larger_than_advertised_size_fails_without_upload() -> None:
    handler = ScriptedHandler()
    async with serve(handler, data_size_limit=200) as port, mailer(port) as m:
        result = await m.send(message("a@example.com", body="x" * 1000 + "\n"))
    outcome = result.failed["a@example.com"]
    assert outcome.classification.category is Category.MESSAGE_TOO_LARGE
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.SIZE
    assert not [cmd for cmd, _ in handler.commands if cmd in ("MAIL", "DATA")]


async def test_too_many_recipients_go_in_a_following_transaction_on_the_same_connection() -> None:
    handler = ScriptedHandler(rcpt=["250 OK", "250 OK", R452_TOO_MANY_RCPTS])
    rcpts = [f"r{i}@example.com" for i in range(5)]
    async with serve(handler) as port, mailer(port) as m:
        result = await m.send(message(*rcpts))
    assert result.delivered == rcpts
    assert handler.copies == Counter({r: 1 for r in rcpts})
    assert [sorted(r) for _, r, _ in handler.received] == [rcpts[:2], rcpts[2:]]
    assert handler.sessions_total == 1


async def test_recipient_list_too_long_stops_naming_recipients_after_the_refusal() -> None:
    # "452 Recipient list too long" has no enhanced code; the classifier calls it too many
    # recipients, and the transaction obeys the classifier: it names nobody after it.
    handler = ScriptedHandler(rcpt=["250 OK", "250 OK", "452 Recipient list too long"])
    rcpts = [f"r{i}@example.com" for i in range(5)]
    async with serve(handler) as port, mailer(port) as m:
        result = await m.send(message(*rcpts))
    named = [arg for cmd, arg in handler.commands if cmd == "RCPT"]
    assert named == [f"<{r}>" for r in [*rcpts[:3], *rcpts[2:]]]
    assert result.delivered == rcpts
    assert handler.copies == Counter({r: 1 for r in rcpts})


async def test_retries_that_run_out_defer_and_never_drop() -> None:
    handler = ScriptedHandler(mail=[R421_SHUTDOWN] * 10)
    policy = RetryPolicy(backoff_base=0.001, backoff_cap=0.002, max_attempts=3)
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port, policy=policy, clock=lambda: NOW) as m:
                result = await m.send(message("a@example.com", "b@example.com"))
    assert set(result.deferred) == {"a@example.com", "b@example.com"}
    assert result.deferred["a@example.com"].attempts == 3
    assert result.deferred["a@example.com"].next_attempt_at == NOW + 300.0
    assert handler.sessions_total == 3
    assert not handler.copies
    assert names(logs)["smtpretry.retry_scheduled"] == 2
    assert names(logs)["smtpretry.recipient_deferred"] == 2


async def test_greylisting_defers() -> None:
    handler = ScriptedHandler(rcpt=[R450_GREYLISTED])
    async with serve(handler) as port, mailer(port) as m:
        result = await m.send(message("a@example.com"))
    assert result.deferred["a@example.com"].classification.category is Category.GREYLISTED


async def test_lost_after_final_dot_is_a_possible_duplicate_and_retried_at_least_once() -> None:
    handler = ScriptedHandler(data=[ACCEPT_DROP])
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port) as m:
                result = await m.send(message("a@example.com"))
    assert result.delivered == ["a@example.com"]
    assert result.possible_duplicates == ["a@example.com"]
    assert handler.copies["a@example.com"] == 2  # at-least-once: the server had it already
    lost = [e for e in logs if e["event"] == "smtpretry.connection_lost"]
    assert [(e["failure"], e["phase"], e["possible_duplicate"]) for e in lost] == [
        ("ambiguous", "data_end", True)
    ]


async def test_at_most_once_assumes_delivery_after_a_lost_final_reply() -> None:
    handler = ScriptedHandler(data=[ACCEPT_DROP])
    policy = RetryPolicy(backoff_base=0.001, delivery=Delivery.AT_MOST_ONCE)
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port, policy=policy) as m:
                result = await m.send(message("a@example.com"))
    assert result.delivered == ["a@example.com"]
    assert result.outcomes["a@example.com"].possible_duplicate
    assert handler.copies["a@example.com"] == 1
    delivered = [e for e in logs if e["event"] == "smtpretry.message_delivered"]
    assert delivered[0]["assumed"] is True


async def test_connection_dropped_before_the_dot_is_retried() -> None:
    handler = ScriptedHandler(rcpt=[DROP])
    async with serve(handler) as port, mailer(port) as m:
        result = await m.send(message("a@example.com"))
    assert result.delivered == ["a@example.com"]
    assert not result.possible_duplicates
    assert handler.copies["a@example.com"] == 1


async def test_no_server_defers_after_retries() -> None:
    async with raw_server(lambda r, w: asyncio.sleep(0)) as port:
        pass  # the port is free again: nothing listens
    policy = RetryPolicy(backoff_base=0.001, max_attempts=2)
    async with mailer(port, policy=policy) as m:
        result = await m.send(message("a@example.com"))
    outcome = result.deferred["a@example.com"]
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.REFUSED


async def test_a_server_that_stalls_times_out_and_is_retried() -> None:
    calls = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        writer.write(b"220 stall.test ESMTP\r\n")
        await writer.drain()
        await reader.readline()  # EHLO, never answered
        await asyncio.sleep(5)

    policy = RetryPolicy(backoff_base=0.001, max_attempts=2)
    async with raw_server(script) as port, mailer(port, policy=policy, timeout=0.2) as m:
        result = await m.send(message("a@example.com"))
    outcome = result.deferred["a@example.com"]
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.TIMEOUT
    assert outcome.failure.phase is Phase.EHLO
    assert calls == 2


async def test_malformed_reply_is_a_protocol_failure_not_a_crash() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 odd.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"this is not smtp\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    policy = RetryPolicy(backoff_base=0.001, max_attempts=2)
    async with raw_server(script) as port, mailer(port, policy=policy, timeout=2) as m:
        result = await m.send(message("a@example.com"))
    outcome = result.deferred["a@example.com"]
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.PROTOCOL


# -- connection caps ----------------------------------------------------------


async def test_never_more_connections_than_the_cap_and_connections_are_reused() -> None:
    handler = ScriptedHandler()
    async with serve(handler) as port, mailer(port, limits=Limits(max_connections=2)) as m:
        results = await asyncio.gather(
            *(m.send(message(f"r{i}@example.com", msgid=f"<{i}@t>")) for i in range(30))
        )
    assert all(r.ok for r in results)
    assert handler.max_active <= 2
    assert handler.sessions_total <= 4  # reused, not one connection per message
    assert sum(handler.copies.values()) == 30


async def test_throttling_server_brings_the_cap_down_and_every_recipient_gets_one_copy() -> None:
    # The acceptance scenario: 200 messages x 3 recipients, 20 concurrent sends,
    # cap 8, a server that allows 3 connections and answers 421 to the rest.
    handler = ScriptedHandler(max_sessions=3)
    policy = RetryPolicy(backoff_base=0.005, backoff_cap=0.05, max_attempts=30)
    gate = asyncio.Semaphore(20)

    async def one(m: Mailer, i: int) -> Status:
        async with gate:
            r = await m.send(message(*(f"u{i}-{k}@example.com" for k in range(3)), msgid=f"<{i}@t>"))
            return Status.DELIVERED if r.ok else Status.DEFERRED

    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port, policy=policy, limits=Limits(max_connections=8)) as m:
                outcomes = await asyncio.gather(*(one(m, i) for i in range(200)))
            cap = m.pool.cap.current
    assert outcomes.count(Status.DELIVERED) == 200
    assert len(handler.copies) == 600
    assert set(handler.copies.values()) == {1}
    assert handler.max_active <= 3
    lowered = [e for e in logs if e["event"] == "smtpretry.cap_lowered"]
    assert lowered and lowered[0]["previous_cap"] == 8 and lowered[0]["code"] == 421
    assert cap < 8


# -- TLS and AUTH --------------------------------------------------------------


async def test_reconnect_after_421_redoes_auth() -> None:
    handler = ScriptedHandler(auth={"app": "s3cret"}, mail=[R421_SHUTDOWN])
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with mailer(port, username="app", password="s3cret") as m:
                result = await m.send(message("a@example.com"))
    assert result.ok
    assert handler.logins == ["app", "app"]
    assert "s3cret" not in repr(logs)


async def test_wrong_password_fails_with_auth_category() -> None:
    handler = ScriptedHandler(auth={"app": "s3cret"})
    async with serve(handler) as port, mailer(port, username="app", password="nope") as m:
        result = await m.send(message("a@example.com"))
    outcome = result.failed["a@example.com"]
    assert outcome.classification.category is Category.AUTH_OR_TLS
    assert outcome.code == 535


async def test_starttls_with_verified_certificate(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_pair
    handler = ScriptedHandler(auth={"app": "s3cret"}, mail=[R421_SHUTDOWN])
    async with serve(handler, starttls_context=server_ctx, auth_require_tls=True) as port:
        m = Mailer("localhost", port, tls="starttls", tls_context=client_ctx, username="app",
                   password="s3cret", policy=FAST)
        async with m:
            result = await m.send(message("a@example.com"))
    assert result.ok
    assert [c for c, _ in handler.commands].count("STARTTLS") == 2  # again after the 421
    assert handler.logins == ["app", "app"]


async def test_untrusted_certificate_fails_with_a_tls_cause(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls_pair
    handler = ScriptedHandler()
    async with serve(handler, starttls_context=server_ctx) as port:
        async with Mailer("localhost", port, tls="starttls", policy=FAST) as m:
            result = await m.send(message("a@example.com"))
    outcome = result.failed["a@example.com"]
    assert outcome.classification.category is Category.AUTH_OR_TLS
    assert outcome.failure is not None and outcome.failure.kind is FailureKind.TLS
    assert "certificate" in outcome.failure.detail.lower()
    assert not handler.copies


async def test_starttls_required_but_not_offered_fails() -> None:
    handler = ScriptedHandler()
    async with serve(handler) as port, Mailer("127.0.0.1", port, tls="starttls", policy=FAST) as m:
        result = await m.send(message("a@example.com"))
    outcome = result.failed["a@example.com"]
    assert outcome.failure is not None and "STARTTLS" in outcome.failure.detail
    assert not handler.copies
