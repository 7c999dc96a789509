"""Stream decision-log records back from JSON-lines files.

What this module owns: turning the bytes ``configure_logging(json=True)`` wrote into
:class:`Record` values, one at a time, and counting every line it had to skip.

Inputs are plain files, gzipped files (recognised by their magic bytes, so ``x.log.2.gz``
and a gzipped file without the suffix both work), and ``-`` for standard input. Several
paths are read one after the other in the order given: pass rotated files oldest first
(``x.log.2.gz x.log.1 x.log``) for a time-ordered stream.

Nothing is loaded whole: lines are read and decoded one by one, so memory does not grow
with the size of the log.

How readers cope with change (``schema_version``, see ``events.py``):

- a record whose ``schema_version`` is newer than this reader's is skipped and counted
  (``newer_schema``): its keys may mean something else now;
- an ``smtpretry.*`` event this reader does not know is skipped and counted
  (``unknown_event``); unknown keys on known events are ignored;
- lines that are not JSON, or are cut short (the last line of a log being written, or a
  crash mid-write), are counted (``bad_json`` / ``truncated``), never fatal;
- JSON objects that are not smtpretry events (the application's own log lines in the same
  file) are counted as ``foreign`` and skipped.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, cast

from ..errors import SMTPRetryError
from ..events import EVENT_PREFIX, EVENTS, SCHEMA_VERSION, K

__all__ = [
    "STDIN",
    "LogInputError",
    "ReadStats",
    "Record",
    "check_inputs",
    "clock",
    "open_input",
    "parse_line",
    "parse_time",
    "read_records",
]

STDIN = "-"
_KNOWN = frozenset(EVENTS)
_GZIP_MAGIC = b"\x1f\x8b"
_SAMPLES = 5  # bad lines remembered per reason, for the message that reports them
_decode = json.JSONDecoder().decode


class LogInputError(SMTPRetryError):
    """A log file that cannot be opened (missing, a directory, unreadable)."""


class Record:
    """One decision from the log.

    ``fields`` is the JSON object as written (``event``, ``schema_version``, ``timestamp``,
    the bound ``destination``, ``message_id`` and ``send_id``, and the event's keys). ``ts`` is the
    ``timestamp`` key as epoch seconds (None when absent or unreadable). ``source`` and
    ``line`` say where it was read, ``seq`` is its position in the whole stream.
    """

    __slots__ = ("event", "fields", "line", "seq", "source", "ts")

    def __init__(self, event: str, fields: dict[str, Any], ts: float | None, source: str, line: int,
                 seq: int) -> None:
        self.event = event
        self.fields = fields
        self.ts = ts
        self.source = source
        self.line = line
        self.seq = seq

    def __repr__(self) -> str:
        return f"Record({self.event!r}, {self.source}:{self.line})"

    @property
    def destination(self) -> str:
        value = self.fields.get(K.DESTINATION)
        return value if isinstance(value, str) else "?"

    @property
    def message_id(self) -> str | None:
        value = self.fields.get(K.MESSAGE_ID)
        return value if isinstance(value, str) else None

    @property
    def send_id(self) -> str | None:
        """The send (one ``deliver()`` call) the event belongs to; None in logs written
        before ``send_id``, and on events that are not part of a send."""
        value = self.fields.get(K.SEND_ID)
        return value if isinstance(value, str) and value else None

    @property
    def recipients(self) -> list[str]:
        """The recipients the event is about: ``recipients`` (a list) or ``recipient``."""
        many = self.fields.get(K.RECIPIENTS)
        if isinstance(many, list):
            return [r for r in many if isinstance(r, str)]
        one = self.fields.get(K.RECIPIENT)
        return [one] if isinstance(one, str) else []

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


@dataclass(slots=True)
class ReadStats:
    """What reading the inputs met, line by line.

    ``records`` were handed on; every other counter is lines skipped for that reason.
    ``samples`` keeps the first few ``file:line`` of each reason, for the report.
    ``by_file`` counts the records of each input: an input with none (``without_records``)
    is not a decision log, or not yet one.
    """

    lines: int = 0
    records: int = 0
    blank: int = 0
    bad_json: int = 0
    truncated: int = 0
    foreign: int = 0
    no_schema: int = 0
    newer_schema: int = 0
    unknown_event: int = 0
    unreadable: int = 0
    files: list[str] = field(default_factory=list)
    samples: dict[str, list[str]] = field(default_factory=dict)
    newest_schema: int = SCHEMA_VERSION
    by_file: dict[str, int] = field(default_factory=dict)
    lines_by_file: dict[str, int] = field(default_factory=dict)

    BAD = ("bad_json", "truncated", "no_schema", "newer_schema", "unknown_event", "unreadable")

    @property
    def skipped(self) -> int:
        """Lines that looked like they were meant for us but could not be used."""
        return sum(getattr(self, reason) for reason in self.BAD)

    def note(self, reason: str, where: str) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        kept = self.samples.setdefault(reason, [])
        if len(kept) < _SAMPLES:
            kept.append(where)

    def without_records(self) -> list[str]:
        """The inputs read that held no smtpretry record, in the order given."""
        return [f for f in dict.fromkeys(self.files) if not self.by_file.get(f)]

    def no_records(self, source: str) -> str:
        """One line saying that ``source`` held no smtpretry record, and what it held."""
        lines = self.lines_by_file.get(source, 0)
        held = "is empty" if not lines else f"has {lines} line{'s' if lines != 1 else ''}, none of them one"
        return (f"{source}: no smtpretry records: it {held} (a decision log is the JSON lines "
                f"configure_logging(json=True, file=...) writes)")

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "lines": self.lines,
            "records": self.records,
            "skipped": self.skipped,
            "blank": self.blank,
            "foreign": self.foreign,
            **{reason: getattr(self, reason) for reason in self.BAD},
            "newest_schema_seen": self.newest_schema,
            "samples": {k: list(v) for k, v in self.samples.items()},
        }

    def describe(self) -> str | None:
        """One line naming what was skipped, or None when nothing was."""
        parts = []
        names = {
            "bad_json": "not JSON",
            "truncated": "truncated",
            "no_schema": "without schema_version",
            "newer_schema": f"newer schema (up to version {self.newest_schema}; this reader knows "
                            f"{SCHEMA_VERSION})",
            "unknown_event": "unknown event",
            "unreadable": "unreadable file",
        }
        for reason in self.BAD:
            count = getattr(self, reason)
            if count:
                first = self.samples.get(reason, ["?"])[0]
                parts.append(f"{count} {names[reason]} (first at {first})")
        if not parts:
            return None
        return f"skipped {self.skipped} of {self.lines} lines: " + ", ".join(parts)


def parse_time(value: object) -> float | None:
    """Epoch seconds from a ``timestamp`` value: ISO-8601 text (naive means UTC, as
    ``configure_logging`` writes ``...Z``) or a number of epoch seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def clock(ts: float | None, *, date: bool = False) -> str:
    """``HH:MM:SS.mmm`` (UTC), with the date in front when asked."""
    if ts is None:
        return "?" * (23 if date else 12)
    moment = datetime.fromtimestamp(ts, UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")
    return text[:-3]


def check_inputs(paths: Iterable[str]) -> list[str]:
    """The paths, each checked to be a readable file (or ``-``) before anything is read.

    :raises LogInputError: naming the first path that cannot be read
    """
    checked = []
    for path in paths:
        if path != STDIN:
            if not os.path.exists(path):
                raise LogInputError(f"{path}: no such file")
            if os.path.isdir(path):
                raise LogInputError(f"{path}: is a directory")
            if not os.access(path, os.R_OK):
                raise LogInputError(f"{path}: permission denied")
        checked.append(path)
    if not checked:
        raise LogInputError("no log file given")
    return checked


def open_input(path: str) -> IO[bytes]:
    """A binary stream over ``path`` (``-`` is stdin), un-gzipped when it starts with
    gzip's magic bytes."""
    raw: IO[bytes]
    if path == STDIN:
        raw = sys.stdin.buffer
        peek = getattr(raw, "peek", None)
        head = peek(2)[:2] if peek is not None else b""
        if head == _GZIP_MAGIC:
            return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        return raw
    try:
        raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise LogInputError(f"{path}: {exc.strerror or exc}") from None
    head = raw.read(2)
    raw.seek(0)
    if head == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


def parse_line(raw: bytes, stats: ReadStats, source: str, lineno: int, seq: int,
               *, complete: bool = True) -> Record | None:
    """One line as a :class:`Record`, or None after counting why it was skipped.

    ``complete`` is False for a last line without its newline: if it does not parse, it was
    cut short (``truncated``) rather than garbage.
    """
    stats.lines += 1
    stats.lines_by_file[source] = stats.lines_by_file.get(source, 0) + 1
    if not raw.strip():
        stats.blank += 1
        return None
    where = f"{source}:{lineno}"
    try:
        obj = _decode(raw.decode("utf-8"))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        stats.note("bad_json" if complete else "truncated", where)
        return None
    if not isinstance(obj, dict):
        stats.note("bad_json", where)
        return None
    event = obj.get(K.EVENT)
    if not isinstance(event, str) or not event.startswith(EVENT_PREFIX):
        stats.foreign += 1
        return None
    version = obj.get(K.SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        stats.note("no_schema", where)
        return None
    if version > SCHEMA_VERSION:
        stats.newest_schema = max(stats.newest_schema, version)
        stats.note("newer_schema", where)
        return None
    if event not in _KNOWN:
        stats.note("unknown_event", where)
        return None
    stats.records += 1
    stats.by_file[source] = stats.by_file.get(source, 0) + 1
    return Record(event, obj, parse_time(obj.get(K.TIMESTAMP)), source, lineno, seq)


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    yield from stream


def read_records(paths: Iterable[str], stats: ReadStats | None = None) -> Iterator[Record]:
    """Every usable record of ``paths``, in the order given, line by line.

    Lines that cannot be used are counted in ``stats`` (pass one to read the counts). A file
    that turns out to be unreadable half-way (a corrupt or cut-short gzip) is counted as
    ``unreadable`` and reading goes on with the next one.

    :raises LogInputError: a path cannot be opened (call :func:`check_inputs` first to
        fail before any output)
    """
    stats = stats if stats is not None else ReadStats()
    seq = 0
    for path in paths:
        source = "<stdin>" if path == STDIN else path
        stats.files.append(source)
        stream = open_input(path)
        lineno = 0
        try:
            for raw in _lines(stream):
                lineno += 1
                record = parse_line(raw, stats, source, lineno, seq, complete=raw.endswith(b"\n"))
                if record is not None:
                    seq += 1
                    yield record
        except (OSError, EOFError, zlib.error) as exc:
            # gzip.BadGzipFile is an OSError; a cut-short gzip raises EOFError.
            stats.note("unreadable", f"{source}:{lineno + 1} ({exc})")
        finally:
            if path != STDIN:
                stream.close()
