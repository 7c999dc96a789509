"""Records as they arrive: read a log to its end and, in follow mode, keep polling it.

What this module owns: :func:`follow`, which yields records from a growing JSON-lines file.
It reads complete lines only (a line still being written waits for its newline), notices
rotation (the path now names another file, or the file got shorter) and carries on with the
new file from its start. Rendering for people is ``smtpretry.cli.render.line``.
"""

from __future__ import annotations

import collections
import gzip
import os
import time
from collections.abc import Callable, Iterator
from typing import IO

from .parse import STDIN, ReadStats, Record, open_input, parse_line

__all__ = ["follow"]


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def follow(
    path: str,
    *,
    stats: ReadStats | None = None,
    keep_following: bool = True,
    last: int | None = None,
    poll_s: float = 0.5,
    stop: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Record]:
    """Yield the records of ``path`` as they are written.

    ``last`` starts with the last ``last`` lines already there (all of them when None).
    With ``keep_following`` the file is polled every ``poll_s`` seconds after its end,
    until ``stop()`` returns True (checked at each poll; for ever without it). ``-`` reads
    standard input until it closes. Gzipped files are read once: they do not grow.
    """
    stats = stats if stats is not None else ReadStats()
    source = "<stdin>" if path == STDIN else path
    stats.files.append(source)
    stream: IO[bytes] = open_input(path)
    lineno = 0
    seq = 0
    try:
        if last is not None:
            tail: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=max(0, last))
            for raw in iter(stream.readline, b""):
                lineno += 1
                if not raw.endswith(b"\n") and keep_following and path != STDIN:
                    stream.seek(stream.tell() - len(raw))  # half-written: read it again later
                    lineno -= 1
                    break
                tail.append((lineno, raw))
            pending = list(tail)
        else:
            pending = []
        for number, raw in pending:
            record = parse_line(raw, stats, source, number, seq, complete=raw.endswith(b"\n"))
            if record is not None:
                seq += 1
                yield record
        growing = keep_following and path != STDIN and not isinstance(stream, gzip.GzipFile)
        partial = b""
        ident = _identity(path) if growing else None
        rotated = False
        while True:
            raw = stream.readline()
            if raw:
                if not raw.endswith(b"\n") and growing and not rotated:
                    partial += raw  # still being written: wait for the rest
                    continue
                raw, partial = partial + raw, b""
                lineno += 1
                record = parse_line(raw, stats, source, lineno, seq, complete=raw.endswith(b"\n"))
                if record is not None:
                    seq += 1
                    yield record
                continue
            if rotated:
                # The old file is read to its end: go on with the one that has its name now.
                if partial:
                    lineno += 1
                    parse_line(partial, stats, source, lineno, seq, complete=False)
                stream.close()
                stream = open_input(path)
                ident, lineno, partial, rotated = _identity(path), 0, b"", False
                continue
            if not growing:
                if partial:
                    lineno += 1
                    parse_line(partial, stats, source, lineno, seq, complete=False)
                return
            if stop is not None and stop():
                return
            sleep(poll_s)
            now = _identity(path)
            try:
                shrunk = os.stat(path).st_size < stream.tell()
            except OSError:
                shrunk = False
            if now is not None and (now != ident or shrunk):
                rotated = True  # first read what was added to the old file meanwhile
    finally:
        if path != STDIN:
            stream.close()
