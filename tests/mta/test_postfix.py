"""The scripted-server scenarios again, against a real Postfix on 127.0.0.1.

The instance (``tests/mta/postfix.py``) allows 2 connections per client and answers 421 to
the rest, refuses ``full@`` with ``452 4.2.2``, ``quota@`` with ``422 4.2.2``, and messages over
100 kB with ``552 5.3.4`` after the final dot (SIZE is not advertised). Copies are counted in
its Maildirs, once its queue is empty.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from structlog.testing import capture_logs

from smtpretry import Category, Limits, Mailer, MessageError, Phase, RetryPolicy, SendResult
from tests.messages import message
from tests.mta.postfix import DOMAIN, PostfixInstance

pytestmark = pytest.mark.mta

POLICY = RetryPolicy(backoff_base=0.01, backoff_cap=0.2, max_attempts=60)
NOW = 1_800_000_000.0


def mailer(postfix: PostfixInstance, **kw: object) -> Mailer:
    kw.setdefault("tls", "none")
    kw.setdefault("policy", POLICY)
    kw.setdefault("limits", Limits(max_connections=8))
    kw.setdefault("timeout", 10.0)
    kw.setdefault("rng", random.Random(0))
    return Mailer("127.0.0.1", postfix.port, **kw)  # type: ignore[arg-type]


def delivered_since(postfix: PostfixInstance, before: Counter[str]) -> Counter[str]:
    postfix.wait_idle()
    after = postfix.copies()
    after.subtract(before)
    return +after


async def test_throttled_by_postfix_every_recipient_gets_one_copy(postfix: PostfixInstance) -> None:
    # 60 messages x 2 recipients, all at once, cap 8 against a limit of 2; every 10th message
    # also goes to full@ (deferred), and one 300 kB message goes alongside (too large).
    full = f"full@{DOMAIN}"
    big = f"u199-0@{DOMAIN}"
    sends = [
        [f"u{i}-0@{DOMAIN}", f"u{i}-1@{DOMAIN}", *([full] if i % 10 == 0 else [])] for i in range(60)
    ]
    before = postfix.copies()
    lines_before = len(postfix.log_lines())
    with capture_logs() as logs:
        async with mailer(postfix) as m:
            results: list[SendResult] = await asyncio.gather(
                *(m.send(message(*to, msgid=f"<{i}@mta>")) for i, to in enumerate(sends)),
                m.send(message(big, msgid="<big@mta>", body=("y" * 70 + "\n") * 4300)),
            )
            cap = m.pool.cap.current
    *small, large = results

    # At the server: every deliverable recipient has exactly one copy, the big one none.
    expected = Counter(r for to in sends for r in to if r != full)
    assert delivered_since(postfix, before) == expected

    # In the results: each recipient accounted for, with the right category.
    for to, result in zip(sends, small, strict=True):
        assert sorted(result.delivered) == sorted(r for r in to if r != full)
        if full in to:
            outcome = result.deferred[full]
            assert outcome.classification.category is Category.MAILBOX_FULL
            assert (outcome.code, str(outcome.enhanced)) == (452, "4.2.2")
        assert not result.failed and not result.possible_duplicates
    too_large = large.failed[big]
    assert too_large.classification.category is Category.MESSAGE_TOO_LARGE
    assert (too_large.code, str(too_large.enhanced)) == (552, "5.3.4")
    assert too_large.reply is not None and too_large.reply.phase is Phase.DATA_END
    # Never uploaded twice: one attempt reached the final dot (an earlier one may have been
    # refused at the greeting while Postfix was at its limit).
    assert [a.evidence.phase for a in too_large.history].count(Phase.DATA_END) == 1

    # The decision log: Postfix's 421s, the cap coming down from 8 to the server's level.
    retried_421 = [
        e for e in logs if e["event"] == "smtpretry.retry_scheduled" and e["code"] == 421
    ]
    assert retried_421
    assert {(e["phase"], e["category"]) for e in retried_421} == {("greeting", "throttled")}, retried_421
    assert "too many connections" in str(retried_421[0]["text"])
    lowered = [e for e in logs if e["event"] == "smtpretry.cap_lowered"]
    assert lowered and lowered[0]["previous_cap"] == 8 and lowered[0]["code"] == 421
    assert cap <= 3  # Postfix allows 2; the cap may probe one above after a lingering close

    # Postfix's own log agrees: one refusal over its limit for each 421 smtpretry retried.
    new_lines = postfix.log_lines()[lines_before:]
    refused = [ln for ln in new_lines if "Connection concurrency limit exceeded" in ln]
    assert len(refused) == len(retried_421)


async def test_over_quota_defers_and_unknown_user_fails(postfix: PostfixInstance) -> None:
    ok, full, quota, unknown = (f"{u}@{DOMAIN}" for u in ("ok", "full", "quota", "nobody"))
    before = postfix.copies()
    with capture_logs() as logs:
        async with mailer(postfix, clock=lambda: NOW) as m:
            result = await m.send(message(ok, full, quota, unknown, msgid="<quota@mta>"))
    assert result.delivered == [ok]
    assert set(result.deferred) == {full, quota}
    for rcpt, code in ((full, 452), (quota, 422)):
        outcome = result.deferred[rcpt]
        assert outcome.classification.category is Category.MAILBOX_FULL
        assert (outcome.code, str(outcome.enhanced)) == (code, "4.2.2")
        assert outcome.next_attempt_at == NOW + POLICY.defer_schedule[0]
    assert result.failed[unknown].classification.category is Category.UNKNOWN_RECIPIENT
    assert result.failed[unknown].code == 550
    assert delivered_since(postfix, before) == Counter({ok: 1})
    deferred = {e["recipient"]: e["category"] for e in logs if e["event"] == "smtpretry.recipient_deferred"}
    assert deferred == {full: "mailbox_full", quota: "mailbox_full"}


async def test_non_ascii_sender_delivered_with_postfix_smtputf8(postfix: PostfixInstance) -> None:
    # Postfix 3.x offers SMTPUTF8; a UTF-8 envelope sender goes through with it.
    ok = f"ok@{DOMAIN}"
    before = postfix.copies()
    async with mailer(postfix) as m:
        result = await m.send(message(ok, msgid="<utf8@mta>"), sender="jörg@example.org", recipients=[ok])
    assert result.delivered == [ok]
    assert delivered_since(postfix, before) == Counter({ok: 1})


async def test_esmtp_parameters_injected_through_the_sender_are_refused(postfix: PostfixInstance) -> None:
    ok = f"ok@{DOMAIN}"
    async with mailer(postfix) as m:
        with pytest.raises(MessageError):
            await m.send(message(ok, msgid="<inject@mta>"),
                         sender="app@example.org> RET=FULL ENVID=injected", recipients=[ok])
