"""Records as they arrive: read logs to their end and, in follow mode, keep polling them.

What this module owns: :class:`Follower`, which reads the records of one growing
JSON-lines file as they are written, and :func:`follow_many` / :func:`follow`, which
yield the records of several files (or one) as they arrive. A follower reads complete
lines only (a line still being written waits for its newline), notices rotation (the path
now names another file, or the file got shorter) and carries on with the new file from its
start. Following by name (``wait``), it waits for a file that does not exist yet, as
``tail -F`` does. Rendering for people is ``smtpretry.cli.render.line``.
"""

from __future__ import annotations

import collections
import gzip
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from .parse import STDIN, LogInputError, ReadStats, Record, open_input, parse_line

__all__ = ["Follower", "follow", "follow_many"]


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class _Seq:
    """The position of the next record in the whole stream, shared by the followers."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Follower:
    """The records of one file, as far as they are written each time :meth:`poll` is called.

    ``last`` starts with the last ``last`` lines already there (all of them when None).
    With ``keep_following`` the file is read again at each poll, across rotation; without,
    it is read once to its end (then :attr:`finished`). With ``wait``, a file that does not
    exist yet (or vanished) is waited for rather than an error. ``-`` reads standard input
    until it closes; gzipped files are read once: they do not grow.

    :raises LogInputError: the file cannot be opened, and ``wait`` is not set
    """

    def __init__(self, path: str, stats: ReadStats, *, keep_following: bool, last: int | None = None,
                 wait: bool = False, seq: _Seq | None = None) -> None:
        self.path = path
        self.source = "<stdin>" if path == STDIN else path
        self.stats = stats
        self.keep_following = keep_following
        self.wait = wait and path != STDIN
        self.finished = False
        self._last = last
        self._seq = seq if seq is not None else _Seq()
        self._stream: IO[bytes] | None = None
        self._growing = False
        self._ident: tuple[int, int] | None = None
        self._lineno = 0
        self._partial = b""
        self._rotated = False
        self._pending: list[tuple[int, bytes]] = []
        stats.files.append(self.source)
        self._open(first=True)

    def _open(self, *, first: bool) -> bool:
        try:
            stream = open_input(self.path)
        except LogInputError:
            if self.wait:
                return False
            raise
        self._stream = stream
        self._growing = self.keep_following and self.path != STDIN and not isinstance(stream, gzip.GzipFile)
        self._ident = _identity(self.path) if self._growing else None
        self._lineno, self._partial, self._rotated = 0, b"", False
        if first and self._last is not None:
            # The last lines already there; a line still being written is read again later.
            tail: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=max(0, self._last))
            for raw in iter(stream.readline, b""):
                self._lineno += 1
                if not raw.endswith(b"\n") and self._growing:
                    stream.seek(stream.tell() - len(raw))
                    self._lineno -= 1
                    break
                tail.append((self._lineno, raw))
            self._pending = list(tail)
        return True

    def _record(self, raw: bytes, lineno: int, out: list[Record]) -> None:
        record = parse_line(raw, self.stats, self.source, lineno, self._seq.n, complete=raw.endswith(b"\n"))
        if record is not None:
            self._seq.n += 1
            out.append(record)

    def _flush_partial(self) -> None:
        if self._partial:
            self._lineno += 1
            parse_line(self._partial, self.stats, self.source, self._lineno, self._seq.n, complete=False)
            self._partial = b""

    def poll(self) -> list[Record]:
        """The records written since the last poll (all there is, at the first)."""
        out: list[Record] = []
        if self.finished:
            return out
        if self._stream is None and not self._open(first=False):
            return out  # still waiting for the file to appear
        for number, raw in self._pending:
            self._record(raw, number, out)
        self._pending = []
        while True:
            stream = self._stream
            assert stream is not None
            raw = stream.readline()
            if raw:
                if not raw.endswith(b"\n") and self._growing and not self._rotated:
                    self._partial += raw  # still being written: wait for the rest
                    continue
                raw, self._partial = self._partial + raw, b""
                self._lineno += 1
                self._record(raw, self._lineno, out)
                continue
            if self._rotated:
                # The old file is read to its end: go on with the one that has its name now.
                self._flush_partial()
                self._close()
                if not self._open(first=False):
                    return out
                continue
            if not self._growing:
                self._flush_partial()
                self._close()
                self.finished = True
                return out
            now = _identity(self.path)
            try:
                shrunk = os.stat(self.path).st_size < stream.tell()
            except OSError:
                shrunk = False
            if now is not None and (now != self._ident or shrunk):
                self._rotated = True  # first read what was added to the old file meanwhile
                continue
            return out

    def _close(self) -> None:
        if self._stream is not None and self.path != STDIN:
            self._stream.close()
        self._stream = None

    def close(self) -> None:
        self._close()
        self.finished = True


def follow_many(
    paths: Sequence[str],
    *,
    stats: ReadStats | None = None,
    keep_following: bool = True,
    last: int | None = None,
    poll_s: float = 0.5,
    wait: bool = False,
    stop: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Record]:
    """Yield the records of ``paths`` as they are written, each file's in its order (see
    :class:`Follower` for ``last``, ``keep_following`` and ``wait``). Without
    ``keep_following`` the files are read one after the other, to their ends. With it,
    every file is polled every ``poll_s`` seconds once nothing is new, until ``stop()``
    returns True (checked at each poll; for ever without it).

    :raises LogInputError: a file cannot be opened, and ``wait`` is not set
    """
    stats = stats if stats is not None else ReadStats()
    seq = _Seq()
    followers = [Follower(p, stats, keep_following=keep_following, last=last, wait=wait, seq=seq)
                 for p in paths]
    try:
        while True:
            fresh = False
            for f in followers:
                for record in f.poll():
                    fresh = True
                    yield record
            if all(f.finished for f in followers):
                return
            if fresh:
                continue
            if stop is not None and stop():
                return
            sleep(poll_s)
    finally:
        for f in followers:
            f.close()


def follow(
    path: str,
    *,
    stats: ReadStats | None = None,
    keep_following: bool = True,
    last: int | None = None,
    poll_s: float = 0.5,
    wait: bool = False,
    stop: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Record]:
    """Yield the records of ``path`` as they are written: :func:`follow_many` of one file."""
    return follow_many([path], stats=stats, keep_following=keep_following, last=last, poll_s=poll_s,
                       wait=wait, stop=stop, sleep=sleep)
