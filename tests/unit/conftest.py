"""Fixtures of the queue tests: a database path under tmp_path, and ``make_queue``, which
runs a Queue contract test against every backend (SQLite, and Redis on a private
redis-server, tests/redis_server.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from smtpretry.queue import Queue
from smtpretry.queue.crypto import MessageCipher, generate_key
from smtpretry.queue.sqlite import SQLiteQueue

MakeQueue = Callable[[], Queue]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "queue.db"


@pytest.fixture(params=["sqlite", "redis"])
def make_queue(request: pytest.FixtureRequest, db: Path) -> MakeQueue:
    """New handles on one empty queue of the backend under test."""
    if request.param == "sqlite":
        return lambda: SQLiteQueue(db)
    from smtpretry.queue.redis import RedisQueue

    url = request.getfixturevalue("redis_url")
    cipher = MessageCipher(generate_key(), source="test")
    return lambda: RedisQueue(url, cipher=cipher)
