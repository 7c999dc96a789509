"""The one way every ``smtpretry`` command reports bad input: one line on
stderr, ``smtpretry: error: ...``, exit status 2, never a traceback."""

from __future__ import annotations

from typing import IO, Any, NoReturn

import click

__all__ = ["InputError", "fail"]


class InputError(click.ClickException):
    """Bad input: one line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"smtpretry: error: {self.format_message()}", file=file, err=True)


def fail(message: str) -> NoReturn:
    raise InputError(message)
