"""The queue commands an operator of Postfix or KumoMTA would reach for, as a user runs them:
the installed ``smtpretry queue ...`` in a process of its own, on real SQLite queue files,
sending to scripted servers on 127.0.0.1 where a command sends.

Selection (IDs, unique prefixes, ``-`` for IDs on standard input, ``--all``, filters),
JSON lines, ``shape``, ``hold``/``release``, ``suspend``/``resume``, ``purge``, the summary
lines and the exit codes: 1 when a selection matches nothing, 2 for an unknown ID or bad
input.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from smtpretry.queue import Destination, PendingRecipient, QueueEntry
from smtpretry.queue.crypto import KEY_ENV
from smtpretry.queue.sqlite import SQLiteQueue
from tests.cli.conftest import run
from tests.servers import ScriptedHandler, serve_threaded

BODY = b"From: s@example.org\r\nSubject: x\r\n\r\nSECRET-BODY-TEXT\r\n"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (KEY_ENV, "SMTPRETRY_QUEUE", "SMTPRETRY_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def entry(key: str, *to: str, port: int = 2525, host: str = "127.0.0.1", age_s: float = 60,
          sender: str = "s@example.org", due_in: float = 3600) -> QueueEntry:
    now = time.time()
    return QueueEntry(
        key=key, destination=Destination(host, port, "none"), sender=sender, message_id=f"<{key}@test>",
        recipients=tuple(PendingRecipient(a, now + due_in, deferrals=1, first_attempt_at=now - age_s,
                                          code=422, enhanced="4.2.2", text="Mailbox over quota",
                                          phase="rcpt", category="mailbox_full", action="defer")
                         for a in to),
        created_at=now - age_s, next_attempt_at=now + due_in, expires_at=now + 5 * 86400, data=BODY,
    )


def put(db: Path, *entries: QueueEntry) -> list[str]:
    async def go() -> list[str]:
        q = SQLiteQueue(db)
        try:
            return await q.put_many(list(entries))
        finally:
            await q.close()

    return asyncio.run(go())


def stored(db: Path) -> list[QueueEntry]:
    async def go() -> list[QueueEntry]:
        q = SQLiteQueue(db)
        try:
            return await q.entries()
        finally:
            await q.close()

    return asyncio.run(go())


@pytest.fixture
def queue(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A queue of four entries: two destinations, three domains, ages from a minute to a week."""
    db = tmp_path / "q.db"
    ids = put(
        db,
        entry("a", "ann@example.com", "bob@example.org", age_s=60),
        entry("b", "cy@example.org", age_s=2 * 3600, sender="bounces@example.org"),
        entry("c", "dee@example.com", port=2526, age_s=3 * 86400),
        entry("d", "eve@other.test", host="127.0.0.2", age_s=8 * 86400),
    )
    return db, dict(zip("abcd", ids, strict=True))


