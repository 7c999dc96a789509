"""The log schema (smtpretry/events.py) holds together: the check every emitted event goes
through can fail, and the README's event and key tables are the schema's.

The README tables are rendered from the schema here; when the schema changes,
``python -m tests.unit.test_schema`` prints the tables to paste into the README.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from smtpretry import events as ev
from smtpretry._logging import LogContext, emit
from tests import schema_check

README = Path(__file__).resolve().parents[2] / "README.md"
EVENT_HEADER = "| event | level | context | keys | meaning |"
KEY_HEADER = "| key | meaning |"


def event_table() -> list[str]:
    """The README's table of events: one row per event, in the schema's order. A key's
    meaning is given in the row when the event says more than the key table."""
    rows = [EVENT_HEADER, "|---|---|---|---|---|"]
    for s in ev.SPECS:
        keys = ", ".join(
            f"`{k.name}`" + ("" if k.meaning == ev.KEYS[k.name] else f" ({k.meaning})") for k in s.keys
        )
        context = ", ".join(f"`{k}`" for k in s.context) or "–"
        rows.append(f"| `{s.name}` | {s.level} | {context} | {keys} | {s.meaning} |")
    return rows


def key_table() -> list[str]:
    rows = [KEY_HEADER, "|---|---|"]
    rows += [f"| `{name}` | {meaning} |" for name, meaning in {**ev.COMMON_KEYS, **ev.KEYS}.items()]
    return rows


def readme_table(header: str) -> list[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines.count(header) == 1, f"the README has no single table headed {header!r}"
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def test_the_readme_lists_exactly_the_schemas_events_levels_and_keys() -> None:
    table = readme_table(EVENT_HEADER)
    names = [re.match(r"\| `([^`]+)` \|", row).group(1) for row in table[2:]]  # type: ignore[union-attr]
    assert names == list(ev.EVENTS)
    assert table == event_table(), "README's event table is not the schema's:\n" + "\n".join(event_table())


def test_the_readme_says_what_every_key_means() -> None:
    assert readme_table(KEY_HEADER) == key_table(), "README's key table:\n" + "\n".join(key_table())


def test_the_schema_is_consistent() -> None:
    assert tuple(s.name for s in ev.SPECS) == ev.EVENTS
    assert len(set(ev.EVENTS)) == len(ev.EVENTS)
    assert not set(ev.COMMON_KEYS) & set(ev.KEYS), "a key is common or an event's own, not both"
    for s in ev.SPECS:
        assert ev.spec(s.name) is s
        assert s.level in ("info", "warning", "error")
        assert len(set(s.key_names)) == len(s.key_names), s.name
        assert set(s.key_names) <= set(ev.KEYS), s.name
        assert not set(s.key_names) & set(s.context), s.name
        assert set(s.context) <= {"message_id", "send_id", "queue_id"}, s.name
        assert all(k.meaning for k in s.keys) and s.meaning and "|" not in s.meaning
    used = {k for s in ev.SPECS for k in s.key_names}
    assert used == set(ev.KEYS), "a key no event has, or an event key without a meaning"
    assert all(name.startswith(ev.EVENT_PREFIX) for name in ev.EVENTS)


def test_every_key_has_its_constant() -> None:
    constants = {n: v for n, v in vars(ev.K).items() if n.isupper()}
    assert all(v == n.lower() for n, v in constants.items())
    assert set(constants.values()) == set(ev.COMMON_KEYS) | set(ev.KEYS)


def test_the_check_records_an_event_whose_keys_are_not_the_schemas() -> None:
    before = len(schema_check.found)
    context = LogContext("mx.example.net:25", None, (("message_id", "<m@x>"), ("send_id", "ab")))
    emit(context, ev.SEND_COMPLETED, delivered=1, deferred=0, failed=0, attempts=1, duration_s=0.1)  # right
    assert schema_check.found[before:] == []
    emit(context.with_keys(queue_id="q"), ev.SEND_COMPLETED, delivered=1, deferred=0, failed=0,
         attempts=1, duration_s=0.1)  # queue_id: not carried by send_completed
    plain = LogContext("mx.example.net:25")
    emit(plain, ev.CAP_RAISED, connections_cap=2)  # keys missing
    emit(context, ev.SEND_COMPLETED, delivered=1, deferred=0, failed=0, duration_s=0.1, attempts=1)  # order
    emit(plain, ev.BACKEND_LOST, backend="redis://x", doing="renew leases", error="E", wrong=1)
    seen = schema_check.found[before:]
    del schema_check.found[before:]  # recorded as it should be: not a failure of this test
    assert len(seen) == 4, seen
    assert "smtpretry.send_completed: context keys ['message_id', 'send_id', 'queue_id']" in seen[0]
    assert "smtpretry.cap_raised: keys ['connections_cap']" in seen[1]
    assert "'duration_s', 'attempts']" in seen[2]
    assert "'error', 'wrong']" in seen[3]


def test_a_test_that_emits_a_wrong_key_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(README.parent))
    pytester.makepyfile(test_inner=textwrap.dedent("""
        from smtpretry import events as ev
        from smtpretry._logging import LogContext, emit

        def test_right():
            emit(LogContext("h:25"), ev.LEASE_LOST, leases=1, lease_s=30.0)

        def test_wrong_key():
            emit(LogContext("h:25"), ev.LEASE_LOST, leases=1, lease_secs=30.0)
    """))
    result = pytester.runpytest_subprocess("-p", "tests.schema_check", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_wrong_key*"])
    assert "smtpretry.lease_lost: keys ['leases', 'lease_secs'], the schema says ['leases', 'lease_s']" in (
        result.stdout.str()
    )


if __name__ == "__main__":
    print("\n".join(event_table()), "", "\n".join(key_table()), sep="\n")
