"""smtpretry: send mail over SMTP that survives the real world.

Every server reply is classified (``classify``) into a category and an action
(ok, retry, defer, fail); :class:`Mailer` acts on it per recipient: retries
421s with backoff on new connections under a per-destination cap, defers
over-quota mailboxes, fails messages too large, and logs every decision.
:class:`Router` sends recipients at many domains, each by its route (a
smarthost profile, or the domain's MX hosts under its provider's limits).

The package also stands in for :mod:`smtplib` (``import smtpretry as
smtplib``): :class:`SMTP` and :class:`SMTP_SSL` run the engine inside every
send, and smtplib's exceptions and constants are re-exported unchanged.

Importing the package is cheap: smtplib's names and the pure core (replies,
classification, policy, decisions, configuration, results: the standard
library only) are imported with it; the names that need the engine or a
third-party package (:class:`Mailer`, :class:`Router`, :class:`SMTP`,
:class:`SMTP_SSL`, :class:`SMTPHandler` need aiosmtplib and tenacity, :func:`configure_logging`
needs structlog) are imported on first use (PEP 562), so ``import
smtpretry.logs`` or ``smtpretry.events`` does not load the engine.
"""

import importlib as _importlib
import typing as _typing
from smtplib import (
    CRLF,
    LMTP,
    LMTP_PORT,
    OLDSTYLE_AUTH,
    SMTP_PORT,
    SMTP_SSL_PORT,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    bCRLF,
    quoteaddr,
    quotedata,
)

from .classify import RULES, Action, Category, Classification, Rule, classify, classify_reply
from .config import Config, Profile, Route, Settings, configure, load_config
from .decide import Decision, Defer, Fail, Ok, RecipientState, Retry, decide
from .endpoint import Endpoint, TLSMode
from .envelope import Envelope, build_envelope
from .errors import (
    BackendError,
    ConfigError,
    DeliveryError,
    MessageError,
    QueueError,
    ReplyParseError,
    SMTPRetryError,
)
from .policy import Delivery, Limits, RetryPolicy
from .reply import EnhancedCode, FailureKind, Phase, Reply, TransportFailure, parse_reply
from .result import Outcome, SendResult, Status

if _typing.TYPE_CHECKING:
    from ._logging import configure_logging
    from .compat import SMTP, SMTP_SSL, SMTPHandler
    from .mailer import Mailer
    from .router import Router

__version__ = "0.1.0"

_LAZY = {
    "Mailer": ".mailer",
    "Router": ".router",
    "SMTP": ".compat",
    "SMTP_SSL": ".compat",
    "SMTPHandler": ".compat",
    "configure_logging": "._logging",
}
"""The names imported on first use, and the module each comes from."""


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

__all__ = [
    # smtplib's names, so that `import smtpretry as smtplib` works (LMTP is smtplib's own)
    "CRLF",
    "LMTP",
    "LMTP_PORT",
    "OLDSTYLE_AUTH",
    "SMTP",
    "SMTP_PORT",
    "SMTP_SSL",
    "SMTP_SSL_PORT",
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupportedError",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "bCRLF",
    "quoteaddr",
    "quotedata",
    # smtpretry's own
    "SMTPHandler",
    "RULES",
    "Action",
    "BackendError",
    "Category",
    "Classification",
    "Config",
    "ConfigError",
    "Decision",
    "Defer",
    "Delivery",
    "DeliveryError",
    "EnhancedCode",
    "Endpoint",
    "Envelope",
    "Fail",
    "FailureKind",
    "Limits",
    "Mailer",
    "MessageError",
    "Ok",
    "Outcome",
    "Phase",
    "Profile",
    "QueueError",
    "RecipientState",
    "Reply",
    "ReplyParseError",
    "Retry",
    "RetryPolicy",
    "Route",
    "Router",
    "Rule",
    "SMTPRetryError",
    "SendResult",
    "Settings",
    "Status",
    "TLSMode",
    "TransportFailure",
    "__version__",
    "build_envelope",
    "classify",
    "classify_reply",
    "configure",
    "configure_logging",
    "decide",
    "load_config",
    "parse_reply",
]
