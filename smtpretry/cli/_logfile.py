"""Where a command writes the JSON decision log (``--log-file``, ``send -v``)."""

from __future__ import annotations

import os
import sys
from typing import IO

import click

from .._logging import configure_logging
from ._errors import fail

__all__ = ["open_log"]


def open_log(log_file: str | None, *, to_stderr: bool) -> None:
    """Turn the JSON decision log on: to ``log_file``, else to stderr if asked.

    The CLI opens the file itself (append, mode 0600 as ``configure_logging``
    would) so that it can close it when the command ends.
    """
    stream: IO[str] | None = sys.stderr if to_stderr else None
    if log_file is not None:
        try:
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            fail(f"cannot open the log file {log_file}: {exc.strerror or exc}")
        stream = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        click.get_current_context().call_on_close(stream.close)
    # The CLI is the application: it decides where the log goes, whatever
    # else may have configured structlog in this process.
    configure_logging(json=True, file=stream, level="info" if stream is not None else "none")
