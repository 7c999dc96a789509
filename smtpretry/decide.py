"""What now? The pure decision for one recipient after one attempt.

``decide()`` reads the classification of the latest evidence in a
:class:`RecipientState` and adds timing from the :class:`RetryPolicy`: retry
after how long, defer until when. It does no I/O and takes the clock and the
random source as arguments, so tests can assert exact delays.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from .classify import RULES, Action, Category, Classification, Rule, classify, retry_after_hint
from .policy import Delivery, RetryPolicy
from .reply import Evidence, FailureKind, Reply, TransportFailure

__all__ = [
    "Attempt",
    "Decision",
    "Defer",
    "Fail",
    "Ok",
    "RecipientState",
    "Retry",
    "Signal",
    "classify_evidence",
    "decide",
    "give_up",
    "signal",
    "suspended",
]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try for one recipient: what the server said (or how the session
    failed), how that was classified, the attempt number within the send
    (1-based) and when it happened (epoch seconds)."""

    evidence: Evidence
    classification: Classification
    attempt: int
    attempted_at: float


@dataclass(frozen=True, slots=True)
class RecipientState:
    """Everything known about one recipient of one message so far.

    ``deferrals`` counts earlier deferrals (from the queue), which picks the
    step of the deferral schedule. ``first_attempt_at`` bounds the lifetime.
    """

    address: str
    history: tuple[Attempt, ...] = ()
    deferrals: int = 0
    first_attempt_at: float | None = None

    def record(self, attempt: Attempt) -> RecipientState:
        """A new state with ``attempt`` appended to the history."""
        first = self.first_attempt_at if self.first_attempt_at is not None else attempt.attempted_at
        return RecipientState(self.address, (*self.history, attempt), self.deferrals, first)

    @property
    def last(self) -> Attempt | None:
        return self.history[-1] if self.history else None


@dataclass(frozen=True, slots=True)
class Ok:
    """Delivered. ``assumed`` when the connection was lost after the final
    dot and the policy is at-most-once: the server may have the message."""

    assumed: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again in this session, on a new connection, after ``delay_s`` seconds."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Defer:
    """Stop for now; come back at ``next_attempt_at`` (epoch seconds)."""

    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class Fail:
    """Never again. ``expired`` when the message outlived ``max_lifetime``."""

    expired: bool = False


Decision = Ok | Retry | Defer | Fail


_FAILURE_RULES: dict[FailureKind, Classification] = {
    # A certificate that does not verify will not verify on the next try either:
    # it is a configuration error, reported with its cause.
    FailureKind.TLS: Classification(Category.AUTH_OR_TLS, Action.FAIL, "tls failure"),
    FailureKind.AUTH: Classification(Category.AUTH_OR_TLS, Action.FAIL, "no usable AUTH mechanism"),
    # RFC 1870: a message larger than the advertised SIZE is refused without
    # uploading it; the same bytes can never fit.
    FailureKind.SIZE: Classification(
        Category.MESSAGE_TOO_LARGE, Action.FAIL, "larger than the advertised SIZE"
    ),
    FailureKind.UNSUPPORTED: Classification(
        Category.OTHER_PERMANENT, Action.FAIL, "needs an extension the server lacks"
    ),
    # The host name did not resolve: asking again within seconds asks a resolver that
    # has just cached the failure. Come back later (a mistyped relay or a DNS outage
    # on the sending side is no reason to fail the recipients for good).
    FailureKind.DNS: Classification(
        Category.SERVICE_UNAVAILABLE, Action.DEFER, "the host name does not resolve"
    ),
    FailureKind.BACKEND: Classification(
        Category.SERVICE_UNAVAILABLE, Action.RETRY, "the shared backend gave no connection slot"
    ),
    # Nothing was asked of the server: come back when the suspension ends (suspended()).
    FailureKind.SUSPENDED: Classification(Category.SUSPENDED, Action.DEFER, "destination suspended"),
    # RFC 1047: the server may have the message. At-least-once retries it.
    FailureKind.AMBIGUOUS: Classification(
        Category.SERVICE_UNAVAILABLE, Action.RETRY, "connection lost after the final dot"
    ),
}


def classify_evidence(evidence: Evidence, rules: Sequence[Rule] = RULES) -> Classification:
    """Classify a reply with :func:`~smtpretry.classify` (by ``rules``), or a
    transport failure (a refused, dropped or timed-out session retries; a TLS
    failure fails)."""
    if isinstance(evidence, Reply):
        return classify(evidence.code, evidence.enhanced, evidence.text, phase=evidence.phase,
                        rules=rules)
    return _FAILURE_RULES.get(
        evidence.kind,
        Classification(Category.SERVICE_UNAVAILABLE, Action.RETRY, f"transport {evidence.kind.value}"),
    )


