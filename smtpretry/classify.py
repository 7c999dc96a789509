"""What a server reply means for a recipient: :class:`Category` and :class:`Action`.

``classify()`` is pure: it reads a reply code, an enhanced status code and the
reply text, walks the rule table :data:`RULES` and returns the first rule that
matches as a :class:`Classification`. How long to wait is not decided here;
that is ``decide()``'s job, using ``RetryPolicy``.

How the table is read
---------------------

Each :class:`Rule` lists conditions (an enhanced-code pattern, a text regex,
a set of basic reply codes, a set of phases). A rule matches when *every*
condition it gives holds; conditions left as ``None`` match anything. The table
is read top to bottom and the first match wins, so order is the whole logic:

1. 2xx and 3xx replies are positive (RFC 5321 4.2.1: the first digit decides
   success). They are accepted whatever the text or enhanced code says; an
   enhanced ``5.x.x`` on a ``250`` is the server's bug, not a failure.
2. Greylisting words (4xx only). Greylisters reuse whatever enhanced code the
   MTA offers (Stalwart sends ``422 4.2.2 Greylisted``), and "greylisted" is
   never ambiguous, so it outranks the enhanced code.
3. Decisive enhanced codes (RFC 3463). A specific subject/detail pair says
   what happened better than prose does: ``X.2.2`` mailbox full, ``X.2.3`` and
   ``X.3.4`` too big, ``X.5.3`` too many recipients, ``X.1.1`` no such user,
   the RFC 4954 auth codes. Pattern ``X`` stands for any class, so ``552 5.2.2``
   and ``452 4.2.2`` land on the same row. The RFC 4954 AUTH reply codes
   (530, 534, 535, 538) sit here too: they are as specific as an enhanced code.
4. Text patterns. Many servers send a generic enhanced code (``4.7.0``,
   ``4.3.2``, ``5.7.1``, ``X.0.0``) or none at all, and explain themselves in
   prose. Text rules that are only safe on one class carry ``codes=``.
5. Generic enhanced codes: the RFC 3463 *subject* alone (``4.3.*`` mail
   system, ``4.4.*`` network, ``5.7.*`` security/policy ...), read only after
   the text had its say.
6. Specific basic codes (``421``, ``554``).
7. The basic code class: 4xx defers, 5xx fails (RFC 5321 4.2.1, 4.2.5).

Users extend the table rather than edit it:
``classify(code, text=text, rules=(my_rule, *RULES))``. If a custom table
matches nothing, the class rules of step 7 still answer (and a code outside
200..599 fails), so ``classify()`` never raises for a server's reply.

.. versionadded:: 0.1
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from .reply import EnhancedCode, Phase, Reply, parse_reply

__all__ = [
    "NXDOMAIN_DEFER",
    "RULES",
    "Action",
    "Category",
    "Classification",
    "Rule",
    "classify",
    "classify_reply",
    "retry_after_hint",
]


class Category(StrEnum):
    """What the server said, in the vocabulary of ``replies_public.tsv``.

    .. versionadded:: 0.1
    """

    ACCEPTED = "accepted"
    THROTTLED = "throttled"
    SERVICE_UNAVAILABLE = "service_unavailable"
    MAILBOX_FULL = "mailbox_full"
    MESSAGE_TOO_LARGE = "message_too_large"
    GREYLISTED = "greylisted"
    RECIPIENT_RATE_LIMITED = "recipient_rate_limited"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    POLICY_REJECTED = "policy_rejected"
    AUTH_OR_TLS = "auth_or_tls"
    OTHER_TEMPORARY = "other_temporary"
    OTHER_PERMANENT = "other_permanent"
    SUSPENDED = "suspended"
    """Not the server's words: an operator suspended the destination
    (``smtpretry queue suspend``), so nothing was asked of it.

    .. versionadded:: 0.5"""


class Action(StrEnum):
    """What to do next: ``OK`` delivered; ``RETRY`` soon, on a new connection,
    with backoff; ``DEFER`` this recipient to the durable queue, much later;
    ``FAIL`` never try again.

    .. versionadded:: 0.1
    """

    OK = "ok"
    RETRY = "retry"
    DEFER = "defer"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Classification:
    """The outcome of :func:`classify`. ``reason`` is the name of the rule
    that matched, e.g. ``"enhanced X.2.2"``.

    .. versionadded:: 0.1
    """

    category: Category
    action: Action
    reason: str


# An enhanced-code pattern: class (X = any), subject, detail; "*" = any.
_PATTERN = re.compile(r"([X245])\.(\d{1,3}|\*)\.(\d{1,3}|\*)")
_Parts = tuple[int | None, int | None, int | None]


@lru_cache(maxsize=256)
def _parse_pattern(pattern: str) -> _Parts:
    m = _PATTERN.fullmatch(pattern.strip().upper())
    if m is None:
        raise ValueError(f"enhanced: expected a pattern like 'X.2.2' or '4.7.*', not {pattern!r}")
    klass, subject, detail = (None if p in ("X", "*") else int(p) for p in m.groups())
    return klass, subject, detail


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One row of the rule table. It matches when every condition given holds:

    - ``enhanced``: a pattern such as ``"X.2.2"``, ``"4.7.0"`` or ``"X.7.*"``
      (``X`` = any class, ``*`` = any number) that the enhanced code must fit;
      a rule with a pattern never matches a reply without an enhanced code;
    - ``text``: a regex searched in the reply text, case-insensitively (a
      pattern compiled without :data:`re.IGNORECASE` is recompiled with it);
    - ``codes``: the basic reply codes the rule applies to;
    - ``phases``: the session phases the rule applies to.

    ``name`` becomes :attr:`Classification.reason`.

    :raises ValueError: for a malformed ``enhanced`` pattern or an empty
        ``codes`` / ``phases`` set.

    .. versionadded:: 0.1
    """

    category: Category
    action: Action
    name: str
    enhanced: str | None = None
    text: re.Pattern[str] | None = None
    codes: frozenset[int] | None = None
    phases: frozenset[Phase] | None = None

    def __post_init__(self) -> None:
        if self.enhanced is not None:
            _parse_pattern(self.enhanced)
        if self.text is not None and not self.text.flags & re.IGNORECASE:
            object.__setattr__(
                self, "text", re.compile(self.text.pattern, self.text.flags | re.IGNORECASE)
            )
        if self.codes is not None and not self.codes:
            raise ValueError(f"{self.name}: codes must be None or non-empty")
        if self.phases is not None and not self.phases:
            raise ValueError(f"{self.name}: phases must be None or non-empty")

    def matches(
        self, code: int, enhanced: EnhancedCode | None, text: str, phase: Phase | None
    ) -> bool:
        """Whether every condition of this rule holds for the given reply.
        A rule restricted to ``phases`` does not match when ``phase`` is unknown."""
        if self.codes is not None and code not in self.codes:
            return False
        if self.phases is not None and phase not in self.phases:
            return False
        if self.enhanced is not None:
            if enhanced is None:
                return False
            want = _parse_pattern(self.enhanced)
            have = (enhanced.klass, enhanced.subject, enhanced.detail)
            if any(w is not None and w != h for w, h in zip(want, have, strict=True)):
                return False
        return self.text is None or self.text.search(text) is not None


