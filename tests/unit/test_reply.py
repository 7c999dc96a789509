"""parse_reply() and EnhancedCode: examples and hypothesis fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpretry.errors import ReplyParseError, SMTPRetryError
from smtpretry.reply import MAX_REPLY_CHARS, EnhancedCode, Phase, Reply, parse_reply


def test_single_line() -> None:
    assert parse_reply("250 OK") == Reply(250, "OK", Phase.RCPT, None)


def test_single_line_with_enhanced_code_and_phase() -> None:
    reply = parse_reply("421 4.7.0 Try again later\r\n", Phase.MAIL)
    assert reply == Reply(421, "4.7.0 Try again later", Phase.MAIL, EnhancedCode(4, 7, 0))
    assert str(reply) == "421 4.7.0 Try again later"


def test_multi_line_joins_texts_and_keeps_first_code() -> None:
    assert parse_reply("250-a\r\n250 b") == Reply(250, "a\nb")
    assert parse_reply("250-mx.example.org\n250-SIZE 1000\n250 8BITMIME\n").text == (
        "mx.example.org\nSIZE 1000\n8BITMIME"
    )


def test_code_only() -> None:
    assert parse_reply("354") == Reply(354, "")
    assert parse_reply("250-\r\n250 ") == Reply(250, "\n")


@pytest.mark.parametrize(
    ("raw", "enhanced"),
    [
        ("550 5.1.1 User unknown", EnhancedCode(5, 1, 1)),
        ("554 5.2.121 per hour limit", EnhancedCode(5, 2, 121)),
        ("552 sorry, that message size exceeds my databytes limit (#5.3.4)",
         EnhancedCode(5, 3, 4)),
        ("421 4.7.0 [TS01] from 192.185.24.74 deferred - 4.16.55.1", EnhancedCode(4, 7, 0)),
        ("550 192.0.2.10> too many messages", None),
        ("250 mx.example.org ESMTP Exim 4.94.2", None),  # a version, not a status
        ("451 Resources temporarily unavailable [#4.16.1].", None),  # Yahoo-internal
        ("451 Exim 4.94.2 says 4.3.0 try later", EnhancedCode(4, 3, 0)),
        ("250 OK", None),
    ],
)
def test_enhanced_code_found(raw: str, enhanced: EnhancedCode | None) -> None:
    assert parse_reply(raw).enhanced == enhanced


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   \r\n  ",
        "hello",
        "25 OK",
        "2500 OK",
        "650 OK",
        "150 OK",
        "250OK",
        "250 OK\r\nnot a reply line",
        "x" * (MAX_REPLY_CHARS + 1),
    ],
)
def test_bad_input_raises(raw: str) -> None:
    with pytest.raises(ReplyParseError):
        parse_reply(raw)


def test_reply_parse_error_is_a_value_error_and_ours() -> None:
    with pytest.raises(ValueError):
        parse_reply("nonsense")
    assert issubclass(ReplyParseError, SMTPRetryError)


def test_enhanced_code_parse_and_str() -> None:
    code = EnhancedCode.parse(" 4.2.2 ")
    assert code == EnhancedCode(4, 2, 2)
    assert str(code) == "4.2.2"
    for bad in ("4.2", "3.2.2", "4.2.2.2", "x"):
        with pytest.raises(ValueError):
            EnhancedCode.parse(bad)
    with pytest.raises(ValueError):
        EnhancedCode(3, 0, 0)


@given(st.text(max_size=400))
def test_fuzz_parse_reply_returns_reply_or_raises_reply_parse_error(raw: str) -> None:
    try:
        reply = parse_reply(raw)
    except ReplyParseError:
        return
    assert isinstance(reply, Reply)
    assert 200 <= reply.code <= 599


# Reply text: anything on one line (no CR or LF); utf-8 excludes surrogates.
_line_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=80
)


@given(
    code=st.integers(200, 599),
    texts=st.lists(_line_text, min_size=1, max_size=5),
    crlf=st.booleans(),
)
def test_well_formed_replies_parse_to_their_parts(
    code: int, texts: list[str], crlf: bool
) -> None:
    lines = [f"{code}-{t}" for t in texts[:-1]] + [f"{code} {texts[-1]}"]
    raw = ("\r\n" if crlf else "\n").join(lines) + "\r\n"
    reply = parse_reply(raw, Phase.DATA_END)
    text = "\n".join(t.strip() for t in texts)
    assert reply == Reply(code, text, Phase.DATA_END, EnhancedCode.find(text))


@given(code=st.integers(200, 599), text=_line_text)
def test_single_line_round_trip(code: int, text: str) -> None:
    reply = parse_reply(f"{code} {text}")
    assert parse_reply(str(reply)) == reply


@given(
    klass=st.sampled_from([2, 4, 5]),
    subject=st.integers(0, 7),
    detail=st.integers(0, 999),
    before=st.sampled_from(["", "OK ", "<a@b> ", "(#"]),
)
def test_enhanced_code_round_trip(klass: int, subject: int, detail: int, before: str) -> None:
    code = EnhancedCode(klass, subject, detail)
    assert EnhancedCode.parse(str(code)) == code
    assert EnhancedCode.find(f"{before}{code} rest") == code