def q(db: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    done = run("queue", *args, "--queue", str(db), input=input)
    return done.returncode, done.stdout, done.stderr


def listed(out: str) -> list[str]:
    return sorted(json.loads(line)["id"] for line in out.splitlines())


# -- selection ---------------------------------------------------------------------------------


def test_list_selects_by_ids_prefixes_and_filters_and_writes_json_lines(
    queue: tuple[Path, dict[str, str]],
) -> None:
    db, ids = queue
    code, out, err = q(db, "list", "--json")
    assert code == 0 and listed(out) == sorted(ids.values())
    assert err == "4 entries, 5 recipients\n"  # the summary goes to stderr beside JSON lines
    first = json.loads(out.splitlines()[0])
    assert set(first) >= {"id", "destination", "sender", "recipients", "created_at", "held"}
    assert "SECRET-BODY-TEXT" not in out
    for args, wanted in (
        (["--destination", "127.0.0.1:2525"], "ab"),
        (["--destination", "127.0.0.1"], "abc"),  # a host: every port
        (["--domain", "example.org"], "ab"),
        (["--domain", "example.com"], "ac"),
        (["--older-than", "1h"], "bcd"),
        (["--older-than", "2d", "--destination", "127.0.0.1"], "c"),
        (["--recipient", "Cy@Example.org"], "b"),
        (["--sender", "bounces@example.org"], "b"),
        ([ids["a"][:6], ids["d"]], "ad"),  # a unique prefix is enough
    ):
        code, out, _ = q(db, "list", "--json", *args)
        assert code == 0 and listed(out) == sorted(ids[k] for k in wanted), args
    # A table, one row per entry, and a summary line under it.
    code, out, _ = q(db, "list", "--domain", "example.com")
    lines = out.splitlines()
    assert lines[0].split() == ["id", "age", "destination", "pending", "last", "reply", "state", "next",
                                "attempt"]
    assert len(lines) == 4 and lines[-1] == "2 entries, 3 recipients"
    assert re.search(rf"{ids['a']} +1m +127\.0\.0\.1:2525 \(none\) +ann@example\.com \+1 +422 Mailbox over "
                     rf"quota \(mailbox_full/defer\) +waiting +{ISO}", out), out


def test_limit_says_how_many_more_matched(queue: tuple[Path, dict[str, str]]) -> None:
    db, _ = queue
    code, out, err = q(db, "list", "--json", "--limit", "1")
    assert code == 0 and len(out.splitlines()) == 1
    assert err == "1 entry, 2 recipients; 3 more matched, not shown (--limit 1)\n"


def test_ids_on_standard_input_plain_or_as_the_json_lines_of_list(queue: tuple[Path, dict[str, str]]) -> None:
    db, ids = queue
    code, out, _ = q(db, "list", "--json", "-", input=f"{ids['b']}\n\n{ids['c'][:5]} {ids['d']}\n")
    assert code == 0 and listed(out) == sorted([ids["b"], ids["c"], ids["d"]])
    # smtpretry queue list --json --domain example.org | smtpretry queue delete -
    _, piped, _ = q(db, "list", "--json", "--domain", "example.org")
    code, out, _ = q(db, "delete", "-", input=piped)
    assert (code, out) == (0, "deleted 2 entries (3 recipients will not get the message)\n")
    assert sorted(e.id for e in stored(db)) == sorted([ids["c"], ids["d"]])
    assert q(db, "delete", "-", input="")[0] == 1  # nothing on standard input: nothing matched
    code, _, err = q(db, "delete", "-", input="{not json\n")
    assert code == 2 and err == "smtpretry: error: standard input, line 1: not JSON, and not entry IDs\n"


def test_nothing_matched_is_exit_1_and_bad_input_exit_2(queue: tuple[Path, dict[str, str]]) -> None:
    db, ids = queue
    code, out, err = q(db, "list", "--domain", "nowhere.test")
    assert (code, out) == (1, "")
    assert err == "smtpretry: no entry matches --domain nowhere.test (the queue holds 4 entries)\n"
    assert q(db, "retry", "--sender", "nobody@example.org")[0] == 1
    assert q(db, "delete", "--older-than", "30d")[0] == 1
    code, _, err = q(db, "show", "ffffffffffff")
    assert code == 2 and err.startswith("smtpretry: error: queue ") and "no entry 'ffffffffffff'" in err
    for args, message in (
        (["delete", "--older-than", "soon"], "--older-than: expected a duration such as 30m, 2h or 5d"),
        (["list", "--destination", "a b"], "--destination: 'a b': expected host:port as the log writes it"),
        (["retry"], "queue retry: give entry IDs, - (IDs on standard input), --all or a filter"),
        (["delete", ids["a"], "--all"], "give entry IDs or --all, not both"),
        (["show", "-", ids["a"]], "give - (entry IDs on standard input) as the only ID"),
    ):
        code, out, err = q(db, *args)
        assert (code, out) == (2, ""), args
        [line] = err.splitlines()
        assert line.startswith("smtpretry: error: ") and message in line, line
    assert len(stored(db)) == 4  # nothing was changed by any of them


def test_an_ambiguous_prefix_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    made = put(db, *(entry(f"k{i}", f"r{i}@example.com") for i in range(20)))
    first, _ = Counter(i[0] for i in made).most_common(1)[0]  # 20 ids, 16 first digits
    code, _, err = q(db, "delete", first)
    assert code == 2 and f"entry ID prefix '{first}' is ambiguous: it names" in err
    assert len(stored(db)) == 20


def test_show_takes_several_ids_and_never_prints_the_body(queue: tuple[Path, dict[str, str]]) -> None:
    db, ids = queue
    code, out, _ = q(db, "show", ids["a"][:7], ids["b"])
    assert code == 0 and "SECRET-BODY-TEXT" not in out
    assert out.count("id:           ") == 2 and f"size:         {len(BODY)} bytes" in out
    assert out.splitlines()[-1] == "2 entries, 3 recipients"
    code, out, _ = q(db, "show", "--json", ids["c"])
    [shown] = [json.loads(line) for line in out.splitlines()]
    assert (shown["id"], shown["size"], shown["held"]) == (ids["c"], len(BODY), False)


# -- retry, delete, hold, release, purge -----------------------------------------------------


def test_a_held_entry_is_never_sent_not_even_by_retry_until_released(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        held, free = put(db, entry("h", "held@example.com", port=port),
                         entry("f", "free@example.com", port=port))
        assert q(db, "hold", held[:6])[1] == "held 1 entry (1 recipient): not sent until released\n"
        assert q(db, "hold", "--all")[1] == ("held 1 entry (1 recipient): not sent until released; "
                                             "1 already held\n")
        assert q(db, "release", free)[1] == "released 1 entry (1 recipient): sent when due\n"
        code, out, _ = q(db, "retry", "--all")
        assert (code, out) == (0, "1 entry due now (1 recipient); 1 held entry left as it is "
                                  "(smtpretry queue release first)\n")
        code, out, _ = q(db, "list", "--held")
        assert code == 0 and re.search(rf"{held} .* held ", out) and free not in out
        assert q(db, "run", "--once")[0] == 0
        assert handler.copies == Counter({"free@example.com": 1})  # the held one stayed
        assert q(db, "release", "--held")[1] == "released 1 entry (1 recipient): sent when due\n"
        q(db, "retry", "--all")
        assert q(db, "run", "--once")[0] == 0
    assert handler.copies == Counter({"free@example.com": 1, "held@example.com": 1})
    assert stored(db) == []


def test_purge_deletes_what_waited_too_long(queue: tuple[Path, dict[str, str]]) -> None:
    db, ids = queue
    code, out, _ = q(db, "purge", "--older-than", "2d")
    assert (code, out) == (0, "purged 2 entries older than 2d (2 recipients will not get the message)\n")
    assert sorted(e.id for e in stored(db)) == sorted([ids["a"], ids["b"]])
    code, _, err = q(db, "purge", "--older-than", "2d")
    assert code == 1 and err.startswith("smtpretry: no entry matches --older-than 2d")
    assert run("queue", "purge", "--queue", str(db)).returncode == 2  # --older-than is required


# -- shape -------------------------------------------------------------------------------------


def test_shape_counts_entries_and_recipients_by_destination_and_age(
    queue: tuple[Path, dict[str, str]],
) -> None:
    db, _ = queue
    code, out, _ = q(db, "shape")
    assert code == 0
    header, total, *rows, summary = out.splitlines()
    assert header.split() == ["destination", "entries", "recipients", "5m", "10m", "20m", "40m", "80m",
                              "160m", "320m", "640m", "1280m", "1280m+"]
    assert total.split() == ["TOTAL", "4", "5", "1", "0", "0", "0", "0", "1", "0", "0", "0", "2"]
    assert [r.split()[:3] for r in rows] == [["127.0.0.1:2525", "2", "3"], ["127.0.0.1:2526", "1", "1"],
                                             ["127.0.0.2:2525", "1", "1"]]
    assert summary.startswith("4 entries, 5 recipients at 3 destinations")
    code, out, _ = q(db, "shape", "--by", "domain", "--recipients")
    by_domain = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[2:-1]}
    assert by_domain["example.org"][:3] == ["2", "2", "1"]  # 2 entries, 2 recipients, 1 under 5 min
    code, out, _ = q(db, "shape", "--json", "--older-than", "1d")
    total, *rows = (json.loads(line) for line in out.splitlines())
    assert (total["name"], total["entries"]) == ("TOTAL", 2)
    assert total["by_age"][-1] == {"age": "1280m+", "entries": 2, "recipients": 2}


# -- suspend and resume ------------------------------------------------------------------------


def test_a_suspended_destination_is_deferred_unsent_until_resumed(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    handler = ScriptedHandler()
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@example.org\r\nTo: b@example.com\r\nSubject: x\r\n"
                    b"Message-ID: <s@test>\r\n\r\nhi\r\n")
    with serve_threaded(handler) as port:
        put(db, entry("w", "waiting@example.com", port=port, due_in=-1))
        code, out, _ = q(db, "suspend", f"127.0.0.1:{port}", "--for", "1h", "--reason", "421 4.7.0 [TSS04]")
        assert code == 0
        assert re.fullmatch(rf"suspended 127\.0\.0\.1:{port} until {ISO} \(421 4\.7\.0 \[TSS04\]\): its "
                            r"recipients are deferred unsent until then; 1 queued entry for it\n", out), out
        code, out, _ = q(db, "suspensions")
        assert code == 0 and f"127.0.0.1:{port}" in out and "421 4.7.0 [TSS04]" in out
        # A send and a queue run: both defer at once, nothing reaches the server.
        sent = run("send", "--host", "127.0.0.1", "--port", str(port), "--tls", "none", "--queue", str(db),
                   "-v", str(eml))
        assert sent.returncode == 0 and sent.stdout.startswith("deferred b@example.com until ")
        assert f"127.0.0.1:{port} is suspended until" in sent.stdout
        assert "SUSPENDED" in sent.stderr and "suspended until" in sent.stderr  # -v: the decision
        assert q(db, "run", "--once")[0] == 0
        assert handler.sessions_total == 0 and handler.copies == Counter()
        # Resumed: what it deferred is due at once, and the next run delivers it.
        code, out, _ = q(db, "resume", f"127.0.0.1:{port}")
        assert code == 0 and re.fullmatch(rf"resumed 127\.0\.0\.1:{port} \(suspended until {ISO}\); "
                                          r"2 entries it deferred due now\n", out), out
        assert q(db, "run", "--once")[0] == 0
        code, _, err = q(db, "resume", f"127.0.0.1:{port}")
        assert code == 1 and err == f"smtpretry: no suspension of 127.0.0.1:{port} in force\n"
    assert handler.copies == Counter({"waiting@example.com": 1, "b@example.com": 1})
    for args in (["suspend", "a b", "--for", "1h"], ["suspend", "mx.example.net", "--for", "0"],
                 ["suspend", "mx.example.net"]):
        assert q(db, *args)[0] == 2, args
