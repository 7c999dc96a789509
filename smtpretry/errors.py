"""Exceptions raised at smtpretry's public edges.

Inside the package a server reply is never an exception: replies and transport
failures are values. Only the public edges raise, with one clear message::

    SMTPRetryError
    ├── ConfigError (also ValueError)     names the key and what is expected
    │   └── SMTPConfigError               (also smtplib.SMTPException)
    ├── ReplyParseError (also ValueError) text that is not an SMTP reply
    ├── MessageError (also ValueError)    a message or envelope that cannot be sent
    ├── DeliveryError                     .result: SendResult
    └── QueueError                        corrupt or locked store, bad URL
        ├── SMTPQueueError                (also smtplib.SMTPException)
        └── BackendError                  the shared backend (Redis) is unreachable
            └── SMTPBackendError          (also smtplib.SMTPException)

The ``SMTP...Error`` twins are what the smtplib facade raises for the same
trouble, so that ``except smtplib.SMTPException`` (and Django's
``fail_silently``) catches everything a send can raise.
"""

from __future__ import annotations

import smtplib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .result import SendResult

__all__ = [
    "BackendError",
    "ConfigError",
    "DeliveryError",
    "MessageError",
    "QueueError",
    "ReplyParseError",
    "SMTPBackendError",
    "SMTPConfigError",
    "SMTPQueueError",
    "SMTPRetryError",
]


class SMTPRetryError(Exception):
    """Base class of every exception smtpretry raises."""


class ConfigError(SMTPRetryError, ValueError):
    """A setting is missing, of the wrong type or out of range."""


class ReplyParseError(SMTPRetryError, ValueError):
    """Text that is not an SMTP reply."""


class MessageError(SMTPRetryError, ValueError):
    """A message or envelope that cannot be sent as given (no recipients,
    CR/LF in an address, a non-ASCII address without SMTPUTF8, ...)."""


class DeliveryError(SMTPRetryError):
    """A send could not be carried out; ``.result`` says what happened to each recipient."""

    def __init__(self, message: str, result: SendResult) -> None:
        super().__init__(message)
        self.result = result


class QueueError(SMTPRetryError):
    """The deferred queue cannot be opened or written.

    Raised by a send whose deferred recipients could not be written, ``.result``
    is that send's :class:`~smtpretry.SendResult`: what happened to every
    recipient, the deferred ones (not saved) included. Otherwise it is ``None``.
    """

    def __init__(self, message: str, result: SendResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class BackendError(QueueError):
    """The shared backend (Redis) is unreachable or refused a command."""


class SMTPConfigError(ConfigError, smtplib.SMTPException):
    """A :class:`ConfigError` raised through the smtplib facade.

    .. versionadded:: 0.5
    """


class SMTPQueueError(QueueError, smtplib.SMTPException):
    """A :class:`QueueError` raised through the smtplib facade (``.result`` kept).

    .. versionadded:: 0.5
    """


class SMTPBackendError(BackendError, smtplib.SMTPException):
    """A :class:`BackendError` raised through the smtplib facade (``.result`` kept).

    .. versionadded:: 0.5
    """
