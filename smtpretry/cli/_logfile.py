"""Where a command writes the decision log: ``--log-file`` (JSON lines) and ``-v`` (on
stderr, in the form ``logs tail`` shows, or JSON lines with ``--log-format json``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click
from rich.console import Console

from .._logging import configure_logging, configure_outputs, json_writer
from ..logs.parse import Record, parse_time
from ._errors import fail
from .render import line

__all__ = ["LOG_FORMATS", "log_options", "open_log", "readable_writer"]

F = TypeVar("F", bound=Callable[..., Any])

LOG_FORMATS = ("text", "json")


def log_options(f: F) -> F:
    """``--log-file FILE``, ``-v``/``--verbose`` and ``--log-format``, the same on every command."""
    f = click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
                     help="How -v writes the decision log on stderr: for people (as logs tail), or "
                          "JSON lines for machines.")(f)
    f = click.option("-v", "--verbose", is_flag=True,
                     help="Write every decision to stderr as it is taken (see --log-format).")(f)
    return click.option("--log-file", type=click.Path(dir_okay=False),
                        help="Append the JSON decision log here (created 0600).")(f)


def readable_writer(stream: IO[str]) -> Callable[[dict[str, Any]], None]:
    """Each event as ``logs tail`` shows it: one line, coloured on a terminal."""
    console = Console(file=stream, highlight=False, soft_wrap=True)

    def write(event_dict: dict[str, Any]) -> None:
        event = str(event_dict.get("event", ""))
        record = Record(event, event_dict, parse_time(event_dict.get("timestamp")), "<stderr>", 0, 0)
        console.print(line(record))

    return write


def open_log(log_file: str | None, *, verbose: bool = False, log_format: str = "text") -> None:
    """Turn the decision log on: JSON lines to ``log_file``, and with ``verbose`` every
    decision on stderr (readable, or JSON with ``log_format="json"``); both at once when
    both are asked for.

    The CLI opens the file itself (append, mode 0600 as ``configure_logging``
    would) so that it can close it when the command ends.
    """
    writers = []
    if log_file is not None:
        try:
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            fail(f"cannot open the log file {log_file}: {exc.strerror or exc}")
        stream = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        click.get_current_context().call_on_close(stream.close)
        writers.append(json_writer(stream))
    if verbose:
        writers.append(json_writer(sys.stderr) if log_format == "json" else readable_writer(sys.stderr))
    # The CLI is the application: it decides where the log goes, whatever
    # else may have configured structlog in this process.
    if writers:
        configure_outputs(writers)
    else:
        configure_logging(json=True, file=None, level="none")
