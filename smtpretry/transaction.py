"""One mail transaction as a pure state machine: which reply each phase
accepts, which evidence settles which recipient, when a connection is spent.

Everything that affects a transaction's outcome lives here, and nothing here
does I/O (h11 keeps its transitions in one module the same way). The transport
asks :meth:`TransactionState.commands` what to write, hands every reply (or
the failure that stood for it) to :meth:`~TransactionState.receive`, and takes
the :class:`Transaction` from :meth:`~TransactionState.result`. The two drivers
in ``transport.py`` (one command at a time, and a pipelined group) differ only
in how they move bytes.

The rules, each written once:

- **Each phase accepts only its own replies** (:data:`EXPECTED`): the greeting
  220, EHLO/HELO 250, STARTTLS 220, AUTH 235 (334 inside the exchange), MAIL
  250, RCPT 250 or 251, DATA 354, the final dot any 2xx, RSET 250. A refusal
  (4xx, 5xx) is evidence for the recipients it concerns. Anything else, a code
  that looks like success at the wrong phase above all, is a protocol failure of
  that phase (:func:`expect`): never an acceptance. A STARTTLS answered with
  anything but 220 is a TLS failure; after the final dot, a reply that cannot
  be trusted is ambiguous (RFC 1047: the server may have the message).
- **Only a completed transaction delivers**: a recipient whose RCPT was
  accepted is delivered by a 2xx reply to the final dot and by nothing else.
- **A 421 or a lost connection ends the session** for every recipient still
  pending, the accepted ones included (they are not delivered without DATA).
- **Too many recipients** is whatever :func:`~smtpretry.classify` calls so: the
  recipients not yet named go in the next transaction (RFC 5321 4.5.3.1.10);
  one at a time, they are not named at all.
- **A refused MAIL** settles every recipient with its reply; in a pipelined
  group the RCPT and DATA replies that follow are read (to stay in step) and
  ignored.
- **A 354 with no recipient accepted** (possible only in a pipelined group)
  is ended with an empty message, the lone dot (RFC 2920 3.1).
- **An unfinished transaction needs RSET** before the next one on the same
  connection (``needs_reset``), and the next state sends it first.
- **A reply nobody asked for makes the connection unusable**: the transport
  hands it in as a :attr:`~smtpretry.reply.FailureKind.PROTOCOL` failure, which
  ends the session like a lost connection.

.. versionadded:: 0.4
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from .classify import Category, classify
from .reply import Evidence, FailureKind, Phase, Reply, TransportFailure

__all__ = [
    "EXPECTED", "VERBS", "Command", "Transaction", "TransactionState", "Verbs", "ends_session", "expect",
]


EXPECTED: Mapping[Phase, frozenset[int]] = {
    Phase.GREETING: frozenset({220}),
    Phase.EHLO: frozenset({250}),
    Phase.STARTTLS: frozenset({220}),
    Phase.AUTH: frozenset({235, 334}),
    Phase.MAIL: frozenset({250}),
    Phase.RCPT: frozenset({250, 251}),
    Phase.DATA: frozenset({354}),
    Phase.DATA_END: frozenset(range(200, 300)),
    Phase.RSET: frozenset({250}),
}
"""The replies each phase accepts; every other code below 400 is a protocol failure there."""


def _expected(phase: Phase) -> str:
    codes = EXPECTED[phase]
    return "2xx" if phase is Phase.DATA_END else " or ".join(str(c) for c in sorted(codes))


def expect(phase: Phase, reply: Reply) -> Evidence:
    """``reply`` when ``phase`` accepts it or it is a refusal (4xx, 5xx);
    otherwise the failure it stands for: a protocol failure of that phase, a
    TLS failure for STARTTLS, an ambiguous end after the final dot.

    The phase of the result is ``phase`` (a reply read for the wrong command is
    judged as an answer to the command it was read for)."""
    if reply.phase is not phase:
        reply = Reply(reply.code, reply.text, phase, reply.enhanced)
    if phase not in EXPECTED or reply.code in EXPECTED[phase] or 400 <= reply.code < 600:
        return reply
    detail = f"{reply} (a {phase.value} reply must be {_expected(phase)})"
    if phase is Phase.STARTTLS:
        return TransportFailure(FailureKind.TLS, phase, f"STARTTLS did not start TLS: {detail}")
    if phase is Phase.DATA_END:
        return TransportFailure(FailureKind.AMBIGUOUS, phase, f"no trustworthy final reply: {detail}")
    return TransportFailure(FailureKind.PROTOCOL, phase, f"unexpected reply: {detail}")


def ends_session(evidence: Evidence) -> bool:
    """A 421 (the server closes) or no reply at all: the connection is gone."""
    return isinstance(evidence, TransportFailure) or evidence.code == 421


class Command(NamedTuple):
    """One thing to write: a command line (without CRLF) or, for
    ``DATA_END``, the message as it travels (dot-stuffed, ending in CRLF.CRLF).
    A named tuple: a transaction makes a few of these for every message."""

    phase: Phase
    line: bytes

    @property
    def wire(self) -> bytes:
        """The bytes to write."""
        return self.line if self.phase is Phase.DATA_END else self.line + b"\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    """What one MAIL..DATA transaction did.

    ``evidence`` has an entry for every recipient: its RCPT refusal, the reply
    to DATA or to the final dot, or the failure that ended the session.
    ``accepted`` are the recipients whose RCPT the server took; they are
    delivered only when ``completed`` (a 2xx reply to the final dot,
    ``final``). ``reusable`` says the connection may carry another transaction
    (as far as the replies tell: the transport also checks it is still
    connected and in step), ``needs_reset`` that it needs RSET first.

    .. versionadded:: 0.4
    """

    evidence: Mapping[str, Evidence]
    accepted: tuple[str, ...] = ()
    completed: bool = False
    final: Reply | None = None
    reusable: bool = True
    needs_reset: bool = False

    @property
    def delivered(self) -> tuple[str, ...]:
        """The recipients the server took the message for."""
        return self.accepted if self.completed else ()


@dataclass(frozen=True, slots=True)
class Verbs:
    """How the commands of a transaction are spelled. Verbs are case-blind
    (RFC 5321 2.4); the smtplib facade spells them as the running smtplib
    does (``mail FROM:``, ``rcpt TO:``, ``data``, ``rset``; Python 3.13
    writes ``mail from:`` and ``rcpt to:``), so that it sends what smtplib sends.

    .. versionadded:: 0.5
    """

    mail: bytes = b"MAIL FROM:"
    rcpt: bytes = b"RCPT TO:"
    data: bytes = b"DATA"
    rset: bytes = b"RSET"


VERBS = Verbs()
"""The spelling of RFC 5321's own examples."""