def _words(*alternatives: str) -> re.Pattern[str]:
    """One case-insensitive regex from readable alternatives."""
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


_C = Category
_A = Action
_2XX_3XX = frozenset(range(200, 400))
_4XX = frozenset(range(400, 500))
_5XX = frozenset(range(500, 600))

# Step 7 on its own: the safety net behind any table (RFC 5321 4.2.1: 4yz is a
# transient negative completion, 5yz a permanent one).
_CLASS_RULES: tuple[Rule, ...] = (
    Rule(name="class 2xx/3xx", codes=_2XX_3XX, category=_C.ACCEPTED, action=_A.OK),
    Rule(name="class 4xx", codes=_4XX, category=_C.OTHER_TEMPORARY, action=_A.DEFER),
    Rule(name="class 5xx", codes=_5XX, category=_C.OTHER_PERMANENT, action=_A.FAIL),
)
# Not a reply code at all (RFC 5321 4.2 allows 2yz..5yz only). A server that
# sends one is broken and will not take this message; still, a reply is never
# an exception inside the package.
_NOT_A_CODE = Classification(_C.OTHER_PERMANENT, _A.FAIL, "not a reply code")

# Texts shared by more than one rule.
_GREYLIST = _words(r"gr[ae]y-?list", r"postgrey", r"greyfix")
_RECIPIENT_RATE = _words(
    r"receiving mail (?:at a rate|too fast)",  # Gmail 4.2.1 / 5.2.1 ReceivingRate
    r"recipient has exceeded .{0,30}\brate",  # Yandex
    r"mailbox received too (?:much|many)",  # Rackspace G30
    r"number of messages .{0,60}\bto this recipient",  # Outlook 5.2.121
    r"deferred due to excessive volume",  # iCloud
    r"too many concurrent deliveries for user",  # Dovecot LMTP
)
_THROTTLE = _words(
    r"too many (?:\w+ ){0,2}(?:connections|sessions)",  # "too many concurrent SMTP connections"
    r"concurrent (?:\w+ )?connections",
    r"connection (?:limit|rate)",
    r"rate[- ]?limit",
    r"rate controlled",
    r"throttl",
    r"temporarily deferred",  # Yahoo TS01..TS03
    r"reached (?:its|the|your|a) limit",
    r"relay limit",
    r"sending (?:quota|limit|rate)",
    r"too many (?:messages|mails|e-?mails)",
    r"max(?:imum)? number of messages per (?:session|connection)",
    r"slow down",
)
_UNKNOWN_RECIPIENT = _words(
    r"user unknown",
    r"unknown (?:user|recipient|mailbox)",
    r"no such (?:user|mailbox|recipient|account)",
    r"(?:does not|doesn't|does no longer) exist",
    r"mailbox not found",
    r"no mailbox here",
    r"invalid (?:recipient|mailbox)",
    r"recipient (?:address )?(?:not found|unknown)",
    r"inactive (?:e-?mail )?(?:address|account)",
)

