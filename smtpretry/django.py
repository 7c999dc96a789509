"""A Django email backend that sends through smtpretry.

``EMAIL_BACKEND = "smtpretry.django.EmailBackend"``: Django's own SMTP
backend, with smtpretry's :class:`~smtpretry.SMTP` / :class:`~smtpretry.SMTP_SSL`
as its connection class, so every ``send_mail`` and ``send_mass_mail`` gets
the classification, retries, connection caps and decision log. The settings
are Django's (``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_USE_TLS``, ...); caps
and policies come from ``smtpretry.configure()`` or ``SMTPRETRY_CONFIG``.

Install with ``pip install smtpretry[django]``.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import Any

from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from .compat import SMTP, SMTP_SSL

__all__ = ["EmailBackend"]


class EmailBackend(DjangoSMTPBackend):  # type: ignore[misc]
    """Django's SMTP backend over smtpretry's smtplib drop-in."""

    @property
    def connection_class(self) -> Any:
        return SMTP_SSL if self.use_ssl else SMTP
