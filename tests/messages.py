"""The test message most tests send: one ``EmailMessage`` to the given recipients."""

from __future__ import annotations

from email.message import EmailMessage


def message(*to: str, msgid: str = "<m1@test>", body: str = "hello\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.org"
    msg["To"] = ", ".join(to)
    msg["Subject"] = "test"
    msg["Message-ID"] = msgid
    msg.set_content(body)
    return msg