@dataclass(frozen=True, slots=True)
class Signal:
    """What one reply (or failure) says about the destination rather than
    the recipient: computed once per reply by :func:`signal`, acted on by the
    Mailer through its connection's limiter.

    ``throttled``: the server throttles us (lower the connection cap; inside an
    established session, the pace too). ``hold_off_s``: the server named a
    wait; no new connection before it has passed. ``lost``: the connection was
    lost or fell out of step (logged). ``possible_duplicate``: lost after the
    final dot, so the server may have the message (RFC 1047).

    .. versionadded:: 0.4
    """

    throttled: bool = False
    hold_off_s: float | None = None
    lost: bool = False
    possible_duplicate: bool = False


_QUIET = Signal()
_LOST = frozenset(
    {FailureKind.DISCONNECTED, FailureKind.TIMEOUT, FailureKind.AMBIGUOUS, FailureKind.PROTOCOL}
)


def signal(evidence: Evidence, c: Classification) -> Signal:
    """The destination signal of ``evidence`` classified as ``c`` (pure)."""
    if isinstance(evidence, TransportFailure):
        if evidence.kind not in _LOST:
            return _QUIET
        return Signal(lost=True, possible_duplicate=evidence.kind is FailureKind.AMBIGUOUS)
    hint = retry_after_hint(evidence.text) if c.action is Action.RETRY else None
    if hint is None and c.category is not Category.THROTTLED:
        return _QUIET
    return Signal(throttled=c.category is Category.THROTTLED, hold_off_s=hint)


def _defer(state: RecipientState, policy: RetryPolicy, now: float) -> Defer | Fail:
    at = now + policy.deferral(state.deferrals)
    first = state.first_attempt_at if state.first_attempt_at is not None else now
    if at > first + policy.max_lifetime:
        return Fail(expired=True)
    return Defer(at)


def decide(
    state: RecipientState, policy: RetryPolicy, *, now: float, rng: random.Random,
    said: Signal | None = None,
) -> Decision:
    """The decision for a recipient whose latest attempt is ``state.last``.

    ``said`` is :func:`signal` of that attempt's evidence when the caller has
    it already (a reply shared by many recipients is read once); otherwise it
    is computed here.

    - ``ok`` -> :class:`Ok`; ``fail`` -> :class:`Fail`;
    - ``defer`` -> :class:`Defer` at ``now`` plus the policy's deferral step
      (or :class:`Fail` ``expired`` when that is past ``max_lifetime``);
    - ``retry`` -> :class:`Retry` after a full-jitter backoff, at least as long
      as a wait the reply names; too many recipients -> ``Retry(0)`` (the rest
      go in the next transaction, RFC 5321 4.5.3.1.10); a connection lost
      after the final dot -> :class:`Ok` ``assumed`` under at-most-once.

    Whether retries have run out is the caller's stop condition; then it
    calls :func:`give_up`.
    """
    last = state.last
    if last is None:
        raise ValueError("decide() needs a state with at least one attempt")
    c = last.classification
    match c.action:
        case Action.OK:
            return Ok()
        case Action.FAIL:
            return Fail()
        case Action.DEFER:
            return _defer(state, policy, now)
        case Action.RETRY:
            evidence = last.evidence
            if isinstance(evidence, TransportFailure):
                if evidence.kind is FailureKind.AMBIGUOUS and policy.delivery is Delivery.AT_MOST_ONCE:
                    return Ok(assumed=True)
                return Retry(policy.backoff(last.attempt, rng))
            if c.category is Category.TOO_MANY_RECIPIENTS:
                return Retry(0.0)
            delay = policy.backoff(last.attempt, rng)
            hint = (said if said is not None else signal(evidence, c)).hold_off_s
            return Retry(max(delay, hint) if hint is not None else delay)
    raise AssertionError(f"unhandled action {c.action!r}")


def give_up(state: RecipientState, policy: RetryPolicy, *, now: float) -> Defer | Fail:
    """Retries in this session ran out: defer the recipient (or fail it as
    expired past ``max_lifetime``). Never drops it."""
    return _defer(state, policy, now)


def suspended(state: RecipientState, policy: RetryPolicy, *, until: float, now: float) -> Defer | Fail:
    """The destination is suspended until ``until`` (epoch seconds): defer the
    recipient to then, when the suspension ends, rather than by the policy's
    deferral schedule; fail it as expired if that is past ``max_lifetime``.

    .. versionadded:: 0.5
    """
    first = state.first_attempt_at if state.first_attempt_at is not None else now
    if until > first + policy.max_lifetime:
        return Fail(expired=True)
    return Defer(max(until, now))
