"""Server replies as values: :class:`Reply`, :class:`EnhancedCode`, :class:`Phase`.

Everything here is pure. ``parse_reply()`` turns the text a server sent into a
:class:`Reply`; the transport builds replies directly from aiosmtplib's answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import ReplyParseError

__all__ = ["EnhancedCode", "FailureKind", "Phase", "Reply", "TransportFailure", "parse_reply"]


class Phase(StrEnum):
    """The point of the SMTP session a reply (or a failure) belongs to.

    ``DATA`` is the answer to the DATA command itself (354 expected);
    ``DATA_END`` is the answer after the final dot, the one that accepts the
    message for every recipient still in the transaction. ``RESOLUTION`` is
    before any connection: finding the recipients' MX hosts in DNS (the
    router turns each DNS outcome into a reply of this phase).
    """

    RESOLUTION = "resolution"

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DATA_END = "data_end"
    RSET = "rset"


# RFC 3463: class "." subject "." detail; class is 2, 4 or 5, subject up to three
# digits, detail up to three digits. It stands at the start of the text, after the
# code (RFC 2034), but some servers put it in brackets or later in the line, so
# we take the first one that stands alone as a word.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)", re.ASCII)
_MAX_SUBJECT = 7


@dataclass(frozen=True, slots=True)
class EnhancedCode:
    """An RFC 3463 enhanced status code such as ``4.2.2``.

    .. versionadded:: 0.1
    """

    klass: int
    subject: int
    detail: int

    def __post_init__(self) -> None:
        if self.klass not in (2, 4, 5):
            raise ValueError(f"enhanced code class must be 2, 4 or 5, not {self.klass}")
        if not (0 <= self.subject <= 999 and 0 <= self.detail <= 999):
            raise ValueError("enhanced code subject and detail must be 0..999")

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"

    @classmethod
    def parse(cls, value: str) -> EnhancedCode:
        """Parse ``"4.2.2"``; raise :class:`ValueError` for anything else."""
        m = _ENHANCED.fullmatch(value.strip())
        if m is None:
            raise ValueError(f"not an enhanced status code: {value!r}")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    @classmethod
    def find(cls, text: str) -> EnhancedCode | None:
        """The first enhanced code in a reply's text, or ``None``.

        Only subjects 0..7 count: those are the ones RFC 3463 (and the IANA
        registry since) define, so software versions ("Exim 4.94.2") and
        vendor-internal codes (Yahoo's ``[#4.16.1]``) are not taken for one.
        """
        for m in _ENHANCED.finditer(text[:200]):
            if int(m[2]) <= _MAX_SUBJECT:
                return cls(int(m[1]), int(m[2]), int(m[3]))
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply from the server: its code, its text (without the code) and
    the phase it answered. ``enhanced`` is parsed from the text when present.

    .. versionadded:: 0.1
    """

    code: int
    text: str
    phase: Phase = Phase.RCPT
    enhanced: EnhancedCode | None = None

    @classmethod
    def build(cls, code: int, text: str, phase: Phase) -> Reply:
        """A reply with ``enhanced`` found in ``text``."""
        return cls(code, text, phase, EnhancedCode.find(text))

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class FailureKind(StrEnum):
    """How a session failed when the server gave no reply to act on."""

    REFUSED = "refused"            # nothing listens, or the connection was reset at once
    DNS = "dns"                    # the host name does not resolve (no address to connect to)
    TIMEOUT = "timeout"            # no answer within the timeout
    DISCONNECTED = "disconnected"  # the connection was closed under us
    AMBIGUOUS = "ambiguous"        # lost after the final dot, before the reply (RFC 1047)
    TLS = "tls"                    # handshake or certificate verification failed
    PROTOCOL = "protocol"          # the server sent something that is not an SMTP reply
    AUTH = "auth"                  # credentials given, but no AUTH mechanism we can use
    SIZE = "size"                  # larger than the SIZE the server advertised (RFC 1870)
    UNSUPPORTED = "unsupported"    # needs an extension the server lacks (SMTPUTF8)
    BACKEND = "backend"            # the shared backend (Redis) gave no connection slot
    SUSPENDED = "suspended"        # an operator suspended the destination: nothing was asked of it


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """A session that ended without a reply: the connection was refused, timed
    out, dropped, or the server spoke nonsense. ``detail`` is for people.

    .. versionadded:: 0.1
    """

    kind: FailureKind
    phase: Phase
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind.value} during {self.phase.value}: {self.detail}".rstrip(": ")


Evidence = Reply | TransportFailure
"""What an attempt ended with for a recipient: a reply, or no reply at all."""


# A reply line: three digits, then a space, a hyphen or the end of the line.
_LINE = re.compile(r"([2-5]\d\d)(?:[ -](.*))?", re.ASCII | re.DOTALL)
MAX_REPLY_CHARS = 64 * 1024


def parse_reply(raw: str, phase: Phase = Phase.RCPT) -> Reply:
    """Parse a reply as a server sends it (``"421 4.7.0 Try later"``), one or
    more lines; continuation lines (``250-...``) are joined with newlines and
    the code of the first line is kept.

    :raises ReplyParseError: (a :class:`ValueError`) when ``raw`` is not an
        SMTP reply, or longer than 64 KiB.

    .. versionadded:: 0.1
    """
    if len(raw) > MAX_REPLY_CHARS:
        raise ReplyParseError(f"reply longer than {MAX_REPLY_CHARS} characters")
    lines = [line for line in raw.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines:
        raise ReplyParseError("empty reply")
    code: int | None = None
    texts: list[str] = []
    for line in lines:
        m = _LINE.fullmatch(line.strip())
        if m is None:
            raise ReplyParseError(f"not an SMTP reply line: {line[:80]!r}")
        if code is None:
            code = int(m[1])
        texts.append((m[2] or "").strip())
    assert code is not None
    return Reply.build(code, "\n".join(texts), phase)
