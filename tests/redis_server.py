"""A private redis-server on a loopback port, for the tests of the Redis backend.

What this module owns: ``RedisServer`` (start one ``redis-server`` from Debian's package
on a free 127.0.0.1 port, with its data directory under a temporary directory, and stop
it), and the fixtures ``redis_server`` (one per test session) and ``redis_url`` (that
server, emptied before each test). It is loaded as a pytest plugin from
``tests/conftest.py``.

The server runs as the backend should in production as far as durability goes
(``--appendonly yes``) but never snapshots (``--save ''``). Without ``redis-server`` or the
``redis`` package the tests that need it fail when ``CI`` is set (the CI image must have
them: ``make test`` installs both) and are skipped otherwise, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RedisServer", "client_for", "redis_server", "redis_url", "require_redis"]


def require_redis() -> str:
    """The path of ``redis-server``; fail (CI) or skip (locally) when it or redis-py is missing."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    problem = None
    if path is None:
        problem = "redis-server is not installed (Debian: apt-get install redis-server; make test does)"
    else:
        try:
            import redis  # noqa: F401
        except ImportError:
            problem = "the redis package is not installed (pip install -e '.[test]')"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {problem}", pytrace=False)
        pytest.skip(problem)
    assert path is not None
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 with its files in ``directory``."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, port: int | None = None, *, timeout_s: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(self.directory), "--daemonize", "no",
             "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
            with contextlib.suppress(Exception):  # redis.ConnectionError until it listens
                if self.client().ping():
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def client_for(url: str) -> Any:
    """A synchronous redis-py client, for tests to look into the store."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=2.0)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the session (started at first use)."""
    server = RedisServer(require_redis(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, emptied for this test."""
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
