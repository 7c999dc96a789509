"""The decision log: whole event dicts, a quiet library, and the JSON opt-in."""

from __future__ import annotations

import re
from pathlib import Path

from structlog.testing import capture_logs

from smtpretry import Phase, classify, parse_reply
from smtpretry import events as ev
from smtpretry._logging import LogContext, classified_keys, emit, evidence_keys

REPO = Path(__file__).resolve().parents[2]


def test_retry_scheduled_is_one_event_with_the_documented_keys() -> None:
    reply = parse_reply("421 4.7.0 Too many connections", Phase.GREETING)
    c = classify(reply.code, reply.enhanced, reply.text)
    with capture_logs() as logs:
        context = LogContext("mx.example.com:25", None, (("message_id", "<m@x>"),))
        emit(context, ev.RETRY_SCHEDULED, recipients=["a@example.com"], attempt=2, delay_s=1.235,
             **evidence_keys(reply), **classified_keys(c), connections_active=3, connections_cap=4)
    assert logs == [
        {
            "event": "smtpretry.retry_scheduled",
            "log_level": "warning",
            "destination": "mx.example.com:25",
            "message_id": "<m@x>",
            "schema_version": 1,
            "recipients": ["a@example.com"],
            "attempt": 2,
            "delay_s": 1.235,
            "phase": "greeting",
            "code": 421,
            "enhanced": "4.7.0",
            "text": "4.7.0 Too many connections",
            "failure": None,
            "category": "throttled",
            "action": "retry",
            "reason": c.reason,
            "connections_active": 3,
            "connections_cap": 4,
        }
    ]


def test_event_names_are_constants_in_the_documented_form() -> None:
    assert len(set(ev.EVENTS)) == len(ev.EVENTS)
    for name in ev.EVENTS:
        assert re.fullmatch(r"smtpretry\.[a-z]+_(?:[a-z]+ed|lost)", name), name
