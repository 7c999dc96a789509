"""The installed ``smtpretry`` command as a real process, and real queue files to point it at.

``Smtpretry`` runs the console script pip installed beside the Python running the tests
(``.venv/bin/smtpretry``, or ``.venv-3.X/bin/smtpretry`` under ``make test``), in an
environment of its own: no ``SMTPRETRY_*`` variable of the machine's leaks in, and the
state directory (where the default queue lives) is the test's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from smtpretry.queue import Destination, PendingRecipient, QueueEntry
from smtpretry.queue.sqlite import SQLiteQueue

NOW = 1_800_000_000.0
BODY = b"From: s@example.org\r\nSubject: x\r\n\r\nSECRET-BODY-TEXT\r\n"


def executable() -> Path:
    """The ``smtpretry`` console script installed with this Python (never a copy on PATH)."""
    path = Path(sys.executable).with_name("smtpretry")
    assert path.is_file(), f"{path} is missing: install the package (make install-test)"
    return path


class Smtpretry:
    """``smtpretry ARGS`` in a subprocess, with ``cwd`` and a private state directory."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.state = cwd / "state"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SMTPRETRY_") and k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
        self.env["XDG_STATE_HOME"] = str(self.state)

    @property
    def default_queue(self) -> Path:
        return self.state / "smtpretry" / "queue.db"

    def environ(self, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
        merged: dict[str, str | None] = {**self.env, **(env or {})}
        return {k: v for k, v in merged.items() if v is not None}

    def __call__(
        self, *args: str | os.PathLike[str], env: Mapping[str, str | None] | None = None,
        input: str | None = None, timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(executable()), *map(str, args)], capture_output=True, text=True, input=input,
            env=self.environ(env), cwd=self.cwd, timeout=timeout,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def start(
        self, *args: str | os.PathLike[str], env: Mapping[str, str | None] | None = None, **kw: object
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [str(executable()), *map(str, args)], text=True, env=self.environ(env), cwd=self.cwd,
            **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw},
        )


def entries_for(
    n: int, *, port: int = 2525, at: float = NOW + 3600, tag: str = "", recipients: Sequence[str] = (),
    message_id: str | None = "default",
) -> list[QueueEntry]:
    """``n`` entries for 127.0.0.1:``port`` (TLS none), due at ``at``; recipient
    ``r{i}{tag}@example.com`` unless ``recipients`` names them."""
    dest = Destination("127.0.0.1", port, "none")
    out = []
    for i in range(n):
        rcpts = tuple(recipients) or (f"r{i}{tag}@example.com",)
        out.append(QueueEntry(
            key=f"k{i}{tag}", destination=dest, sender="s@example.org",
            message_id=f"<m{i}{tag}@test>" if message_id == "default" else message_id,
            recipients=tuple(PendingRecipient(
                r, at, deferrals=1, first_attempt_at=NOW, code=422, enhanced="4.2.2",
                text="Mailbox over quota", phase="rcpt", category="mailbox_full", action="defer",
            ) for r in rcpts),
            created_at=min(at, time.time()) - 60, next_attempt_at=at,
            expires_at=max(at, time.time()) + 86400, data=BODY,
        ))
    return out


def seed(db: Path, entries: Sequence[QueueEntry]) -> list[str]:
    """Write ``entries`` to the SQLite queue ``db`` (created); their ids."""

    async def put() -> list[str]:
        q = SQLiteQueue(db)
        try:
            return [await q.put(e) for e in entries]
        finally:
            await q.close()

    return asyncio.run(put())


def held(db: Path) -> list[QueueEntry]:
    """The entries of ``db``, read without creating anything ([] when there is no file)."""
    if not db.exists():
        return []

    async def read() -> list[QueueEntry]:
        q = SQLiteQueue(db, create=False)
        try:
            return await q.entries()
        finally:
            await q.close()

    return asyncio.run(read())


# -- servers that are not SMTP servers ------------------------------------------------------------


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses every connection: bound, never listening (held, so
    nothing else can take it meanwhile)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


class Silent:
    """A loopback server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.server.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()
