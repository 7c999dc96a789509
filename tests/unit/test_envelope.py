"""build_envelope(): the envelope from headers as smtplib does, and hostile input refused."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from smtpretry import MessageError, build_envelope


def msg(**headers: str) -> EmailMessage:
    m = EmailMessage()
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content("hello\n")
    return m


def test_envelope_from_headers_with_bcc_removed_from_the_bytes() -> None:
    env = build_envelope(
        msg(
            From="A <a@example.org>",
            To="b@example.com, C <c@example.com>",
            Cc="d@example.com",
            Bcc="hidden@example.com",
            Message_ID="<x@y>",
        )
    )
    assert env.sender == "a@example.org"
    assert env.recipients == ("b@example.com", "c@example.com", "d@example.com", "hidden@example.com")
    assert b"hidden@example.com" not in env.data
    assert b"\r\n" in env.data
    assert env.message_id == "<x@y>"
    assert not env.smtputf8


def test_sender_header_wins_over_from_and_resent_headers_win_over_both() -> None:
    assert build_envelope(msg(From="a@example.org", Sender="s@example.org", To="b@example.com")).sender == (
        "s@example.org"
    )
    resent = msg(
        From="a@example.org",
        To="b@example.com",
        Resent_Date="Mon, 1 Jan 2024 00:00:00 +0000",
        Resent_From="r@example.org",
        Resent_To="z@example.com",
    )
    env = build_envelope(resent)
    assert (env.sender, env.recipients) == ("r@example.org", ("z@example.com",))


def test_explicit_envelope_and_bytes() -> None:
    raw = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    env = build_envelope(raw, "bounce@example.org", ["x@example.com", "x@example.com", "y@example.com"])
    assert env.sender == "bounce@example.org"
    assert env.recipients == ("x@example.com", "y@example.com")  # one copy per address
    assert env.data == raw
    assert build_envelope(raw).recipients == ("b@example.com",)


def test_null_sender_for_bounces_is_allowed() -> None:
    assert build_envelope(b"Subject: x\r\n\r\nb\r\n", "", ["a@example.com"]).sender == ""


def test_non_ascii_address_needs_smtputf8() -> None:
    env = build_envelope(b"Subject: x\r\n\r\nb\r\n", "a@example.org", ["jos\u00e9@example.com"])
    assert env.smtputf8


@pytest.mark.parametrize(
    ("sender", "recipients", "match"),
    [
        ("a@example.org", ["b@example.com\r\nRCPT TO:<evil@example.com>"], "control characters"),
        ("a@example.org\r\nRSET", ["b@example.com"], "control characters"),
        ("a@example.org", ["b\x00@example.com"], "control characters"),
        ("a@example.org", [], "recipients: none"),
        ("a@example.org", ["not an address"], "white space"),
        ("a@example.org> RET=FULL", ["b@example.com"], "'<', '>'"),
        ("a@example.org", ["b@example.com>x@evil.example"], "'<', '>'"),
    ],
)
def test_hostile_or_empty_envelopes_are_refused_before_sending(
    sender: str, recipients: list[str], match: str
) -> None:
    with pytest.raises(MessageError, match=match):
        build_envelope(b"Subject: x\r\n\r\nb\r\n", sender, recipients)


def test_no_sender_anywhere() -> None:
    with pytest.raises(MessageError, match="^sender:"):
        build_envelope(b"To: b@example.com\r\n\r\nb\r\n")


def test_wrong_type() -> None:
    with pytest.raises(MessageError, match="^message:"):
        build_envelope(42)  # type: ignore[arg-type]


def test_message_id_is_found_without_parsing_when_the_envelope_is_given() -> None:
    raw = (
        b"From: a@example.org\r\nMessage-ID:\r\n  <folded@x>\r\nSubject: y\r\n\r\nMessage-ID: <in-body@x>\r\n"
    )
    assert build_envelope(raw, "a@example.org", ["b@example.com"]).message_id == "<folded@x>"
    assert build_envelope(raw + b"", None, ["b@example.com"]).message_id == "<folded@x>"
    body_only = b"Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n"
    assert build_envelope(body_only, "a@example.org", ["b@example.com"]).message_id is None
