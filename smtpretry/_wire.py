"""The only code that touches aiosmtplib's private names.

aiosmtplib reads one reply per command it writes. Two things smtpretry needs
go past that, and both need the protocol's insides:

- **Pipelining** (RFC 2920): MAIL, every RCPT and DATA are written at once and
  their replies read in turn. Replies that arrive in one packet wait in the
  protocol's ``_buffer`` and are taken from there (``read()``); and replies
  that arrive while no reply is awaited must be kept for the group instead of
  dropped. aiosmtplib drops such bytes on purpose (its guard against
  unsolicited lines, ``_response_pending``): a reply nobody asked for must not
  be paired with the next command. The guard is lifted for exactly one
  pipelined group at a time (:attr:`Wire.grouping`), whose replies *were* asked
  for, and stays in force outside it.
- **Replies nobody asked for** make a connection unusable. aiosmtplib drops
  them silently, so nothing would tell a session that is out of step from a
  good one. :class:`Wire` notices them (``stray``) and a reply left over in
  the buffer, so that the connection is closed, never pooled
  (:attr:`Wire.clean`). It also parses replies strictly: a multiline reply
  whose lines carry different codes is a protocol error, not the last line's
  code.

The names used are checked when this module is imported (:data:`AVAILABLE`);
if a release of aiosmtplib lacks one, pipelining is off and sessions go one
command at a time, with aiosmtplib's own guard. ``tests/unit/test_wire.py``
pins them.
"""

from __future__ import annotations

from typing import Any

from aiosmtplib.errors import SMTPResponseException
from aiosmtplib.protocol import MAX_LINE_LENGTH, SMTPProtocol
from aiosmtplib.response import SMTPResponse

__all__ = ["AVAILABLE", "Wire"]

_METHODS = ("_read_response_from_buffer", "data_received", "read_response", "write")
_ATTRIBUTES = ("_buffer", "_response_waiter", "_response_pending")

AVAILABLE: bool = all(callable(getattr(SMTPProtocol, m, None)) for m in _METHODS)
"""Whether this aiosmtplib has the insides :class:`Wire` uses (checked at import)."""

_STRAY_KEPT = 512  # bytes of an unsolicited reply kept for the evidence
_INVALID = -1  # aiosmtplib's code for "invalid response"


class Wire:
    """smtpretry's hold on one aiosmtplib protocol (one connection).

    Installed once the connection is made; it stays for the connection's life,
    across STARTTLS (the protocol object is the same).
    """

    __slots__ = ("_original", "active", "grouping", "protocol", "stray")

    def __init__(self, protocol: SMTPProtocol) -> None:
        self.protocol: Any = protocol
        self.stray = b""
        """The first bytes that arrived when no reply was awaited, if any."""
        self.grouping = False
        """True while a pipelined group's replies come in: every byte is kept for :meth:`read`."""
        self.active = AVAILABLE and all(hasattr(protocol, a) for a in _ATTRIBUTES)
        self._original = protocol.data_received
        if self.active:
            # Instance attributes: this connection only, never aiosmtplib's class.
            setattr(protocol, "data_received", self._data_received)  # noqa: B010
            setattr(protocol, "_read_response_from_buffer", self._parse)  # noqa: B010

    @property
    def clean(self) -> bool:
        """No reply nobody asked for has come, and none waits unread: the
        connection is in step with its commands."""
        if not self.active:
            return True
        return not self.stray and not self.protocol._buffer

    def describe_stray(self) -> str:
        """The unsolicited bytes, for the evidence."""
        data = self.stray or bytes(self.protocol._buffer[:_STRAY_KEPT])
        return data.decode("utf-8", "replace").strip()

    def buffered(self) -> SMTPResponse | None:
        """A whole reply already in the buffer, if any (pipelined groups)."""
        return self._parse() if self.active and self.protocol._buffer else None

    async def read(self, timeout: float | None) -> SMTPResponse:
        """The next reply: one already buffered, else the next to arrive."""
        if self.active and self.protocol._buffer:
            response = self._parse()
            if response is not None:
                return response
        result: SMTPResponse = await self.protocol.read_response(timeout=timeout)
        return result

    # -- installed on the protocol -----------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        p = self.protocol
        waiter = p._response_waiter
        if waiter is not None and (not p._response_pending or waiter.done()):
            if self.grouping:
                p._buffer.extend(data)  # a later reply of the group: read() takes it
                return
            if len(self.stray) < _STRAY_KEPT:
                self.stray += data[: _STRAY_KEPT - len(self.stray)]
            return  # aiosmtplib would drop it too; we remember that it came
        self._original(data)

    def _parse(self) -> SMTPResponse | None:
        """aiosmtplib's ``_read_response_from_buffer``, stricter: every line of
        a multiline reply must carry the same code."""
        buffer: bytearray = self.protocol._buffer
        code: int | None = None
        lines: list[bytes] = []
        offset = 0
        while (end := buffer.find(b"\n", offset)) != -1:
            line = bytes(buffer[offset : end + 1])
            if len(line) > MAX_LINE_LENGTH:
                raise SMTPResponseException(_INVALID, "Response too long")
            try:
                this = int(line[:3])
            except ValueError:
                text = line.decode("utf-8", "ignore")
                raise SMTPResponseException(_INVALID, f"Malformed SMTP response line: {text}") from None
            if code is not None and this != code:
                raise SMTPResponseException(
                    _INVALID, f"a multiline reply whose lines disagree: {code} then {this}"
                )
            code = this
            offset += len(line)
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                del buffer[:offset]
                return SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape"))
        return None
