"""The report's axes, pure: time ticks at round instants as precise as their step needs,
value ticks at round steps (never a fraction of a count), and 421 rates counted over a real
stretch of time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smtpretry.logs.report import rate_width, tick_label, time_step, time_ticks, value_ticks
from smtpretry.logs.summary import Timeline

T = datetime(2026, 12, 4, 2, 22, 48, 333000, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("span", "step"), [
    (0.3, 0.05), (1.5, 0.2), (2.2, 0.5), (30, 5), (100, 15), (600, 120), (3 * 3600, 1800),
    (2 * 86400, 21600), (30 * 86400, 604800),
])
def test_the_time_step_is_round_and_gives_a_few_ticks(span: float, step: float) -> None:
    assert time_step(span) == step
    ticks = time_ticks(T, T + span, step)
    assert 2 <= len(ticks) <= 9
    assert all(abs(t / step - round(t / step)) < 1e-6 for t in ticks)  # round instants
    assert all(T <= t <= T + span for t in ticks)


@pytest.mark.parametrize(("step", "label"), [
    (0.005, "02:22:48.335"), (0.05, "02:22:48.35"), (0.2, "02:22:48.4"), (5.0, "02:22:50"),
    (300.0, "02:25"), (86400.0, "2026-12-05"),
])
def test_a_tick_label_is_as_precise_as_its_step(step: float, label: str) -> None:
    [first, *_] = time_ticks(T, T + 10 * step, step)
    assert tick_label(first, step) == label


def test_value_ticks_are_round_and_counts_never_fractional() -> None:
    assert value_ticks(5, integer=True) == [0, 2, 4, 6]
    assert value_ticks(2, integer=True) == [0, 1, 2]  # not 0, 0.5, 1, 1.5, 2
    assert value_ticks(8, integer=True) == [0, 2, 4, 6, 8]
    assert value_ticks(0, integer=True) == [0, 1]
    assert value_ticks(360, integer=False) == [0, 100, 200, 300, 400]
    assert value_ticks(0.3, integer=False) == [0, 0.5, 1]  # an axis at least 1 high


def test_421_rates_are_counted_over_at_least_a_second() -> None:
    timeline = Timeline()
    timeline.at("mx:25", T)
    timeline.at("mx:25", T + 0.004)  # a 4 ms log: 1 ms buckets
    assert timeline.width == 0.001 and rate_width(timeline) == 1.0
    long = Timeline()
    long.at("mx:25", T)
    long.at("mx:25", T + 3600)  # an hour: a fortieth of it, rounded up to a bucket width
    assert rate_width(long) == 120.0