_RESOLUTION = frozenset({Phase.RESOLUTION})
_RESOLUTION_RULES: tuple[Rule, ...] = (
    # RFC 7505 3: a null MX says the domain takes no mail at all.
    Rule(name="resolution: null MX", phases=_RESOLUTION, enhanced="X.1.10", codes=_5XX,
         category=_C.UNKNOWN_RECIPIENT, action=_A.FAIL),
    # The domain does not exist (NXDOMAIN), as Postfix bounces it.
    Rule(name="resolution: no such domain", phases=_RESOLUTION, enhanced="X.1.2", codes=_5XX,
         category=_C.UNKNOWN_RECIPIENT, action=_A.FAIL),
    # SERVFAIL, a timeout: the answer may come next time. The resolver caches the
    # failure for the negative TTL, so a retry in this session would learn nothing.
    Rule(name="resolution: temporary DNS failure", phases=_RESOLUTION, enhanced="X.4.3", codes=_4XX,
         category=_C.SERVICE_UNAVAILABLE, action=_A.DEFER),
    # No MX host has an address (or only private ones): the mail cannot be routed.
    Rule(name="resolution: unroutable", phases=_RESOLUTION, enhanced="X.4.4", codes=_5XX,
         category=_C.OTHER_PERMANENT, action=_A.FAIL),
)

NXDOMAIN_DEFER = Rule(
    name='resolution: no such domain (nxdomain = "defer")', phases=_RESOLUTION, enhanced="X.1.2",
    codes=_5XX, category=_C.OTHER_TEMPORARY, action=_A.DEFER,
)
"""Put before :data:`RULES` to defer recipients at a domain that does not
exist instead of failing them (``[dns] nxdomain = "defer"``, as KumoMTA does:
a domain can be missing for a moment while its registration or zone is fixed).

.. versionadded:: 0.5
"""

