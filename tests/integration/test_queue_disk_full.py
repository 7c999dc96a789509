"""A queue on a disk that fills up: on a small tmpfs of its own, the SQLite queue is
filled until a put fails with "disk is full", the rest of the room is taken, then about
one entry's size is freed, and a runner must deliver every recipient to a real SMTP
server on 127.0.0.1.

The test mounts the tmpfs itself (this needs root, or the right to mount); where
mounting is refused it is skipped, and says so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpretry import Mailer, QueueError, RetryPolicy
from smtpretry.queue import Destination, PendingRecipient, QueueEntry
from smtpretry.queue.crypto import KEY_ENV
from smtpretry.queue.sqlite import SQLiteQueue
from smtpretry.runner import QueueRunner
from tests.servers import ScriptedHandler, serve

FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.005, max_attempts=3)
DISK = "3m"
MESSAGE_SIZE = 60_000
ONE_ENTRY = 90 * 1024  # a 60 KB message is an 80 KB token, with its row and index entries


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK`` mounted for this test alone."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs", str(mountpoint)],
            capture_output=True, text=True, timeout=30,
        )
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs for the disk-full test: {exc}")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs for the disk-full test was refused: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        # Lazily if a file is still open there (a test that failed midway), so that no
        # mount outlives the test.
        if subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def message(n: int) -> bytes:
    """A 60 KB message that does not compress, in lines SMTP accepts."""
    text = os.urandom(MESSAGE_SIZE // 2).hex()
    lines = [text[i:i + 76] for i in range(0, len(text), 76)]
    head = f"From: s@example.org\r\nTo: r{n}@example.com\r\nMessage-ID: <full{n}@test>\r\n\r\n"
    return (head + "\r\n".join(lines) + "\r\n").encode()


def fill(directory: Path) -> None:
    """Take whatever room is left, 4 KB at a time."""
    for n in range(100_000):
        try:
            (directory / f"filler{n}").write_bytes(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            with contextlib.suppress(FileNotFoundError):
                (directory / f"filler{n}").unlink()
            return


async def test_after_a_disk_full_freeing_one_entrys_size_lets_the_runner_deliver_everything(
    small_disk: Path,
) -> None:
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * ONE_ENTRY)  # what the operator will free
    handler = ScriptedHandler()
    now = time.time() - 1
    queue = SQLiteQueue(small_disk / "queue" / "queue.db")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(queue.close)
        port = await stack.enter_async_context(serve(handler))
        dest = Destination("127.0.0.1", port, "none")
        queued: list[str] = []
        for n in range(1000):
            people = (f"r{n}@example.com", f"s{n}@example.com")
            try:
                await queue.put(QueueEntry(
                    key=f"k{n}", destination=dest, sender="s@example.org", message_id=f"<full{n}@test>",
                    recipients=tuple(PendingRecipient(a, now, deferrals=1) for a in people),
                    created_at=now, next_attempt_at=now, expires_at=now + 86400, data=message(n),
                ))
            except QueueError as exc:
                assert "disk is full" in str(exc)
                break
            queued.extend(people)
        else:
            pytest.fail("the disk never filled up")
        fill(small_disk)
        assert os.statvfs(small_disk).f_bavail == 0
        assert len(queued) >= 20  # the queue itself filled the disk

        ballast.unlink()  # about one entry's size, and no more
        runner = QueueRunner(
            queue, lambda d: Mailer(d.host, d.port, tls="none", policy=FAST), concurrency=10, lease_s=30,
        )
        stats = await runner.run(once=True)
        left = await queue.entries()
    assert left == []
    assert stats.delivered == len(queued) and stats.possible_duplicates == 0
    assert handler.copies == Counter(dict.fromkeys(queued, 1))  # everyone, once
