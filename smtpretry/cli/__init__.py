"""The ``smtpretry`` command line: every command, in one package.

``smtpretry send`` (``send.py``), ``demo`` (``demo.py``, with its server in
``demo_server.py``), ``config check`` (``config.py``) and ``config init``
(``config_init.py``), ``queue ...`` (``queue.py``) and ``logs ...`` (``logs.py``), each
registered below by name; tables drawn the same way everywhere (``_table.py``); ``render.py`` says how a
decision reads to a person, for all of them. The commands are thin over the library.
Bad input (a missing file, a message without sender or recipients, a bad setting, an
unknown option) is one line on stderr, ``smtpretry: error: ...``, and exit status 2, never
a traceback; a selection that matched nothing is ``smtpretry: ...`` and exit status 1
(``_errors.py``: every group is an ``_errors.Group``, which says click's usage errors the
same way).

The CLI is an application, so unlike the library it may configure logging:
``--log-file`` (and ``send -v``) turn the JSON decision log on through
:func:`smtpretry.configure_logging`.

It needs the ``cli`` extra (click, rich, aiosmtpd); the console script starts in
``smtpretry.__main__``, which says so in one line when they are missing.
"""

from __future__ import annotations

import click

from .. import __version__
from ._errors import Group
from .config import config_group
from .demo import demo_command
from .logs import logs_group
from .queue import queue_group
from .send import send_command

__all__ = ["cli", "main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="smtpretry")
def cli() -> None:
    """Send mail over SMTP that survives throttling."""


cli.add_command(send_command)
cli.add_command(demo_command)
cli.add_command(config_group)
cli.add_command(queue_group)
cli.add_command(logs_group)


def main() -> None:
    """Run the ``smtpretry`` command."""
    cli(prog_name="smtpretry")
