"""encode_data(): the message as it travels after DATA (RFC 5321 4.5.2), and its fast path."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from smtpretry.transport import encode_data

_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def by_the_rule(message: bytes) -> bytes:
    """The rule written plainly: CRLF line ends, a final CRLF, leading dots doubled, the dot."""
    body = _LINE_ENDINGS.sub(b"\r\n", message)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LEADING_DOT.sub(b"..", body) + b".\r\n"


pieces = st.sampled_from([b"a", b".", b"..", b"\r", b"\n", b"\r\n", b" ", b"x.y"])


@given(st.lists(pieces, max_size=20).map(b"".join))
def test_the_message_travels_as_the_rule_says(message: bytes) -> None:
    assert encode_data(message) == by_the_rule(message)


def test_examples() -> None:
    assert encode_data(b"Subject: x\r\n\r\nhi\r\n") == b"Subject: x\r\n\r\nhi\r\n.\r\n"
    assert encode_data(b"a\nb\r\n.c\r.d") == b"a\r\nb\r\n..c\r\n..d\r\n.\r\n"
    assert encode_data(b".") == b"..\r\n.\r\n"
    assert encode_data(b"a\nb", keep_line_endings=True) == b"a\nb\r\n.\r\n"
