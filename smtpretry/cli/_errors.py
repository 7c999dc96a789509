"""The one way every ``smtpretry`` command reports bad input: one line on
stderr, ``smtpretry: error: ...``, exit status 2, never a traceback; and the
one way it says that nothing matched (a filter, a trace): one line on stderr,
``smtpretry: ...``, exit status 1, as ``grep`` exits 1."""

from __future__ import annotations

import sys
from typing import IO, Any, NoReturn

import click

__all__ = ["InputError", "fail", "nothing"]


class InputError(click.ClickException):
    """Bad input: one line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"smtpretry: error: {self.format_message()}", file=file, err=True)


def fail(message: str) -> NoReturn:
    raise InputError(message)


def nothing(message: str) -> NoReturn:
    """Nothing matched: ``smtpretry: MESSAGE`` on stderr, exit status 1."""
    click.echo(f"smtpretry: {message}", err=True)
    sys.exit(1)