RULES: tuple[Rule, ...] = (
    # 1. RFC 5321 4.2.1: positive completion (2yz) and intermediate (3yz, e.g.
    #    354 after DATA) replies are success, whatever the text says.
    _CLASS_RULES[0],
    # 1b. DNS outcomes (phase "resolution", made by the router from what the
    #    resolver said, never sent by a server): RFC 5321 5.1 and RFC 7505.
    *_RESOLUTION_RULES,
    # 2. Greylisting: "come back later from the same IP", so defer (the queue
    #    waits minutes, a fast retry would only be greylisted again).
    Rule(name="text 'greylist'", text=_GREYLIST, codes=_4XX,
         category=_C.GREYLISTED, action=_A.DEFER),
    # 3. Decisive enhanced codes (RFC 3463 section 3) and RFC 4954 AUTH codes.
    # X.2.2 "mailbox full": RFC 3463 3.3 calls it a persistent transient
    # condition, so it defers even when sent as 5xx (552 5.2.2, 554 5.2.2).
    Rule(name="enhanced X.2.2", enhanced="X.2.2", category=_C.MAILBOX_FULL, action=_A.DEFER),
    # X.2.3 "message length exceeds administrative limit", X.3.4 "message too
    # big for system": resending the same bytes cannot succeed, even on 4xx.
    Rule(name="enhanced X.2.3", enhanced="X.2.3",
         category=_C.MESSAGE_TOO_LARGE, action=_A.FAIL),
    Rule(name="enhanced X.3.4", enhanced="X.3.4",
         category=_C.MESSAGE_TOO_LARGE, action=_A.FAIL),
    # X.5.3 "too many recipients": the rest go in a following transaction,
    # and 552 here is to be read as 452 (RFC 5321 4.5.3.1.10, RFC 3463 3.6).
    Rule(name="enhanced X.5.3", enhanced="X.5.3",
         category=_C.TOO_MANY_RECIPIENTS, action=_A.RETRY),
    # X.4.5 "mail system congestion" (RFC 3463 3.5): back off and come back soon.
    Rule(name="enhanced X.4.5", enhanced="X.4.5", category=_C.THROTTLED, action=_A.RETRY),
    # X.1.1 "bad destination mailbox address" (RFC 3463 3.2), X.1.6 "mailbox
    # has moved, no forwarding address", X.1.10 null MX (RFC 7505). On 4xx the
    # server asked us to try again (Postfix soft_bounce, directory outages).
    Rule(name="enhanced X.1.1 (4xx)", enhanced="X.1.1", codes=_4XX,
         category=_C.UNKNOWN_RECIPIENT, action=_A.DEFER),
    Rule(name="enhanced X.1.1", enhanced="X.1.1",
         category=_C.UNKNOWN_RECIPIENT, action=_A.FAIL),
    Rule(name="enhanced X.1.6", enhanced="X.1.6", codes=_5XX,
         category=_C.UNKNOWN_RECIPIENT, action=_A.FAIL),
    Rule(name="enhanced X.1.10", enhanced="X.1.10", codes=_5XX,
         category=_C.UNKNOWN_RECIPIENT, action=_A.FAIL),
    # RFC 4954 6: 530 authentication required, 534 mechanism too weak,
    # 535 credentials invalid, 538 encryption required. Same credentials, same answer.
    Rule(name="code 530/534/535/538", codes=frozenset({530, 534, 535, 538}),
         category=_C.AUTH_OR_TLS, action=_A.FAIL),
    # RFC 4954 / RFC 5248 registry: X.7.8 credentials invalid, X.7.10 and
    # X.7.11 encryption needed. X.7.57 and X.7.139 are Exchange Online's
    # "client not authenticated" and "SMTP AUTH disabled". (X.7.9 is left out:
    # Yahoo sends 554 5.7.9 for policy blocks.)
    *(Rule(name=f"enhanced X.7.{d}", enhanced=f"X.7.{d}", codes=_5XX,
           category=_C.AUTH_OR_TLS, action=_A.FAIL)
      for d in (8, 10, 11, 57, 139)),
    # 4. Text patterns, for generic or missing enhanced codes.
    # RFC 5321 4.5.3.1.10: too many recipients is temporary whatever the code.
    Rule(name="text 'too many recipients'",
         text=_words(r"too many (?:recipients|rcpt)", r"recipient list too long",
                     r"multiple destination domains"),
         category=_C.TOO_MANY_RECIPIENTS, action=_A.RETRY),
    # Limits on what *this recipient* receives: other recipients are fine, so
    # park this one in the queue rather than slowing the connection. A 5xx
    # here (Gmail "ReceivingRatePerm") is taken at its word.
    Rule(name="text 'recipient rate' (4xx)", text=_RECIPIENT_RATE, codes=_4XX,
         category=_C.RECIPIENT_RATE_LIMITED, action=_A.DEFER),
    Rule(name="text 'recipient rate' (5xx)", text=_RECIPIENT_RATE, codes=_5XX,
         category=_C.RECIPIENT_RATE_LIMITED, action=_A.FAIL),
    # Limits on *us* (connections, messages per IP or sender): retry soon with
    # backoff on a new connection; the pool lowers its cap on these. A 5xx
    # says the server will not take it back (RFC 5321 4.2.1), so it fails.
    Rule(name="text 'too many connections / rate limit' (4xx)", text=_THROTTLE, codes=_4XX,
         category=_C.THROTTLED, action=_A.RETRY),
    Rule(name="text 'too many connections / rate limit' (5xx)", text=_THROTTLE, codes=_5XX,
         category=_C.THROTTLED, action=_A.FAIL),
    Rule(name="text 'unknown recipient' (4xx)", text=_UNKNOWN_RECIPIENT, codes=_4XX,
         category=_C.UNKNOWN_RECIPIENT, action=_A.DEFER),
    Rule(name="text 'unknown recipient'", text=_UNKNOWN_RECIPIENT, codes=_5XX,
         category=_C.UNKNOWN_RECIPIENT, action=_A.FAIL),
    # Exchange Online directory-based edge blocking answers a missing
    # recipient with 550 5.4.1 "Recipient address rejected: Access denied".
    Rule(name="enhanced 5.4.1 + text 'recipient address rejected'", enhanced="5.4.1",
         text=_words(r"recipient address rejected"),
         category=_C.UNKNOWN_RECIPIENT, action=_A.FAIL),
    # Auth and TLS requirements hidden behind 550 5.7.1 or 554 5.7.0 (RFC 3207 4).
    Rule(name="text 'authentication / STARTTLS required'", codes=_5XX,
         text=_words(r"authenticat\w* (?:is )?required", r"auth ?required",
                     r"not authenticated", r"authentication (?:failed|unsuccessful)",
                     r"\bstarttls\b", r"\btls\b.{0,20}\brequired",
                     r"encryption (?:is )?required"),
         category=_C.AUTH_OR_TLS, action=_A.FAIL),
    # "insufficient system storage" is RFC 5321's own 452 text: the server,
    # not the mailbox, is short of space, so retry like any outage. Read
    # before X.3.1 and "quota" so that a full *system* is not a full mailbox.
    Rule(name="text 'server unavailable'", codes=_4XX,
         text=_words(r"\btemporar(?:y|ily) (?:local |server )?(?:problem|failure|error|unavailable)",
                     r"insufficient system", r"\bsystem (?:is )?full", r"too much load",
                     r"too busy", r"server (?:is )?busy",
                     r"service (?:is )?(?:not available|unavailable)",
                     r"not accepting (?:network )?messages"),
         category=_C.SERVICE_UNAVAILABLE, action=_A.RETRY),
    # Mailbox full in words; defers on any code, like X.2.2. "Sending quota"
    # is the sender's allowance, not the mailbox.
    Rule(name="text 'quota / mailbox full'",
         text=_words(r"(?<!sending )\bquota\b", r"\bover ?quota\b",
                     r"\bmailbox\b.{0,30}\b(?:full|size limit)\b", r"\bfull mailbox\b",
                     r"storage allocation"),
         category=_C.MAILBOX_FULL, action=_A.DEFER),
    # 422 is not in RFC 5321 but real servers send it for "recipient storage
    # exceeded"; any other 422 falls through to the 4xx class.
    Rule(name="code 422 + text 'storage'", codes=frozenset({422}),
         text=_words(r"\bstorage\b", r"\bspace\b"),
         category=_C.MAILBOX_FULL, action=_A.DEFER),
    # Size in words; fails on any code, like X.2.3 / X.3.4.
    Rule(name="text 'message too large'",
         text=_words(r"\b(?:message|mail|e-?mail|file|data|body)\b.{0,20}\btoo (?:big|large|long)\b",
                     r"\bsize\b.{0,40}\b(?:exceed|limit|maximum)",
                     r"\bexceed\w*\b.{0,40}\b(?:size|length|databytes)\b"),
         category=_C.MESSAGE_TOO_LARGE, action=_A.FAIL),
    # Spam, blocklists, DMARC/SPF/DKIM: the same message from the same IP
    # will be refused again. Only on 5xx; a 4xx may lift.
    Rule(name="text 'spam / blocked / policy'", codes=_5XX,
         text=_words(r"\bspam\b", r"\bblock(?:ed|ing)?\b", r"block ?list", r"black ?list",
                     r"\bpolic(?:y|ies)\b", r"\bdmarc\b", r"\bspf\b", r"\bdkim\b",
                     r"reputation", r"\bUBE\b", r"unsolicited", r"\bdnsbl\b", r"\brbl\b"),
         category=_C.POLICY_REJECTED, action=_A.FAIL),
    # 5. Generic enhanced codes: the RFC 3463 subject alone. The basic code
    #    class is trusted over the enhanced class, hence codes= not "4.3.*".
    # X.3.1 "mail system full" (RFC 3463 3.4): treated like a full mailbox.
    Rule(name="enhanced X.3.1", enhanced="X.3.1", category=_C.MAILBOX_FULL, action=_A.DEFER),
    # X.3.* mail system and X.4.* network/routing status on 4xx: the
    # destination is down or overloaded, not the recipient (RFC 3463 3.4, 3.5).
    Rule(name="enhanced X.3.* (4xx)", enhanced="X.3.*", codes=_4XX,
         category=_C.SERVICE_UNAVAILABLE, action=_A.RETRY),
    Rule(name="enhanced X.4.* (4xx)", enhanced="X.4.*", codes=_4XX,
         category=_C.SERVICE_UNAVAILABLE, action=_A.RETRY),
    # X.7.* security or policy status (RFC 3463 3.8) on 5xx.
    Rule(name="enhanced X.7.* (5xx)", enhanced="X.7.*", codes=_5XX,
         category=_C.POLICY_REJECTED, action=_A.FAIL),
    # A 5xx whose enhanced subject is addressing, mailbox, system, routing,
    # protocol or content (RFC 3463 3.2-3.7) is not a policy block, even as 554.
    *(Rule(name=f"enhanced X.{s}.* (5xx)", enhanced=f"X.{s}.*", codes=_5XX,
           category=_C.OTHER_PERMANENT, action=_A.FAIL)
      for s in range(1, 7)),
    # 6. Specific basic codes.
    # RFC 5321 4.2.2/3.8: 421 "service not available, closing transmission
    # channel" is about the server, not the recipient: reconnect soon.
    Rule(name="code 421", codes=frozenset({421}),
         category=_C.SERVICE_UNAVAILABLE, action=_A.RETRY),
    # RFC 5321 4.2.3: 554 "transaction failed" / "no SMTP service here"; in
    # practice a block at connect or after DATA.
    Rule(name="code 554", codes=frozenset({554}),
         category=_C.POLICY_REJECTED, action=_A.FAIL),
    # 7. The basic code class.
    *_CLASS_RULES[1:],
)
"""The default rule table, read top to bottom; see the module docstring.

.. versionadded:: 0.1
"""


