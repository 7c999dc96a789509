"""decide(), give_up() and RetryPolicy maths with a fixed clock and seed."""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

from smtpretry import (
    ConfigError,
    Defer,
    Delivery,
    Fail,
    FailureKind,
    Limits,
    Ok,
    Phase,
    RecipientState,
    Retry,
    RetryPolicy,
    TransportFailure,
    decide,
    parse_reply,
)
from smtpretry.decide import Attempt, classify_evidence, give_up
from smtpretry.reply import Evidence

NOW = 1_800_000_000.0
POLICY = RetryPolicy(backoff_base=2.0, backoff_cap=60.0)


def state_after(*evidence: Evidence, deferrals: int = 0, first: float | None = None) -> RecipientState:
    state = RecipientState("a@example.com", deferrals=deferrals, first_attempt_at=first)
    for i, ev in enumerate(evidence, start=1):
        state = state.record(Attempt(ev, classify_evidence(ev), i, NOW))
    return state


def reply(raw: str, phase: Phase = Phase.RCPT) -> Evidence:
    return parse_reply(raw, phase)


def test_retry_delay_is_full_jitter_from_the_seeded_rng() -> None:
    st = state_after(reply("421 4.7.0 Too many connections", Phase.GREETING))
    expected = random.Random(7).uniform(0.0, 2.0)
    assert decide(st, POLICY, now=NOW, rng=random.Random(7)) == Retry(expected)


def test_backoff_grows_exponentially_and_stops_at_the_cap() -> None:
    ceilings = []
    for attempt in range(1, 10):
        rng = random.Random(1)
        fraction = random.Random(1).random()
        ceilings.append(round(POLICY.backoff(attempt, rng) / fraction, 6))
    assert ceilings == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]


def test_a_wait_named_by_the_server_is_honoured() -> None:
    st = state_after(reply("421 4.7.0 Rate limited, try again in 90 seconds", Phase.MAIL))
    decision = decide(st, POLICY, now=NOW, rng=random.Random(0))
    assert isinstance(decision, Retry) and decision.delay_s == 90.0


def test_mailbox_full_defers_by_the_schedule_even_on_5xx() -> None:
    st = state_after(reply("552 5.2.2 Mailbox full"))
    assert decide(st, POLICY, now=NOW, rng=random.Random(0)) == Defer(NOW + 300.0)
    later = state_after(reply("452 4.2.2 Mailbox full"), deferrals=3)
    assert decide(later, POLICY, now=NOW, rng=random.Random(0)) == Defer(NOW + 3600.0)
    last = state_after(reply("452 4.2.2 Mailbox full"), deferrals=40)
    assert decide(last, POLICY, now=NOW, rng=random.Random(0)) == Defer(NOW + 14400.0)


def verdict(raw: str, phase: Phase = Phase.RCPT) -> object:
    return decide(state_after(reply(raw, phase)), POLICY, now=NOW, rng=random.Random(0))


def test_too_large_fails_even_on_4xx_and_too_many_recipients_retries_at_once() -> None:
    assert verdict("452 4.3.4 Message too big") == Fail()
    assert verdict("452 4.5.3 Too many recipients") == Retry(0.0)


def test_accepted_is_ok_and_permanent_is_fail() -> None:
    assert verdict("250 2.0.0 OK", Phase.DATA_END) == Ok()
    assert verdict("550 5.1.1 User unknown") == Fail()


def test_deferral_past_the_lifetime_fails_as_expired() -> None:
    st = state_after(reply("452 4.2.2 Mailbox full"), first=NOW - POLICY.max_lifetime + 60)
    assert decide(st, POLICY, now=NOW, rng=random.Random()) == Fail(expired=True)


def test_transport_failures() -> None:
    lost = TransportFailure(FailureKind.AMBIGUOUS, Phase.DATA_END, "eof")
    assert isinstance(decide(state_after(lost), POLICY, now=NOW, rng=random.Random(0)), Retry)
    at_most_once = dataclasses.replace(POLICY, delivery=Delivery.AT_MOST_ONCE)
    assert decide(state_after(lost), at_most_once, now=NOW, rng=random.Random(0)) == Ok(assumed=True)
    tls = TransportFailure(FailureKind.TLS, Phase.STARTTLS, "certificate verify failed")
    assert decide(state_after(tls), POLICY, now=NOW, rng=random.Random(0)) == Fail()
    refused = TransportFailure(FailureKind.REFUSED, Phase.CONNECT, "refused")
    assert isinstance(decide(state_after(refused), POLICY, now=NOW, rng=random.Random(0)), Retry)


def test_give_up_defers_never_drops() -> None:
    st = state_after(reply("421 4.3.2 Service not available", Phase.MAIL))
    assert give_up(st, POLICY, now=NOW) == Defer(NOW + 300.0)


def test_record_returns_a_new_state_and_keeps_the_first_attempt_time() -> None:
    empty = RecipientState("a@example.com")
    ev = reply("421 4.7.0 later", Phase.MAIL)
    one = empty.record(Attempt(ev, classify_evidence(ev), 1, 10.0))
    two = one.record(Attempt(ev, classify_evidence(ev), 2, 20.0))
    assert empty.history == () and len(one.history) == 1 and len(two.history) == 2
    assert two.first_attempt_at == 10.0
    with pytest.raises(ValueError):
        decide(empty, POLICY, now=NOW, rng=random.Random())


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff_base": -1.0}, "backoff_base"),
        ({"defer_schedule": ()}, "defer_schedule"),
        ({"defer_schedule": (60.0, -5.0)}, "defer_schedule[1]"),
        ({"max_lifetime": 0}, "max_lifetime"),
        ({"max_attempts": True}, "max_attempts"),
    ],
)
def test_policy_validation_names_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ":"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_limits_validation() -> None:
    with pytest.raises(ConfigError, match="^max_connections:"):
        Limits(max_connections=0)
    with pytest.raises(ConfigError, match="^max_messages_per_connection:"):
        Limits(max_messages_per_connection=-1)
