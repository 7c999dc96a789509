"""TransactionState without a server: tables of replies in, outcomes out.

Each case drives one transaction with scripted replies (``None`` stands for a
lost connection) and checks what was written, who was delivered, the evidence
each recipient ends with, and whether the connection may be reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from smtpretry.reply import Evidence, FailureKind, Phase, Reply, TransportFailure, parse_reply
from smtpretry.transaction import EXPECTED, Command, TransactionState, expect

A, B, C = "a@example.org", "b@example.org", "c@example.org"
DATA = b"Subject: t\r\n\r\nhi\r\n.\r\n"


def lost(phase: Phase) -> TransportFailure:
    return TransportFailure(FailureKind.DISCONNECTED, phase, "connection lost")


def drive(state: TransactionState, replies: list[str | Evidence | None]) -> list[list[Command]]:
    """Feed ``replies`` one per command written, as a transport would; return the groups written."""
    script = list(replies)
    written: list[list[Command]] = []
    while commands := state.commands():
        written.append(commands)
        for command in commands:
            assert script, f"no scripted reply left for {command.phase}"
            raw = script.pop(0)
            if raw is None:
                ev: Evidence = lost(command.phase)
            elif isinstance(raw, str):
                ev = parse_reply(raw, command.phase)
            else:
                ev = raw
            state.receive(ev)
            if state.done:
                break
    assert not script, f"replies left over: {script}"
    return written


@dataclass
class Case:
    name: str
    replies: list[str | Evidence | None]
    written: list[list[str]]  # phases of each group written
    delivered: tuple[str, ...]
    evidence: dict[str, str]  # recipient -> "250" | "failure:kind"
    reusable: bool = True
    needs_reset: bool = False
    recipients: list[str] = field(default_factory=lambda: [A, B])
    pipelining: bool = False
    reset: bool = False


def said(ev: Evidence) -> str:
    return str(ev.code) if isinstance(ev, Reply) else f"failure:{ev.kind.value}"


M, R, D, E, S = "mail", "rcpt", "data", "data_end", "rset"

CASES = [
    Case("happy, one at a time",
         ["250 ok", "250 ok", "250 ok", "354 go", "250 queued"],
         [[M], [R], [R], [D], [E]], (A, B), {A: "250", B: "250"}),
    Case("happy, pipelined",
         ["250 ok", "250 ok", "250 ok", "354 go", "250 queued"],
         [[M, R, R, D], [E]], (A, B), {A: "250", B: "250"}, pipelining=True),
    Case("a refused recipient; the other delivered",
         ["250 ok", "550 5.1.1 no such user", "250 ok", "354 go", "250 queued"],
         [[M], [R], [R], [D], [E]], (B,), {A: "550", B: "250"}),
    Case("251 to MAIL is no acceptance: a protocol failure, nothing named",
         ["251 ok"], [[M]], (), {A: "failure:protocol", B: "failure:protocol"}, reusable=False),
    Case("a refused MAIL settles everyone, names no one",
         ["550 5.7.1 sender rejected"], [[M]], (), {A: "550", B: "550"}, needs_reset=True),
    Case("a refused MAIL in a pipelined group: the rest is read and ignored",
         ["550 5.7.1 sender rejected", "503 5.5.1 need MAIL", "503 5.5.1 need MAIL", "503 5.5.1 no rcpts"],
         [[M, R, R, D]], (), {A: "550", B: "550"}, needs_reset=True, pipelining=True),
    Case("421 to a RCPT ends the session for the accepted one too",
         ["250 ok", "250 ok", "421 4.7.0 too many connections"],
         [[M], [R], [R]], (), {A: "421", B: "421"}, reusable=False),
    Case("a lost connection at RCPT ends the session",
         ["250 ok", "250 ok", None],
         [[M], [R], [R]], (), {A: "failure:disconnected", B: "failure:disconnected"}, reusable=False),
    Case("too many recipients: the rest are not named, the accepted are delivered",
         ["250 ok", "250 ok", "452 4.5.3 Too many recipients", "354 go", "250 queued"],
         [[M], [R], [R], [D], [E]], (A,), {A: "250", B: "452", C: "452"}, recipients=[A, B, C]),
    Case("'Recipient list too long' is too many recipients too (the classifier says so)",
         ["250 ok", "250 ok", "452 Recipient list too long", "354 go", "250 queued"],
         [[M], [R], [R], [D], [E]], (A,), {A: "250", B: "452", C: "452"}, recipients=[A, B, C]),
    Case("every RCPT refused: no DATA",
         ["250 ok", "550 no", "550 no"], [[M], [R], [R]], (), {A: "550", B: "550"}, needs_reset=True),
    Case("250 to DATA is no 354: no body goes, the connection is out of step",
         ["250 ok", "250 ok", "250 ok", "250 ok"],
         [[M], [R], [R], [D]], (), {A: "failure:protocol", B: "failure:protocol"}, reusable=False),
    Case("a refused DATA",
         ["250 ok", "250 ok", "250 ok", "554 5.3.0 no"],
         [[M], [R], [R], [D]], (), {A: "554", B: "554"}, needs_reset=True),
    Case("354 with nobody accepted ends DATA with the lone dot (RFC 2920 3.1)",
         ["250 ok", "550 no", "550 no", "354 go", "554 no valid recipients"],
         [[M, R, R, D], [E]], (), {A: "550", B: "550"}, needs_reset=True, pipelining=True),
    Case("a refusal after the final dot",
         ["250 ok", "250 ok", "250 ok", "354 go", "552 5.2.2 mailbox full"],
         [[M], [R], [R], [D], [E]], (), {A: "552", B: "552"}),
    Case("421 after the final dot",
         ["250 ok", "250 ok", "250 ok", "354 go", "421 4.3.2 shutting down"],
         [[M], [R], [R], [D], [E]], (), {A: "421", B: "421"}, reusable=False),
    Case("a 3xx after the final dot cannot be trusted: ambiguous",
         ["250 ok", "250 ok", "250 ok", "354 go", "354 go again"],
         [[M], [R], [R], [D], [E]], (), {A: "failure:ambiguous", B: "failure:ambiguous"}, reusable=False),
    Case("lost after the final dot: ambiguous (RFC 1047)",
         ["250 ok", "250 ok", "250 ok", "354 go", None],
         [[M], [R], [R], [D], [E]], (), {A: "failure:ambiguous", B: "failure:ambiguous"}, reusable=False),
    Case("an unfinished transaction is reset first",
         ["250 reset", "250 ok", "250 ok", "250 ok", "354 go", "250 queued"],
         [[S], [M], [R], [R], [D], [E]], (A, B), {A: "250", B: "250"}, reset=True),
    Case("an RSET refused: the connection is of no more use",
         ["500 what"], [[S]], (), {A: "500", B: "500"}, reusable=False, reset=True),
    Case("a reply nobody asked for (the transport reports it) ends the session",
         ["250 ok", TransportFailure(FailureKind.PROTOCOL, Phase.RCPT, "a reply nobody asked for")],
         [[M], [R]], (), {A: "failure:protocol", B: "failure:protocol"}, reusable=False),
    Case("a pipelined group out of order: 354 read for MAIL ends it, nothing more is read",
         ["354 go"],
         [[M, R, R, D]], (), {A: "failure:protocol", B: "failure:protocol"}, reusable=False, pipelining=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_transaction_rules(case: Case) -> None:
    state = TransactionState(sender="s@example.org", recipients=case.recipients, data=DATA,
                             pipelining=case.pipelining, reset=case.reset)
    written = drive(state, case.replies)
    tr = state.result()
    assert [[c.phase.value for c in group] for group in written] == case.written
    assert tr.delivered == case.delivered
    assert {r: said(e) for r, e in tr.evidence.items()} == case.evidence
    assert list(tr.evidence) == case.recipients  # every recipient, in order
    assert tr.reusable is case.reusable
    assert tr.needs_reset is case.needs_reset
    assert tr.completed is bool(case.delivered)


def test_the_lone_dot_is_what_ends_an_empty_data() -> None:
    state = TransactionState(sender="", recipients=[A], data=DATA, pipelining=True)
    written = drive(state, ["250 ok", "550 no", "354 go", "554 no valid recipients"])
    assert written[1][0].wire == b".\r\n"


def test_command_lines_carry_the_options_and_the_message_goes_as_given() -> None:
    state = TransactionState(sender="s@example.org", recipients=[A, B], data=DATA, pipelining=True,
                             mail_options=[b"SIZE=42", b"BODY=8BITMIME"], rcpt_options=[b"NOTIFY=FAILURE"])
    written = drive(state, ["250 ok", "250 ok", "250 ok", "354 go", "250 queued"])
    assert [c.wire for c in written[0]] == [
        b"MAIL FROM:<s@example.org> SIZE=42 BODY=8BITMIME\r\n",
        b"RCPT TO:<a@example.org> NOTIFY=FAILURE\r\n",
        b"RCPT TO:<b@example.org> NOTIFY=FAILURE\r\n",
        b"DATA\r\n",
    ]
    assert written[1][0].wire == DATA


def test_utf8_addresses_are_encoded_as_asked() -> None:
    state = TransactionState(sender="", recipients=["józef@example.org"], data=DATA, encoding="utf-8")
    assert state.commands()[0].wire == b"MAIL FROM:<>\r\n"
    state.receive(parse_reply("250 ok", Phase.MAIL))
    assert state.commands()[0].wire == "RCPT TO:<józef@example.org>\r\n".encode()


@pytest.mark.parametrize(
    ("phase", "raw", "kind"),
    [
        (Phase.GREETING, "250 hello", FailureKind.PROTOCOL),
        (Phase.EHLO, "220 a second banner", FailureKind.PROTOCOL),
        (Phase.STARTTLS, "250 ok", FailureKind.TLS),
        (Phase.AUTH, "250 ok", FailureKind.PROTOCOL),
        (Phase.MAIL, "251 ok", FailureKind.PROTOCOL),
        (Phase.RCPT, "252 cannot verify", FailureKind.PROTOCOL),
        (Phase.DATA, "250 ok", FailureKind.PROTOCOL),
        (Phase.DATA_END, "354 again", FailureKind.AMBIGUOUS),
        (Phase.RSET, "220 hello", FailureKind.PROTOCOL),
    ],
)
def test_a_success_code_at_the_wrong_phase_is_a_failure_of_that_phase(
    phase: Phase, raw: str, kind: FailureKind
) -> None:
    ev = expect(phase, parse_reply(raw, phase))
    assert isinstance(ev, TransportFailure)
    assert (ev.kind, ev.phase) == (kind, phase)
    assert raw.split()[0] in ev.detail


@pytest.mark.parametrize("phase", sorted(EXPECTED, key=str))
def test_each_phase_takes_its_own_replies_and_refusals_as_they_are(phase: Phase) -> None:
    for code in sorted(EXPECTED[phase])[:3]:
        assert expect(phase, Reply(code, "x", phase)) == Reply(code, "x", phase)
    for code in (421, 450, 550, 554):
        assert expect(phase, Reply(code, "no", phase)) == Reply(code, "no", phase)


def test_a_reply_is_judged_as_the_answer_to_the_command_it_was_read_for() -> None:
    ev = expect(Phase.DATA, Reply(250, "ok", Phase.RCPT))
    assert isinstance(ev, TransportFailure) and ev.phase is Phase.DATA


def test_misuse_is_an_error_not_a_silent_outcome() -> None:
    state = TransactionState(sender="", recipients=[A], data=DATA)
    with pytest.raises(RuntimeError):
        state.receive(Reply(250, "ok", Phase.MAIL))
    with pytest.raises(RuntimeError):
        state.result()
    with pytest.raises(ValueError):
        TransactionState(sender="", recipients=[], data=DATA)


# -- spelling, RCPT options, a recipient named twice (the smtplib facade's needs) -----------


@pytest.mark.parametrize("pipelining", [False, True])
def test_verbs_and_rcpt_options_are_written_as_given(pipelining: bool) -> None:
    from smtpretry.transaction import Verbs

    smtplib_313 = Verbs(mail=b"mail from:", rcpt=b"rcpt to:", data=b"data", rset=b"rset")
    state = TransactionState(sender="s@example.org", recipients=[A, B], data=DATA, pipelining=pipelining,
                             mail_options=[b"size=12", b"RET=HDRS"], rcpt_options=[b"NOTIFY=NEVER"],
                             verbs=smtplib_313, reset=True)
    written = drive(state, ["250 reset", "250 ok", "250 ok", "250 ok", "354 go", "250 queued"])
    lines = [c.line for group in written for c in group]
    assert lines[:5] == [b"rset", b"mail from:<s@example.org> size=12 RET=HDRS",
                         b"rcpt to:<" + A.encode() + b"> NOTIFY=NEVER",
                         b"rcpt to:<" + B.encode() + b"> NOTIFY=NEVER", b"data"]
    assert state.result().delivered == (A, B)


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_recipient_named_twice_gets_a_rcpt_each_time_and_is_delivered_once(pipelining: bool) -> None:
    state = TransactionState(sender="s@example.org", recipients=[A, A], data=DATA, pipelining=pipelining)
    written = drive(state, ["250 ok", "250 ok", "250 ok", "354 go", "250 queued"])
    rcpts = [c.line for group in written for c in group if c.phase is Phase.RCPT]
    assert rcpts == [b"RCPT TO:<" + A.encode() + b">"] * 2
    tr = state.result()
    assert tr.delivered == (A,) and list(tr.evidence) == [A]


def test_encode_data_keeps_line_endings_when_asked_as_smtplib_sends_bytes() -> None:
    from smtpretry.transport import encode_data

    raw = b"a\n.b\r\nc\rd"
    assert encode_data(raw) == b"a\r\n..b\r\nc\r\nd\r\n.\r\n"
    assert encode_data(raw, keep_line_endings=True) == b"a\n..b\r\nc\rd\r\n.\r\n"
    assert encode_data(b"", keep_line_endings=True) == b"\r\n.\r\n"  # smtplib's data(b"")
