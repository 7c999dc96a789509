"""The one way every ``smtpretry`` command reports bad input: one line on
stderr, ``smtpretry: error: ...``, exit status 2, never a traceback; and the
one way it says that nothing matched (a filter, a trace): one line on stderr,
``smtpretry: ...``, exit status 1, as ``grep`` exits 1."""

from __future__ import annotations

import os
import sys
from typing import IO, Any, NoReturn

import click

__all__ = ["Group", "InputError", "fail", "nothing"]


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


# click >= 8.2 raises this for a group run without a command (its message is the help).
_NO_ARGS_IS_HELP: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if isinstance(c, type)
)


def _usage(exc: click.UsageError) -> str:
    """A usage error in the house style: ``queue delete: missing argument 'ID' (see
    'smtpretry queue delete --help')``."""
    message = exc.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = exc.ctx
    if ctx is None:
        return message
    path = ctx.command_path
    where = path.partition(" ")[2]
    return f"{where + ': ' if where else ''}{message} (see '{path} --help')"


class Group(click.Group):
    """A click group whose every error reads as smtpretry's: a usage error (an unknown
    option, a missing argument, a bad value) is one line, ``smtpretry: error: ...``, exit
    status 2, as :class:`InputError` is, not click's ``Usage:`` block and ``Error:`` line;
    Ctrl-C is ``smtpretry: interrupted`` and exit status 130. Every group of the command
    line is one, so a subcommand run alone (in tests) speaks the same way."""

    def main(
        self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            if isinstance(exc, _NO_ARGS_IS_HELP):
                # A group run without a command: its help, as click shows it.
                click.echo(exc.format_message(), err=True)
            else:
                click.echo(f"smtpretry: error: {_usage(exc)}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("smtpretry: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # `smtpretry logs tail app.log | head`: the reader went away; say nothing more.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the interpreter's own flush at exit
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)
