"""Several destinations from one process, each inside its own limits (the per-ISP issue's scenario)."""

from __future__ import annotations

import asyncio
import random
from email.message import EmailMessage

from structlog.testing import capture_logs

from smtpretry import Mailer
from smtpretry.config import parse_config
from tests.servers import ScriptedHandler, serve

N = 60  # messages per destination, 2 recipients each


def message(i: int, dest: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "app@example.org"
    msg["To"] = f"{dest}{i}-a@example.com, {dest}{i}-b@example.com"
    msg["Message-ID"] = f"<{dest}-{i}@test>"
    msg["Subject"] = "x"
    msg.set_content("hi")
    return msg


async def feed(m: Mailer, dest: str, finished: list[str]) -> None:
    gate = asyncio.Semaphore(12)

    async def one(i: int) -> None:
        async with gate:
            result = await m.send(message(i, dest))
            assert result.ok, result
            finished.append(dest)

    await asyncio.gather(*(one(i) for i in range(N)))


async def run(
    caps: tuple[int, int],
) -> tuple[ScriptedHandler, ScriptedHandler, list[str], list[dict[str, object]]]:
    """Two servers allowing 2 and 5 connections, fed at once by one process whose
    configuration file gives them ``caps``."""
    small, large = ScriptedHandler(max_sessions=2), ScriptedHandler(max_sessions=5)
    async with serve(small) as p_small, serve(large) as p_large:
        config = parse_config(
            {
                "defaults": {"retry": {"backoff_base": 0.005, "backoff_cap": 0.05, "max_attempts": 40}},
                "destinations": {
                    f"127.0.0.1:{p_small}": {"max_connections": caps[0]},
                    f"127.0.0.1:{p_large}": {"max_connections": caps[1]},
                },
            }
        )
        finished: list[str] = []
        with capture_logs() as logs:
            async with (
                Mailer("127.0.0.1", p_small, tls="none", config=config, rng=random.Random(1)) as m_small,
                Mailer("127.0.0.1", p_large, tls="none", config=config, rng=random.Random(2)) as m_large,
            ):
                assert (m_small.limits.max_connections, m_large.limits.max_connections) == caps
                await asyncio.gather(feed(m_small, "s", finished), feed(m_large, "l", finished))
    return small, large, finished, logs


def interleaved(finished: list[str]) -> bool:
    """Both destinations were finishing sends while the other still was."""
    last_small = max(i for i, d in enumerate(finished) if d == "s")
    last_large = max(i for i, d in enumerate(finished) if d == "l")
    first_small = finished.index("s")
    first_large = finished.index("l")
    return first_small < last_large and first_large < last_small


async def test_each_destination_keeps_its_own_cap_with_no_421_and_both_run_in_parallel() -> None:
    small, large, finished, logs = await run((2, 5))
    assert (small.max_active, large.max_active) == (2, 5)
    assert (small.sessions_refused, large.sessions_refused) == (0, 0)
    assert not [e for e in logs if e["event"] == "smtpretry.retry_scheduled"]
    for handler, prefix in ((small, "s"), (large, "l")):
        assert len(handler.copies) == 2 * N and set(handler.copies.values()) == {1}
        assert all(r.startswith(prefix) for r in handler.copies)
    assert interleaved(finished)


async def test_misconfigured_caps_adapt_down_and_every_recipient_gets_one_copy() -> None:
    small, large, finished, logs = await run((10, 10))
    for handler in (small, large):
        assert len(handler.copies) == 2 * N and set(handler.copies.values()) == {1}
    lowered = {e["destination"] for e in logs if e["event"] == "smtpretry.cap_lowered"}
    assert len(lowered) == 2  # each destination's cap came down
    # The 421s stop after the adaptation: none in the last third of the sends.
    events = [e for e in logs if e["event"] in ("smtpretry.retry_scheduled", "smtpretry.send_completed")]
    tail = events[len(events) * 2 // 3 :]
    assert not [e for e in tail if e["event"] == "smtpretry.retry_scheduled"]


async def test_a_rate_limit_inside_a_session_slows_the_pace_and_it_is_logged() -> None:
    from smtpretry import Limits, RetryPolicy

    handler = ScriptedHandler(mail=["421 4.7.0 Rate limit exceeded, slow down"])
    async with serve(handler) as port:
        with capture_logs() as logs:
            async with Mailer(
                "127.0.0.1",
                port,
                tls="none",
                policy=RetryPolicy(backoff_base=0.001),
                limits=Limits(max_messages_per_minute=6000.0),
            ) as m:
                result = await m.send(message(0, "r"))
                pace = m.pool.limiter.rate
    assert result.ok and handler.copies == {"r0-a@example.com": 1, "r0-b@example.com": 1}
    lowered = [e for e in logs if e["event"] == "smtpretry.rate_lowered"]
    assert [(e["previous"], e["messages_per_minute"], e["code"]) for e in lowered] == [(6000.0, 3000.0, 421)]
    assert pace is not None and pace.current == 3000.0
