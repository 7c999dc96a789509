"""A message and its envelope, checked before anything is sent.

``build_envelope()`` takes an :class:`email.message.EmailMessage` (or any
``email.message.Message``) or raw bytes, and the optional sender and
recipients, and returns the bytes to send with the envelope, taking the
addresses from the headers the way ``smtplib.SMTP.send_message()`` does when
they are not given. Addresses with control characters (CR, LF, NUL: command
injection) are refused here, before any connection is opened.
"""

from __future__ import annotations

import copy
import email.errors
import email.generator
import email.parser
import email.policy
import email.utils
import io
import re
from dataclasses import dataclass
from email.message import Message

from .errors import MessageError

__all__ = ["Envelope", "build_envelope"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNQUOTED = re.compile(r"[<>\s]")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What goes over the wire: sender, recipients (unique, in order) and the
    message bytes. ``smtputf8`` when an address is not ASCII (RFC 6531);
    ``eightbit`` when the bytes are.

    ``mail_options`` are the ESMTP parameters of MAIL exactly as given (the
    smtplib facade passes the caller's own, ``SIZE`` included, as smtplib
    builds them); ``None`` lets the Mailer choose ``SIZE``, ``BODY=8BITMIME``
    and ``SMTPUTF8`` from what the server offers. ``rcpt_options`` go with
    every RCPT (DSN ``NOTIFY=``, ``ORCPT=``). Both are sent again on every
    retry. ``keep_line_endings`` sends the bytes' line endings as they are
    (smtplib's ``data()`` does) instead of making each one CRLF.
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message_id: str | None
    smtputf8: bool
    eightbit: bool
    mail_options: tuple[str, ...] | None = None
    rcpt_options: tuple[str, ...] = ()
    keep_line_endings: bool = False


def _check_address(address: str, role: str) -> str:
    if not isinstance(address, str):
        raise MessageError(f"{role}: expected an address as str, got {type(address).__name__}")
    if _CONTROL.search(address):
        raise MessageError(f"{role}: control characters (CR, LF, NUL...) in address {address!r}")
    address = address.strip(" \t")
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    # '<', '>' or white space would end the address inside MAIL FROM:<...> or
    # RCPT TO:<...> and let the rest pass as ESMTP parameters (RET=, NOTIFY=, ...).
    if _UNQUOTED.search(address):
        raise MessageError(f"{role}: '<', '>' or white space in address {address!r}")
    if role == "recipient" and not address:
        raise MessageError("recipient: an empty address")
    return address


_HEADER_LINE = re.compile(rb"[!-9;-~]+:|[ \t]")


def _check_headers(data: bytes) -> None:
    """Every line of the header section is a field or its continuation: a
    header value holding CR/LF (possible with compat32 ``Message`` objects)
    must not add headers or start the body early."""
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line and not _HEADER_LINE.match(line):
            raise MessageError(f"message: a header value holds a line break: {line[:60]!r}")


def _from_headers(msg: Message) -> tuple[str | None, list[str]]:
    # As smtplib.send_message(): a Resent- block, if there is one, names the envelope.
    resent = msg.get_all("Resent-Date")
    prefix = "Resent-" if resent else ""
    sender_header = msg.get(prefix + "Sender") or msg.get(prefix + "From")
    sender = email.utils.getaddresses([str(sender_header)])[0][1] if sender_header else None
    fields = [str(v) for h in ("To", "Cc", "Bcc") for v in (msg.get_all(prefix + h) or [])]
    return sender, [addr for _, addr in email.utils.getaddresses(fields) if addr]


def build_envelope(
    message: Message | bytes | str,
    sender: str | None = None,
    recipients: str | list[str] | tuple[str, ...] | None = None,
) -> Envelope:
    """Check and encode a message for sending.

    :raises MessageError: no sender or no recipient could be found, an address
        holds control characters or is not an address, or the message is of
        the wrong type.
    """
    if isinstance(message, str):
        message = message.encode("utf-8")
    if isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
        if sender is not None and recipients is not None:
            # The envelope is given: no need to parse the headers, only to find
            # the Message-ID for the log (a send's hot path).
            return _envelope(data, sender, recipients, _message_id(data))
        parsed: Message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            data, headersonly=True
        )
    elif isinstance(message, Message):
        parsed = message
        # Bcc must not travel with the message (smtplib.send_message does the same).
        if "Bcc" in message or "Resent-Bcc" in message:
            message = copy.copy(message)
            del message["Bcc"]
            del message["Resent-Bcc"]
        buf = io.BytesIO()
        policy = message.policy.clone(linesep="\r\n") if message.policy else email.policy.SMTP
        try:
            email.generator.BytesGenerator(buf, policy=policy).flatten(message)
        except (email.errors.MessageError, ValueError) as exc:
            raise MessageError(f"message: cannot be written out: {exc}") from None
        data = buf.getvalue()
        _check_headers(data)
    else:
        raise MessageError(f"message: expected an EmailMessage or bytes, got {type(message).__name__}")

    header_sender, header_rcpts = _from_headers(parsed)
    if sender is None:
        sender = header_sender
        if sender is None:
            raise MessageError("sender: none given and the message has no From or Sender header")
    if recipients is None:
        recipients = header_rcpts
    message_id = parsed.get("Message-ID")
    return _envelope(data, sender, recipients, str(message_id).strip() if message_id else None)


def _envelope(
    data: bytes, sender: str, recipients: str | list[str] | tuple[str, ...], message_id: str | None
) -> Envelope:
    sender = _check_address(sender, "sender")
    if isinstance(recipients, str):
        recipients = [recipients]
    unique = tuple(dict.fromkeys(_check_address(r, "recipient") for r in recipients))
    if not unique:
        raise MessageError("recipients: none given and the message has no To, Cc or Bcc header")
    return Envelope(
        sender=sender,
        recipients=unique,
        data=data,
        message_id=message_id,
        smtputf8=not (sender.isascii() and all(a.isascii() for a in unique)),
        eightbit=not data.isascii(),
    )


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def _message_id(data: bytes) -> str | None:
    """The Message-ID header's value, found by a scan of the header block."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    m = _MESSAGE_ID.search(data, 0, end if end >= 0 else len(data))
    if m is None:
        return None
    return m[1].decode("ascii", "replace").replace("\r", "").replace("\n", "").strip() or None
