"""Which configuration and which queue a command uses: one precedence, written once.

Every command that reads the configuration or the queue (``send`` and each ``queue``
subcommand) resolves them here, with :func:`resolve`:

- the configuration: ``--config FILE``, else ``$SMTPRETRY_CONFIG``, else none (the
  defaults);
- the queue: ``--queue URL``, else ``$SMTPRETRY_QUEUE``, else the configuration's
  ``[queue] url`` (or its ``backend``, which moves the queue too), else the default
  queue in the user's state directory (``$XDG_STATE_HOME/smtpretry/queue.db``).

An environment variable set to the empty string counts as unset. The default queue is
for the ``queue`` commands: ``send`` writes deferred recipients to a queue only when one
is *named* (:attr:`Resolution.queue_named`), by a flag, the environment or the
configuration.

:func:`config_option` and :func:`queue_option` are the two click options, with the
same names and help everywhere; the commands pass what they got to :func:`resolve`.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import ENV_VAR as CONFIG_ENV
from ..config import Config, load_config
from ..errors import ConfigError, QueueError
from ..queue.base import Queue, default_queue_path, open_queue
from ._errors import fail

__all__ = [
    "CONFIG_ENV",
    "QUEUE_ENV",
    "Resolution",
    "Source",
    "config_option",
    "queue_option",
    "resolve",
]

QUEUE_ENV = "SMTPRETRY_QUEUE"

F = TypeVar("F", bound=Callable[..., Any])


class Source(StrEnum):
    """Where a setting came from, in the order of precedence."""

    FLAG = "flag"
    ENVIRONMENT = "environment"
    CONFIGURATION = "configuration"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Resolution:
    """What :func:`resolve` found.

    ``config`` is the loaded configuration (``Config()`` when none is named);
    ``config_path`` the file and ``config_source`` who named it (``None``: nobody).
    ``queue_url`` is always set: the default queue's path when nothing names one;
    ``queue_source`` says who named it.
    """

    config: Config
    config_path: str | None
    config_source: Source | None
    queue_url: str
    queue_source: Source

    @property
    def queue_named(self) -> bool:
        """A flag, the environment or the configuration named the queue (``send``
        queues only then)."""
        return self.queue_source is not Source.DEFAULT

    @property
    def queue_origin(self) -> str:
        """Who named the queue, for people: ``--queue``, ``SMTPRETRY_QUEUE``,
        ``[queue] url of FILE`` or ``the default``."""
        match self.queue_source:
            case Source.FLAG:
                return "--queue"
            case Source.ENVIRONMENT:
                return QUEUE_ENV
            case Source.CONFIGURATION:
                return f"[queue] url of {self.config_path}"
            case Source.DEFAULT:
                return "the default"

    @property
    def queue_path(self) -> Path | None:
        """The SQLite file the queue lives in (absolute), or ``None`` for a queue
        without a file (Redis) or a URL that names none (opening it says why)."""
        scheme = urllib.parse.urlsplit(self.queue_url).scheme.lower()
        if scheme in ("redis", "rediss"):
            return None
        try:
            path = getattr(open_queue(self.queue_url, create=False), "path", None)
        except QueueError:
            return None
        return path.absolute() if isinstance(path, Path) else None

    def open_queue(self, *, create: bool) -> Queue:
        """The queue, not opened yet. ``create=False`` for commands that only read
        or edit a queue: a missing SQLite file is then ``no queue at PATH``, and
        nothing is created.

        :raises QueueError: a bad URL.
        """
        return open_queue(self.queue_url, create=create)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value else None


def resolve(
    config: str | None = None, queue: str | None = None, *, environ: Mapping[str, str] | None = None
) -> Resolution:
    """The configuration and the queue a command uses, from its ``--config`` and
    ``--queue`` values (``None`` when not given) and the environment's
    ``SMTPRETRY_CONFIG`` and ``SMTPRETRY_QUEUE`` (``os.environ`` unless ``environ`` is
    given; the default queue's path is :func:`~smtpretry.queue.default_queue_path`'s).
    The configuration named is loaded.

    Bad input is one line on stderr and exit status 2 (:func:`~._errors.fail`): an
    empty flag, or a configuration that does not load (every problem, joined by ``;``).
    """
    environ = os.environ if environ is None else environ
    if config is not None and not config.strip():
        fail("--config: expected a file name, got ''")
    if queue is not None and not queue.strip():
        fail("--queue: expected a queue URL or a file path, got ''")
    config_source: Source | None = None
    if config is not None:
        config_source = Source.FLAG
    elif (config := _env(environ, CONFIG_ENV)) is not None:
        config_source = Source.ENVIRONMENT
    loaded = Config()
    if config is not None:
        try:
            loaded = load_config(config)
        except ConfigError as exc:
            where = "" if config_source is Source.FLAG else f" (named by {CONFIG_ENV})"
            fail(str(exc).replace("\n", "; ") + where)
    if queue is not None:
        url, source = queue, Source.FLAG
    elif (env_queue := _env(environ, QUEUE_ENV)) is not None:
        url, source = env_queue, Source.ENVIRONMENT
    elif loaded.queue_url is not None:
        url, source = loaded.queue_url, Source.CONFIGURATION
    else:
        url, source = str(default_queue_path()), Source.DEFAULT
    return Resolution(loaded, config, config_source, url, source)


def config_option(f: F) -> F:
    """``--config FILE``: over ``$SMTPRETRY_CONFIG`` (see :func:`resolve`)."""
    return click.option(
        "--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
        help=f"TOML configuration: limits and policy per destination, profiles, the queue "
             f"[default: ${CONFIG_ENV}].",
    )(f)


def queue_option(f: F) -> F:
    """``--queue URL``: over ``$SMTPRETRY_QUEUE`` and ``[queue] url`` (see :func:`resolve`)."""
    return click.option(
        "--queue", "queue_url", metavar="URL",
        help=f"The queue: sqlite:///path/queue.db, a file path or redis://... [default: "
             f"${QUEUE_ENV}, else [queue] url of the configuration, else {default_queue_path()}].",
    )(f)
