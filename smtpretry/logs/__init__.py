"""Read decision logs back: parse, summary, trace, tail, report.

The modules read what ``configure_logging(json=True)`` writes: one JSON object per line,
with the event names and keys of :mod:`smtpretry.events`. Nothing here imports the mailer
or a command-line library: reading a log needs only the schema. The ``smtpretry logs``
commands over them, and the rendering for people, are in ``smtpretry.cli``.
"""

from __future__ import annotations

from .parse import LogInputError, ReadStats, Record, read_records
from .summary import Summary, summarize
from .trace import select

__all__ = ["LogInputError", "ReadStats", "Record", "Summary", "read_records", "select", "summarize"]
