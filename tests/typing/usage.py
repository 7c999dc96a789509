"""Typical uses of the public API, checked by mypy --strict (tests/test_static.py)."""

from __future__ import annotations

import dataclasses
import re
import smtplib
from email.message import EmailMessage

import smtpretry
from smtpretry import (
    RULES,
    Action,
    Category,
    Classification,
    Limits,
    Mailer,
    Outcome,
    RetryPolicy,
    Router,
    Rule,
    SendResult,
    classify,
    classify_reply,
    load_config,
)


async def send_one(message: EmailMessage) -> list[str]:
    policy = dataclasses.replace(RetryPolicy(), max_attempts=3)
    async with Mailer("smtp.example.net", 587, policy=policy, limits=Limits(max_connections=2)) as mailer:
        result: SendResult = await mailer.send(message, sender="a@example.org", recipients=["b@example.com"])
    deferred: dict[str, Outcome] = result.deferred
    for outcome in deferred.values():
        at: float | None = outcome.next_attempt_at
        code: int | None = outcome.code
        del at, code
    return result.delivered


async def send_routed(message: EmailMessage) -> tuple[str, ...]:
    config = load_config("smtpretry.toml")
    async with Router(config=config, queue="sqlite:///tmp/q.db") as router:
        result: SendResult = await router.send(message, recipients=["a@example.com", "b@example.net"])
    ids: tuple[str, ...] = result.queue_ids
    return ids


def classify_things() -> Action:
    c: Classification = classify_reply("421 4.7.0 Too many connections")
    mine = Rule(category=Category.THROTTLED, action=Action.RETRY, name="mine", text=re.compile("slow"))
    assert classify(550, "5.7.1", "slow down", rules=(mine, *RULES)).action is Action.RETRY
    return c.action


def like_smtplib(msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
    with smtpretry.SMTP("localhost", 25) as s:
        s.ehlo()
        try:
            return s.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            refused: dict[str, tuple[int, bytes]] = exc.recipients
            return refused


def configured() -> int:
    return load_config("smtpretry.toml").settings_for("smtp.example.net", 587).limits.max_connections
