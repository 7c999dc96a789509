"""A pytest plugin: every event the suite emits has exactly its schema's keys.

While the tests run, ``_logging.emit`` hands each event, as it would write it, to
:func:`_check`, whoever listens and whatever the level. An event that does not follow its
:class:`~smtpretry.events.EventSpec` (an unknown name, a key missing, added or out of
order, a context key the event does not carry) is recorded; the test during which it was
emitted then fails at teardown, and anything recorded between tests fails the session.

:func:`problems` also checks what a real process wrote (a JSON line, or a dict of
``structlog.testing.capture_logs``), for the tests that run the library in a subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from smtpretry import _logging
from smtpretry.events import SCHEMA_VERSION, spec

# Keys written around the event's own: by structlog (event), JSON lines (level, timestamp),
# capture_logs (log_level).
_AROUND = frozenset({"event", "level", "timestamp", "log_level"})

found: list[str] = []
"""Problems seen and not yet reported (a test or the session fails on them)."""
checked = 0
"""Events checked in this process."""


def problems(event: str, fields: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``event`` written with ``fields`` (the context keys,
    ``schema_version`` and the event's keys, in the order written), by the schema."""
    try:
        s = spec(event)
    except KeyError:
        return [f"{event}: not an event of the schema"]
    names = [n for n in fields if n not in _AROUND]
    if "schema_version" not in names:
        return [f"{event}: no schema_version"]
    cut = names.index("schema_version")
    context, keys = names[:cut], names[cut + 1:]
    out = []
    if fields["schema_version"] != SCHEMA_VERSION:
        out.append(f"{event}: schema_version {fields['schema_version']!r}, expected {SCHEMA_VERSION}")
    if context[:1] != ["destination"]:
        out.append(f"{event}: context {context}, expected destination first")
    carried = context[1:]
    if [k for k in s.context if k in carried] != carried:
        out.append(f"{event}: context keys {carried}, the schema allows {list(s.context)} in that order")
    if tuple(keys) != s.key_names:
        out.append(f"{event}: keys {keys}, the schema says {list(s.key_names)}")
    return out


def record_problems(record: Mapping[str, Any]) -> list[str]:
    """:func:`problems` of a written record (a JSON line's object, or a captured dict)."""
    return problems(str(record.get("event")), record)


def _check(event: str, fields: dict[str, Any]) -> None:
    global checked
    checked += 1
    found.extend(problems(event, fields))


def pytest_configure(config: pytest.Config) -> None:
    _logging.set_check(_check)


def pytest_unconfigure(config: pytest.Config) -> None:
    _logging.set_check(None)


@pytest.fixture(autouse=True)
def _events_follow_the_schema() -> Iterator[None]:
    start = len(found)
    yield
    mine = found[start:]
    del found[start:]
    if mine:
        pytest.fail("events that do not follow the schema (smtpretry/events.py):\n" + "\n".join(mine),
                    pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if found:  # emitted outside any test (a background thread that outlived its test)
        print("\nevents that do not follow the schema (smtpretry/events.py):\n" + "\n".join(found))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
