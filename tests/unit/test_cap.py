"""AdaptiveCap: multiplicative decrease once per burst, additive recovery below the refused level."""

from __future__ import annotations

from smtpretry import Limits
from smtpretry.limits.cap import AdaptiveCap


def cap(configured: int = 10, recovery: int = 3, probe_after: float = 100.0) -> AdaptiveCap:
    return AdaptiveCap.from_limits(
        Limits(max_connections=configured, cap_recovery=recovery, cap_probe_after=probe_after)
    )


def test_halves_never_below_one() -> None:
    c = cap()
    assert c.lower(opened_at=1.0, now=2.0, open_now=10) == 5
    assert c.lower(opened_at=3.0, now=4.0, open_now=5) == 3
    assert c.lower(opened_at=5.0, now=6.0, open_now=3) == 2
    assert c.lower(opened_at=7.0, now=8.0, open_now=2) == 1
    assert c.lower(opened_at=9.0, now=10.0, open_now=1) is None  # never below 1


def test_one_burst_of_421s_cuts_once() -> None:
    c = cap()
    assert c.lower(opened_at=1.0, now=2.0, open_now=10) == 5
    # Replies to connections opened before the cut say nothing new.
    assert [c.lower(opened_at=1.5, now=2.1, open_now=9) for _ in range(5)] == [None] * 5
    assert c.current == 5


def test_a_single_421_with_few_connections_open_does_not_collapse_the_cap() -> None:
    c = cap(recovery=2)
    assert c.lower(opened_at=1.0, now=2.0, open_now=1) == 5
    assert [c.success(now=3.0) for _ in range(10)][-1] == 10  # free to climb back all the way


def test_recovers_one_step_per_run_of_successes_up_to_just_below_the_refused_level() -> None:
    c = cap(configured=8)
    c.lower(opened_at=1.0, now=2.0, open_now=7)  # 8 -> 4; the server refused the 7th
    c.lower(opened_at=3.0, now=4.0, open_now=4)  # 4 -> 2; refused the 4th: at most 3
    assert (c.current, c.ceiling) == (2, 3)
    assert [c.success(now=5.0) for _ in range(3)] == [None, None, 3]
    assert [c.success(now=5.0) for _ in range(9)] == [None] * 9  # stays below the refused level
    assert c.success(now=200.0) is None and c.successes == 1  # probe window over: climbs again
    assert [c.success(now=200.0) for _ in range(2)] == [None, 4]


def test_a_refusal_right_after_our_own_close_is_taken_one_level_higher() -> None:
    c = cap(configured=4)
    c.lower(opened_at=1.0, now=2.0, open_now=3, lingering=True)
    assert (c.current, c.ceiling) == (2, 3)
    c2 = cap(configured=4)
    c2.lower(opened_at=1.0, now=2.0, open_now=3, lingering=False)
    assert (c2.current, c2.ceiling) == (2, 2)


def test_a_throttle_restarts_the_run_of_successes() -> None:
    c = cap(probe_after=0.0)
    c.lower(opened_at=1.0, now=2.0, open_now=10)
    assert [c.success(now=3.0) for _ in range(2)] == [None, None]
    assert c.lower(opened_at=0.0, now=3.0, open_now=5) is None  # an old connection's 421: no cut...
    assert [c.success(now=4.0) for _ in range(3)] == [None, None, 6]  # ...but the run restarts


def test_never_above_the_configured_cap_and_fixed_when_not_adaptive() -> None:
    c = cap(configured=2, recovery=1)
    assert c.success(now=1.0) is None and c.current == 2
    fixed = AdaptiveCap.from_limits(Limits(max_connections=4, adaptive=False))
    assert fixed.lower(opened_at=1.0, now=2.0, open_now=4) is None and fixed.current == 4


def test_rate_halves_once_per_window_and_recovers_in_tenths() -> None:
    from smtpretry.limits.cap import AdaptiveRate

    r = AdaptiveRate(configured=600.0, current=600.0, recovery=2)
    assert r.lower(now=10.0) == 300.0
    assert r.lower(now=10.5) is None  # the same burst
    assert r.lower(now=11.5) == 150.0
    assert [r.success() for _ in range(4)] == [None, 210.0, None, 270.0]
    for _ in range(40):
        r.success()
    assert r.current == 600.0 and r.success() is None
    slow = AdaptiveRate(configured=64.0, current=1.0, recovery=1)
    assert slow.lower(now=1000.0) is None  # never below 1/64 of the configured pace
