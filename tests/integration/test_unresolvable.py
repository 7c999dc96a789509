"""A host name that does not resolve is a ``dns`` failure, never a refused connection.

No test here sends a DNS query: names under ``.invalid`` are answered at once without one
(RFC 6761 6.4), and the lookup error of a real ``getaddrinfo`` is made with
``AI_NUMERICHOST``, which fails before any resolver is asked.
"""

from __future__ import annotations

import socket

import aiosmtplib
import pytest
from structlog.testing import capture_logs

import smtpretry
from smtpretry import FailureKind, Mailer, Phase, TransportFailure
from smtpretry.endpoint import Endpoint
from smtpretry.transport import _failure, open_session

MESSAGE = b"From: s@example.org\r\nTo: a@example.com, b@example.com\r\nSubject: x\r\n\r\nhi\r\n"


@pytest.mark.parametrize(("host", "detail"), [
    ("smtp.nosuch.invalid", "smtp.nosuch.invalid does not resolve (RFC 6761: names under .invalid never do)"),
    ("INVALID.", "INVALID. does not resolve (RFC 6761: names under .invalid never do)"),
    ("", "no host name to connect to"),
    ("a..example.com", "'a..example.com' is not a host name"),
])
async def test_a_name_that_cannot_resolve_is_a_dns_failure_of_the_connect_phase(
    host: str, detail: str
) -> None:
    got = await open_session(Endpoint(host=host, port=25, tls="none"))
    assert isinstance(got, TransportFailure)
    assert (got.kind, got.phase) == (FailureKind.DNS, Phase.CONNECT)
    assert got.detail.startswith(detail)


def test_a_lookup_error_from_getaddrinfo_is_a_dns_failure() -> None:
    try:
        socket.getaddrinfo("smtp.example.net", 25, flags=socket.AI_NUMERICHOST)  # no query: not numeric
    except socket.gaierror as lookup:
        # aiosmtplib wraps the OSError of create_connection this way (smtp.py, _create_connection)
        try:
            raise aiosmtplib.SMTPConnectError(f"Error connecting to smtp.example.net on port 25: {lookup}") \
                from lookup
        except aiosmtplib.SMTPConnectError as wrapped:
            got = _failure(wrapped, Phase.CONNECT)
    assert isinstance(got, TransportFailure)
    assert (got.kind, got.phase) == (FailureKind.DNS, Phase.CONNECT)
    assert got.detail.startswith("the host name does not resolve (")


async def test_a_mailer_defers_every_recipient_at_once_and_logs_a_dns_failure() -> None:
    with capture_logs() as logs:
        async with Mailer("smtp.nosuch.invalid", 25, tls="none") as mailer:
            result = await mailer.send(MESSAGE)
    assert sorted(result.deferred) == ["a@example.com", "b@example.com"]
    for outcome in result.deferred.values():
        assert outcome.attempts == 1  # no in-session retry: the resolver's answer would be the same
        assert outcome.failure is not None and outcome.failure.kind is FailureKind.DNS
        assert (outcome.classification.category.value, outcome.classification.action.value) == (
            "service_unavailable", "defer")
    assert [e["event"] for e in logs] == ["smtpretry.recipient_deferred"] * 2 + ["smtpretry.send_completed"]
    assert {e["failure"] for e in logs if "failure" in e} == {"dns"}


def test_the_smtplib_facade_raises_what_smtplib_raises_for_a_name_that_does_not_resolve() -> None:
    with pytest.raises(socket.gaierror, match="does not resolve"):
        smtpretry.SMTP("smtp.nosuch.invalid", 25)
