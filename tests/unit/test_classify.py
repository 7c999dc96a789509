"""classify(): the rule table against the real-reply corpus, plus targeted cases."""

from __future__ import annotations

import csv
import re
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpretry.classify import (
    RULES,
    Action,
    Category,
    Classification,
    Rule,
    classify,
    classify_reply,
    retry_after_hint,
)
from smtpretry.reply import EnhancedCode, Phase, Reply, parse_reply

_TSV = Path(__file__).resolve().parents[1] / "data" / "replies_public.tsv"
"""The project's own copy of the public reply corpus (tests/data/README.md says where it
comes from); the tests read only this copy, so a clone with nothing beside it tests itself."""


def _find_tsv() -> Path:
    return _TSV


class Row(NamedTuple):
    line: int
    code: int
    enhanced: str
    category: str
    action: str
    debatable: bool
    text: str

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.code}-{self.enhanced or 'none'}-{self.category}"


def _load_rows() -> list[Row]:
    path = _find_tsv()
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [
            Row(reader.line_num, int(r["code"]), r["enhanced"], r["category"], r["action"],
                r["debatable"] == "yes", r["text"])
            for r in reader
        ]
    if not rows:
        pytest.fail(f"{path} holds no rows", pytrace=False)
    return rows


ROWS = _load_rows()
FIRM = [r for r in ROWS if not r.debatable]
DEBATABLE = [r for r in ROWS if r.debatable]


def test_corpus_labels_use_the_vocabulary() -> None:
    for row in ROWS:
        assert Category(row.category) and Action(row.action), row.id


@pytest.mark.parametrize("row", FIRM, ids=[r.id for r in FIRM])
def test_firm_rows(row: Row) -> None:
    c = classify_reply(row.text)
    assert (c.category.value, c.action.value) == (row.category, row.action), c.reason


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_rows_parse_with_their_code_and_enhanced_code(row: Row) -> None:
    reply = parse_reply(row.text)
    assert reply.code == row.code
    assert (str(reply.enhanced) if reply.enhanced else "") == row.enhanced


@pytest.mark.parametrize("row", DEBATABLE, ids=[r.id for r in DEBATABLE])
def test_debatable_rows_get_some_valid_action(row: Row) -> None:
    c = classify_reply(row.text)
    assert isinstance(c.action, Action) and isinstance(c.category, Category)


# Targeted cases: exact classifications, reason included.
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("552 5.2.2 Mailbox full",
         Classification(Category.MAILBOX_FULL, Action.DEFER, "enhanced X.2.2")),
        ("452 4.3.4 Message too big for system",
         Classification(Category.MESSAGE_TOO_LARGE, Action.FAIL, "enhanced X.3.4")),
        ("422 4.2.2 The email account that you tried to reach is over quota",
         Classification(Category.MAILBOX_FULL, Action.DEFER, "enhanced X.2.2")),
        ("422 The recipient's mailbox is over quota",
         Classification(Category.MAILBOX_FULL, Action.DEFER, "text 'quota / mailbox full'")),
        ("422 Recipient has exceeded storage limit",
         Classification(Category.MAILBOX_FULL, Action.DEFER, "code 422 + text 'storage'")),
        ("422 message exceeds the recipient's size limit",
         Classification(Category.MESSAGE_TOO_LARGE, Action.FAIL, "text 'message too large'")),
        ("422 something odd",
         Classification(Category.OTHER_TEMPORARY, Action.DEFER, "class 4xx")),
        ("452 4.5.3 Too many recipients",
         Classification(Category.TOO_MANY_RECIPIENTS, Action.RETRY, "enhanced X.5.3")),
        ("552 too many recipients",
         Classification(Category.TOO_MANY_RECIPIENTS, Action.RETRY,
                        "text 'too many recipients'")),
        ("421 Too many concurrent SMTP connections from this IP address; please try again later",
         Classification(Category.THROTTLED, Action.RETRY,
                        "text 'too many connections / rate limit' (4xx)")),
        ("421 Service closing transmission channel",
         Classification(Category.SERVICE_UNAVAILABLE, Action.RETRY, "code 421")),
        ("250 2.0.0 Ok: queued as 12345",
         Classification(Category.ACCEPTED, Action.OK, "class 2xx/3xx")),
        ("354 End data with <CR><LF>.<CR><LF>",
         Classification(Category.ACCEPTED, Action.OK, "class 2xx/3xx")),
        ("250 5.1.1 user unknown, but accepted anyway",
         Classification(Category.ACCEPTED, Action.OK, "class 2xx/3xx")),
        ("450 4.2.0 Greylisted, see http://postgrey.schweikert.ch/",
         Classification(Category.GREYLISTED, Action.DEFER, "text 'greylist'")),
        ("450 4.1.1 <a@example.org>: Recipient address rejected: User unknown",
         Classification(Category.UNKNOWN_RECIPIENT, Action.DEFER, "enhanced X.1.1 (4xx)")),
        ("550 5.1.1 User unknown",
         Classification(Category.UNKNOWN_RECIPIENT, Action.FAIL, "enhanced X.1.1")),
        ("535 5.7.8 Authentication credentials invalid",
         Classification(Category.AUTH_OR_TLS, Action.FAIL, "code 530/534/535/538")),
        ("550 5.7.8 Authentication credentials invalid",
         Classification(Category.AUTH_OR_TLS, Action.FAIL, "enhanced X.7.8")),
        ("554 5.7.0 Must issue a STARTTLS command first",
         Classification(Category.AUTH_OR_TLS, Action.FAIL,
                        "text 'authentication / STARTTLS required'")),
        ("550 5.7.1 Relay access denied",
         Classification(Category.POLICY_REJECTED, Action.FAIL, "enhanced X.7.* (5xx)")),
        ("554 No SMTP service here",
         Classification(Category.POLICY_REJECTED, Action.FAIL, "code 554")),
        ("554 5.4.6 Routing loop detected",
         Classification(Category.OTHER_PERMANENT, Action.FAIL, "enhanced X.4.* (5xx)")),
        ("451 4.4.5 Mail system congestion",
         Classification(Category.THROTTLED, Action.RETRY, "enhanced X.4.5")),
        ("500 5.5.2 Syntax error",
         Classification(Category.OTHER_PERMANENT, Action.FAIL, "enhanced X.5.* (5xx)")),
        ("599 whatever",
         Classification(Category.OTHER_PERMANENT, Action.FAIL, "class 5xx")),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_targeted(raw: str, expected: Classification) -> None:
    assert classify_reply(raw) == expected


