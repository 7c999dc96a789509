"""The ``backend`` setting: one URL moves the connection caps (and, unless ``[queue] url``
says otherwise, the queue) to Redis. Nothing here connects to Redis."""

from __future__ import annotations

import pytest

from smtpretry import ConfigError, Mailer
from smtpretry.config import Config, parse_config
from smtpretry.limits import LocalSlots
from smtpretry.queue.crypto import KEY_ENV, generate_key


def test_backend_sets_the_backend_and_the_queue() -> None:
    config = parse_config({"backend": "redis://127.0.0.1:6379/0"})
    assert (config.backend_url, config.queue_url) == ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0")


def test_queue_url_says_otherwise() -> None:
    config = parse_config({"backend": "rediss://r.internal:6380/1", "queue": {"url": "sqlite:///q.db"}})
    assert (config.backend_url, config.queue_url) == ("rediss://r.internal:6380/1", "sqlite:///q.db")


def test_the_default_stays_in_process() -> None:
    assert parse_config({}).backend_url is None and Config().backend_url is None


@pytest.mark.parametrize("value", ["mysql://u:secret@h/db", "redis://", 6379, ""])
def test_a_bad_backend_names_the_key_and_never_echoes_a_url(value: object) -> None:
    with pytest.raises(ConfigError, match=r"<config>: backend: expected a URL such as") as info:
        parse_config({"backend": value})
    assert "secret" not in str(info.value)


def test_a_mailer_with_a_backend_config_takes_its_limiter_from_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    from smtpretry.limits.redis import RedisSlots
    from smtpretry.queue.redis import RedisQueue

    monkeypatch.setenv(KEY_ENV, generate_key())
    config = parse_config({
        "backend": "redis://127.0.0.1:6379/0",
        "destinations": {"mx:.example.net": {"max_connections": 3}},
    })
    m = Mailer("a.example.net", 25, tls="none", config=config)
    slots = m.pool.limiter.slots
    assert isinstance(slots, RedisSlots) and slots.name == "mx:.example.net"
    assert slots.cap.configured == 3
    assert isinstance(m.queue, RedisQueue)
    plain = Mailer("a.example.net", 25, tls="none")
    assert isinstance(plain.pool.limiter.slots, LocalSlots) and plain.queue is None