class _Step(Enum):
    RESET = "reset"
    ENVELOPE = "envelope"  # MAIL, RCPT..., DATA
    BODY = "body"
    DONE = "done"


_EMPTY_BODY = b".\r\n"
_LOST_AFTER_DOT = (FailureKind.DISCONNECTED, FailureKind.TIMEOUT, FailureKind.PROTOCOL)


class TransactionState:
    """One transaction, driven by the replies it is given.

    :param sender: the envelope sender (``""`` for the null sender)
    :param recipients: the recipients to name, in order
    :param data: the message as it travels (see ``transport.encode_data``)
    :param mail_options: ESMTP parameters for MAIL (``b"SIZE=123"``, ``b"SMTPUTF8"``)
    :param rcpt_options: ESMTP parameters for every RCPT (``b"NOTIFY=FAILURE"``)
    :param encoding: of the addresses: ``"ascii"``, or ``"utf-8"`` with SMTPUTF8
    :param pipelining: write MAIL, every RCPT and DATA as one group (RFC 2920);
        otherwise one command at a time
    :param reset: the connection carries an unfinished transaction: RSET first
    :param verbs: how MAIL, RCPT, DATA and RSET are spelled (:class:`Verbs`)

    Drive it so::

        while commands := state.commands():
            write the commands
            for each command, in order:
                state.receive(the reply, or the failure that stood for it)
                if state.done: stop reading
        transaction = state.result()

    .. versionadded:: 0.4
    """

    def __init__(
        self, *, sender: str, recipients: Sequence[str], data: bytes,
        mail_options: Sequence[bytes] = (), rcpt_options: Sequence[bytes] = (),
        encoding: str = "ascii", pipelining: bool = False, reset: bool = False,
        verbs: Verbs = VERBS,
    ) -> None:
        if not recipients:
            raise ValueError("a transaction needs at least one recipient")
        self._recipients = list(recipients)
        self._data = data
        self._pipelining = pipelining
        self._verbs = verbs
        self._mail = b" ".join([verbs.mail + b"<" + sender.encode(encoding) + b">", *mail_options])
        suffix = b"".join(b" " + o for o in rcpt_options)
        # A recipient named twice gets a RCPT each time, as smtplib sends it.
        self._rcpts = [verbs.rcpt + b"<" + r.encode(encoding) + b">" + suffix for r in recipients]
        self._step = _Step.RESET if reset else _Step.ENVELOPE
        self._awaiting: deque[tuple[Phase, int]] = deque()  # what was written, not yet answered
        self._next_rcpt = 0
        self._mail_reply: Evidence | None = None
        self._evidence: dict[str, Evidence] = {}
        self._accepted: list[str] = []
        self._final: Reply | None = None
        self._completed = False
        self._reusable = True
        self._needs_reset = False
        self.done = False
        """No more replies are needed: the transaction has ended."""

    # -- what to write ---------------------------------------------------------------------

    @property
    def pipelined(self) -> bool:
        """Whether MAIL, the RCPTs and DATA go as one group (RFC 2920)."""
        return self._pipelining


    def commands(self) -> list[Command]:
        """What to write next (nothing while replies are still awaited, or when done)."""
        step = self._step
        if self._awaiting or step is _Step.DONE:
            return []
        out: list[Command]
        if step is _Step.BODY:
            out = [Command(Phase.DATA_END, self._data if self._accepted else _EMPTY_BODY)]
            self._awaiting.append((Phase.DATA_END, -1))
        elif step is _Step.RESET:
            out = [Command(Phase.RSET, self._verbs.rset)]
            self._awaiting.append((Phase.RSET, -1))
        elif self._pipelining:  # the envelope in one group: MAIL, every RCPT, DATA
            out = [Command(Phase.MAIL, self._mail)]
            out += [Command(Phase.RCPT, line) for line in self._rcpts]
            out.append(Command(Phase.DATA, self._verbs.data))
            awaiting = self._awaiting
            awaiting.append((Phase.MAIL, -1))
            awaiting.extend((Phase.RCPT, i) for i in range(len(self._rcpts)))
            awaiting.append((Phase.DATA, -1))
            self._next_rcpt = len(self._rcpts)
        elif self._mail_reply is None:
            out = [Command(Phase.MAIL, self._mail)]
            self._awaiting.append((Phase.MAIL, -1))
        elif self._next_rcpt < len(self._rcpts):
            i = self._next_rcpt
            self._next_rcpt += 1
            out = [Command(Phase.RCPT, self._rcpts[i])]
            self._awaiting.append((Phase.RCPT, i))
        elif not self._accepted:
            self._end(needs_reset=True)  # every RCPT refused: no DATA
            return []
        else:
            out = [Command(Phase.DATA, self._verbs.data)]
            self._awaiting.append((Phase.DATA, -1))
        return out

    # -- what came back --------------------------------------------------------------------

    def receive(self, evidence: Evidence) -> None:
        """The reply (or failure) for the oldest command written and not yet answered."""
        if not self._awaiting:
            raise RuntimeError("receive() without a command awaiting its reply")
        phase, index = self._awaiting.popleft()
        if isinstance(evidence, Reply):
            if evidence.code not in EXPECTED[phase] or evidence.phase is not phase:
                evidence = expect(phase, evidence)
        elif phase is Phase.DATA_END and evidence.kind in _LOST_AFTER_DOT and self._accepted:
            # RFC 1047: the message went out whole and no valid reply came: the server may have it.
            evidence = TransportFailure(FailureKind.AMBIGUOUS, Phase.DATA_END, evidence.detail)
        if isinstance(evidence, TransportFailure) or evidence.code == 421:  # ends_session()
            self._session_ended(evidence)
        elif phase is Phase.RCPT:
            self._rcpt(index, evidence)
        elif phase is Phase.MAIL:
            self._mail_answered(evidence)
        elif phase is Phase.DATA:
            self._data_answered(evidence)
        elif phase is Phase.DATA_END:
            self._body_answered(evidence)
        else:
            self._rset(evidence)

    def _rset(self, reply: Reply) -> None:
        if reply.code == 250:
            self._step = _Step.ENVELOPE
            return
        # The server will not clear the last transaction: this connection is of no more use.
        self._settle_all(reply)
        self._end(reusable=False)

    def _mail_answered(self, reply: Reply) -> None:
        self._mail_reply = reply
        if reply.code == 250:
            return
        self._settle_all(reply)
        self._accepted.clear()
        if not self._pipelining:
            self._end(needs_reset=True)
        # Pipelined: the RCPT and DATA replies follow; read them and end after DATA's.

    def _rcpt(self, index: int, reply: Reply) -> None:
        mail = self._mail_reply
        if isinstance(mail, Reply) and mail.code != 250:
            return  # pipelined after a refused MAIL: the replies say nothing of the recipients
        rcpt = self._recipients[index]
        if reply.code in (250, 251):
            self._accepted.append(rcpt)
            return
        self._evidence[rcpt] = reply
        too_many = classify(reply.code, reply.enhanced, reply.text, phase=Phase.RCPT).category
        if too_many is Category.TOO_MANY_RECIPIENTS and not self._pipelining:
            # The server takes no more in this transaction: name the rest in the next one.
            for later in self._recipients[index + 1 :]:
                self._evidence[later] = reply
            self._next_rcpt = len(self._rcpts)

    def _data_answered(self, reply: Reply) -> None:
        mail_ok = isinstance(self._mail_reply, Reply) and self._mail_reply.code == 250
        if reply.code == 354:
            if not mail_ok:
                self._accepted.clear()
            self._step = _Step.BODY
            return
        for rcpt in self._accepted:
            self._evidence[rcpt] = reply
        self._accepted.clear()
        self._end(needs_reset=True)

    def _body_answered(self, reply: Reply) -> None:
        if not self._accepted:
            # The lone dot that ended an empty DATA: nothing was sent to anyone.
            self._end(needs_reset=reply.code >= 400)
            return
        for rcpt in self._accepted:
            self._evidence[rcpt] = reply
        if 200 <= reply.code < 300:
            self._completed = True
            self._final = reply
        self._end()

    def _session_ended(self, evidence: Evidence) -> None:
        """A 421 or no reply: every recipient not settled yet shares this end."""
        for rcpt in self._recipients:
            if rcpt not in self._evidence or rcpt in self._accepted:
                self._evidence[rcpt] = evidence
        self._accepted.clear()
        self._awaiting.clear()
        self._end(reusable=False)

    def _settle_all(self, evidence: Evidence) -> None:
        for rcpt in self._recipients:
            self._evidence[rcpt] = evidence

    def _end(self, *, reusable: bool = True, needs_reset: bool = False) -> None:
        self._step = _Step.DONE
        self.done = True
        self._reusable = reusable
        self._needs_reset = needs_reset
        if not reusable:
            self._awaiting.clear()

    # -- the outcome -----------------------------------------------------------------------

    def result(self) -> Transaction:
        """The transaction's outcome (call once :attr:`done`)."""
        if not self.done:
            raise RuntimeError("result() before the transaction ended")
        return Transaction(
            evidence={r: self._evidence[r] for r in self._recipients},
            accepted=tuple(dict.fromkeys(self._accepted)),
            completed=self._completed,
            final=self._final,
            reusable=self._reusable,
            needs_reset=self._needs_reset,
        )