def test_classify_takes_a_reply_value_and_its_phase() -> None:
    reply = Reply.build(552, "5.2.2 Mailbox full", Phase.DATA_END)
    assert classify_reply(reply).category is Category.MAILBOX_FULL


def test_enhanced_as_string_equals_enhanced_code() -> None:
    by_str = classify(550, "5.2.2", "whatever")
    assert by_str == classify(550, EnhancedCode(5, 2, 2), "whatever")
    assert by_str == Classification(Category.MAILBOX_FULL, Action.DEFER, "enhanced X.2.2")


def test_enhanced_given_wins_over_one_in_the_text() -> None:
    assert classify(452, "4.5.3", "4.2.2 odd").category is Category.TOO_MANY_RECIPIENTS


def test_enhanced_is_found_in_text_when_not_given() -> None:
    assert classify(552, None, "5.2.2 odd").category is Category.MAILBOX_FULL
    assert classify(552, "", "5.2.2 odd").category is Category.MAILBOX_FULL


def test_enhanced_string_must_be_an_enhanced_code() -> None:
    with pytest.raises(ValueError, match="enhanced status code"):
        classify(550, "5.2", "")


@pytest.mark.parametrize("code", [0, 199, 600, 1000, -421])
def test_code_outside_smtp_range_fails_without_raising(code: int) -> None:
    expected = Classification(Category.OTHER_PERMANENT, Action.FAIL, "not a reply code")
    assert classify(code, text="451 4.2.2 mailbox full") == expected
    assert classify(code, rules=()) == expected


def test_basic_class_is_trusted_over_enhanced_class() -> None:
    # 451 with a 5.3.0 enhanced code: the 4xx rule for X.3.* still applies.
    assert classify(451, "5.3.0", "odd") == Classification(
        Category.SERVICE_UNAVAILABLE, Action.RETRY, "enhanced X.3.* (4xx)"
    )


def test_user_rule_prepended_wins() -> None:
    mine = Rule(name="acme quota", text=re.compile(r"acme-q\d+"),
                category=Category.OTHER_TEMPORARY, action=Action.RETRY)
    raw = "552 5.2.2 mailbox full (acme-q17)"
    assert classify_reply(raw).reason == "enhanced X.2.2"
    assert classify_reply(raw, rules=(mine, *RULES)) == Classification(
        Category.OTHER_TEMPORARY, Action.RETRY, "acme quota"
    )