def classify(
    code: int,
    enhanced: EnhancedCode | str | None = None,
    text: str = "",
    *,
    phase: Phase | None = None,
    rules: Sequence[Rule] = RULES,
) -> Classification:
    """Classify a reply by walking ``rules``; the first match wins.

    ``enhanced`` may be an :class:`EnhancedCode` or a string such as
    ``"4.2.2"``; when it is ``None`` (or ``""``) it is looked for in ``text``.
    When no rule in ``rules`` matches, the basic code class decides
    (4xx defer, 5xx fail); a code outside 200..599 fails.

    :raises ValueError: if ``enhanced`` is a string that is not an enhanced
        status code.

    .. versionadded:: 0.1
    """
    if not 200 <= code <= 599:
        return _NOT_A_CODE
    if isinstance(enhanced, str):
        enhanced = EnhancedCode.parse(enhanced) if enhanced.strip() else None
    if enhanced is None:
        enhanced = EnhancedCode.find(text)
    for rule in (*rules, *_CLASS_RULES):
        if rule.matches(code, enhanced, text, phase):
            return Classification(rule.category, rule.action, rule.name)
    raise AssertionError("unreachable: the class rules cover 200..599")  # pragma: no cover


def classify_reply(reply: str | Reply, *, rules: Sequence[Rule] = RULES) -> Classification:
    """Classify a :class:`Reply`, or a raw reply string (parsed with
    :func:`parse_reply`, phase RCPT). Its enhanced code and phase are used.

    :raises ReplyParseError: when a string is not an SMTP reply.

    .. versionadded:: 0.1
    """
    if isinstance(reply, str):
        reply = parse_reply(reply)
    return classify(reply.code, reply.enhanced, reply.text, phase=reply.phase, rules=rules)


_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
_HINT = re.compile(
    r"\b(?:try(?:\s+again)?(?:\s+later)?|retry|wait|again)\s+(?:in|after|for)?\s*"
    r"(\d{1,12}(?:\.\d{1,6})?)\s*"
    r"(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)\b",
    re.IGNORECASE | re.ASCII,
)
_MAX_HINT_S = 24 * 3600.0


def retry_after_hint(text: str) -> float | None:
    """Seconds a reply asks us to wait ("try again in 60 seconds", "retry
    after 5 minutes", "wait 2 min"), capped at 24 hours; ``None`` if the text
    names no delay. A hint only: ``decide()`` may wait longer.

    .. versionadded:: 0.1
    """
    m = _HINT.search(text)
    if m is None:
        return None
    return min(float(m[1]) * _UNIT_S[m[2][0].lower()], _MAX_HINT_S)