def test_user_rule_text_is_case_insensitive() -> None:
    mine = Rule(name="shout", text=re.compile("loud"),
                category=Category.THROTTLED, action=Action.RETRY)
    assert classify(450, text="LOUD NOISES", rules=(mine,)).reason == "shout"


def test_user_rule_with_all_conditions_and_phases() -> None:
    mine = Rule(name="data-end 451", enhanced="4.3.*", codes=frozenset({451}),
                phases=frozenset({Phase.DATA_END}), text=re.compile("queue"),
                category=Category.OTHER_TEMPORARY, action=Action.DEFER)
    rules = (mine, *RULES)
    text = "4.3.0 Error: queue file write error"
    assert classify(451, text=text, phase=Phase.DATA_END, rules=rules).reason == "data-end 451"
    assert classify(451, text=text, phase=Phase.RCPT, rules=rules).reason != "data-end 451"
    assert classify(451, text=text, rules=rules).reason != "data-end 451"
    assert classify(452, text=text, phase=Phase.DATA_END, rules=rules).reason != "data-end 451"


def test_enhanced_pattern_needs_an_enhanced_code() -> None:
    mine = Rule(name="any X.2.*", enhanced="X.2.*",
                category=Category.MAILBOX_FULL, action=Action.DEFER)
    assert classify(450, text="no code here", rules=(mine,)).reason == "class 4xx"
    assert classify(450, text="4.2.9 here", rules=(mine,)).reason == "any X.2.*"


def test_empty_table_falls_back_to_code_class() -> None:
    assert classify(250, rules=()) == Classification(Category.ACCEPTED, Action.OK, "class 2xx/3xx")
    assert classify(451, rules=()).action is Action.DEFER
    assert classify(550, rules=()).action is Action.FAIL


@pytest.mark.parametrize("pattern", ["2.2", "Y.2.2", "X.2.2.2", "4.*", "", "X.1000.1"])
def test_bad_enhanced_pattern_is_rejected(pattern: str) -> None:
    with pytest.raises(ValueError, match="enhanced"):
        Rule(name="bad", enhanced=pattern, category=Category.OTHER_PERMANENT, action=Action.FAIL)


def test_empty_codes_are_rejected() -> None:
    with pytest.raises(ValueError, match="codes"):
        Rule(name="bad", codes=frozenset(), category=Category.OTHER_PERMANENT, action=Action.FAIL)


def test_values_are_frozen() -> None:
    c = classify(250)
    with pytest.raises(FrozenInstanceError):
        c.action = Action.FAIL  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        RULES[0].name = "x"  # type: ignore[misc]


def test_table_is_data_and_ends_with_the_class_rules() -> None:
    assert 30 <= len(RULES) <= 100
    assert [r.name for r in RULES[-2:]] == ["class 4xx", "class 5xx"]
    assert len({r.name for r in RULES}) == len(RULES), "rule names identify the match"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Greylisted, please try again in 900 seconds", 900.0),
        ("Greylisted by greyfix 0.4.0, try again in 30 seconds.", 30.0),
        ("retry after 5 minutes", 300.0),
        ("please wait 2 min", 120.0),
        ("Try again in 1 hour", 3600.0),
        ("try again later in 10 mins", 600.0),
        ("Try again in 1.5 s", 1.5),
        ("try again in 48 hours", 86400.0),
        ("try again in 999999999999 seconds", 86400.0),
        ("Greylisted, please try again in a few moments.", None),
        ("Too many messages from sender in last 60", None),
        ("try again in 60", None),
        ("", None),
    ],
)
def test_retry_after_hint(text: str, seconds: float | None) -> None:
    assert retry_after_hint(text) == seconds


@given(code=st.integers(200, 599), text=st.text(max_size=300))
def test_classify_never_raises(code: int, text: str) -> None:
    c = classify(code, text=text)
    assert isinstance(c.category, Category) and isinstance(c.action, Action)
    if code < 400:
        assert c.action is Action.OK


@given(
    code=st.integers(200, 599),
    enhanced=st.builds(EnhancedCode, st.sampled_from([2, 4, 5]), st.integers(0, 999),
                       st.integers(0, 999)),
    text=st.text(max_size=200),
    phase=st.none() | st.sampled_from(Phase),
)
def test_classify_never_raises_with_enhanced_and_phase(
    code: int, enhanced: EnhancedCode, text: str, phase: Phase | None
) -> None:
    assert isinstance(classify(code, enhanced, text, phase=phase).action, Action)


@given(st.text(max_size=300))
def test_retry_after_hint_is_none_or_bounded(text: str) -> None:
    hint = retry_after_hint(text)
    assert hint is None or 0.0 <= hint <= 86400.0
