"""Exit codes and words that tell the truth, from the installed ``smtpretry`` command.

Each case is provoked for real: aiosmtpd servers on 127.0.0.1 scripted to defer or fail, a
port that refuses connections (a socket bound and never listening), a server that accepts
and never answers, a name under ``.invalid`` (RFC 6761: it never resolves, and smtpretry
never asks DNS about it, so nothing leaves the machine).

``send``: 0 every recipient delivered or queued; 75 (EX_TEMPFAIL) deferred and not queued;
1 any failed (over 75); 2 bad input. ``queue run``: 1 when a recipient failed, else 0;
totals at the end, on SIGTERM (143) and Ctrl-C (130); when nothing is due, when the next
entry is.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.commands import Silent, Smtpretry, entries_for, held, refusing_port, seed
from tests.servers import R421_TOO_MANY, R422_OVER_QUOTA, R550_UNKNOWN, ScriptedHandler, serve_threaded

TWO = "From: s@example.org\r\nTo: a@example.com, b@example.com\r\nSubject: x\r\n\r\nhi\r\n"
ONE = "From: s@example.org\r\nTo: a@example.com\r\nSubject: x\r\n\r\nhi\r\n"
NOT_QUEUED = "not queued: will not be retried"


def _send(smtpretry: Smtpretry, port: int, *extra: str, message: str = TWO,
          env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    done = smtpretry("send", "--host", "127.0.0.1", "--port", str(port), "--tls", "none", *extra, "-",
                     input=message, env=env)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


@pytest.fixture
def fast(tmp_path: Path) -> Path:
    """A configuration with tiny retry delays (through the policy, never by patching sleep)."""
    path = tmp_path / "fast.toml"
    path.write_text("[defaults.retry]\nbackoff_base = 0.001\nbackoff_cap = 0.01\n")
    return path


# -- send ----------------------------------------------------------------------------------------


def test_send_exits_0_when_every_recipient_is_delivered(smtpretry: Smtpretry) -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        code, out, err = _send(smtpretry, port)
    assert (code, err) == (0, "")
    assert out == "delivered a@example.com\ndelivered b@example.com\n"
    assert handler.copies == Counter({"a@example.com": 1, "b@example.com": 1})


def test_send_exits_0_when_the_deferred_recipient_is_queued_and_says_queued_as_id(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R422_OVER_QUOTA]})
    queue = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        code, out, err = _send(smtpretry, port, "--queue", str(queue))
    assert (code, err) == (0, "")
    [entry] = held(queue)
    lines = out.splitlines()
    assert lines[:2] == ["delivered a@example.com",
                         lines[1]] and lines[1].startswith("deferred b@example.com until ")
    assert lines[2] == (f"queued as {entry.id} in sqlite:///{str(queue).lstrip('/')} "
                        "(1 recipient; `smtpretry queue run` sends it again)")
    assert NOT_QUEUED not in out + err


def test_send_exits_75_when_a_recipient_is_deferred_and_no_queue_is_named(smtpretry: Smtpretry) -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R422_OVER_QUOTA]})
    with serve_threaded(handler) as port:
        code, out, err = _send(smtpretry, port)
    assert code == 75
    assert out == f"delivered a@example.com\ndeferred b@example.com ({NOT_QUEUED}): {R422_OVER_QUOTA}\n"
    assert " until " not in out  # nothing will come back for it at any time
    assert err == (f"smtpretry: warning: 1 deferred recipient {NOT_QUEUED} "
                   "(no queue named: give --queue, set SMTPRETRY_QUEUE or [queue] url)\n")
    assert not smtpretry.state.exists()  # the default queue is not send's


def test_send_to_a_port_nobody_listens_on_exits_75_saying_refused(smtpretry: Smtpretry, fast: Path) -> None:
    with refusing_port() as port:
        code, out, err = _send(smtpretry, port, "--config", str(fast), "--max-attempts", "2", message=ONE)
    assert code == 75
    assert out.startswith(f"deferred a@example.com ({NOT_QUEUED}): refused during connect: ")
    assert NOT_QUEUED in err


def test_a_name_that_does_not_resolve_is_a_dns_failure_not_a_refused_connection(smtpretry: Smtpretry) -> None:
    done = smtpretry("send", "--host", "smtp.nosuch.invalid", "--port", "25", "--tls", "none", "--json", "-",
                     input=ONE)
    assert done.returncode == 75
    outcome = json.loads(done.stdout)
    [rcpt] = outcome["recipients"]
    assert (rcpt["status"], rcpt["queued"], rcpt["failure"], rcpt["phase"]) == ("deferred", False, "dns",
                                                                                 "connect")
    assert rcpt["text"] == "smtp.nosuch.invalid does not resolve (RFC 6761: names under .invalid never do)"
    assert rcpt["attempts"] == 1  # asking the resolver again at once would learn nothing
    assert "refused" not in done.stdout
    plain = smtpretry("send", "--host", "smtp.nosuch.invalid", "--port", "25", "--tls", "none", "-",
                      input=ONE)
    assert plain.returncode == 75
    assert plain.stdout == (f"deferred a@example.com ({NOT_QUEUED}): dns during connect: smtp.nosuch.invalid "
                            "does not resolve (RFC 6761: names under .invalid never do)\n")


def test_send_exits_1_when_a_recipient_failed_even_when_another_is_not_queued(smtpretry: Smtpretry) -> None:
    handler = ScriptedHandler(rcpt={"a@example.com": [R550_UNKNOWN], "b@example.com": [R422_OVER_QUOTA]})
    with serve_threaded(handler) as port:
        code, out, _ = _send(smtpretry, port)
    assert code == 1
    assert out == (f"failed a@example.com: {R550_UNKNOWN}\n"
                   f"deferred b@example.com ({NOT_QUEUED}): {R422_OVER_QUOTA}\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--host", ""], "smtpretry: error: --host: expected a host name, got ''"),
        (["--host", "a..example.com"], "smtpretry: error: --host 'a..example.com': not a host name"),
        (["--host", "127.0.0.1", "--queue", ""], "smtpretry: error: --queue: expected a queue URL"),
        (["--host", "127.0.0.1", "--timeout", "0"], "smtpretry: error: timeout: expected seconds > 0"),
        (["--host", "127.0.0.1", "--queue", "mysql://x/q"], "smtpretry: error: queue URL 'mysql://x/q'"),
    ],
    ids=["empty-host", "not-a-host-name", "empty-queue", "zero-timeout", "bad-queue-url"],
)
def test_send_exits_2_on_bad_input_and_sends_nothing(
    smtpretry: Smtpretry, args: list[str], expected: str
) -> None:
    done = smtpretry("send", *args, "--tls", "none", "-", input=ONE)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(expected), line


def test_send_json_is_one_object_with_every_recipients_outcome(smtpretry: Smtpretry, tmp_path: Path) -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R422_OVER_QUOTA], "c@example.com": [R550_UNKNOWN]})
    message = ("From: s@example.org\r\nTo: a@example.com, b@example.com, c@example.com\r\n"
               "Message-ID: <json@test>\r\nSubject: x\r\n\r\nhi\r\n")
    queue = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        code, out, err = _send(smtpretry, port, "--json", "--queue", str(queue), message=message)
    assert (code, err) == (1, "")
    report = json.loads(out)  # one object, nothing else on stdout
    [entry] = held(queue)
    assert {k: report[k] for k in ("message_id", "destination", "queue_id", "exit_status", "error")} == {
        "message_id": "<json@test>", "destination": f"127.0.0.1:{port}", "queue_id": entry.id,
        "exit_status": 1, "error": None,
    }
    assert report["queue"] == f"sqlite:///{str(queue).lstrip('/')}"
    by = {r["recipient"]: r for r in report["recipients"]}
    assert list(by) == ["a@example.com", "b@example.com", "c@example.com"]
    assert (by["a@example.com"]["status"], by["a@example.com"]["code"], by["a@example.com"]["phase"]) == (
        "delivered", 250, "data_end")
    b = by["b@example.com"]
    assert (b["status"], b["queued"], b["code"], b["enhanced"], b["category"], b["action"]) == (
        "deferred", True, 422, "4.2.2", "mailbox_full", "defer")
    assert b["next_attempt_at"] == pytest.approx(entry.next_attempt_at, abs=0.01)
    c = by["c@example.com"]
    assert (c["status"], c["code"], c["category"], c["reason"], c["attempts"]) == (
        "failed", 550, "unknown_recipient", "enhanced X.1.1", 1)


def test_a_queue_that_cannot_be_written_is_said_and_the_send_exits_75(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    handler = ScriptedHandler(rcpt={"b@example.com": [R422_OVER_QUOTA]})
    with serve_threaded(handler) as port:
        code, out, err = _send(smtpretry, port, "--queue", str(blocked / "q.db"))
    assert code == 75
    assert out == f"delivered a@example.com\ndeferred b@example.com ({NOT_QUEUED}): {R422_OVER_QUOTA}\n"
    first, second = err.splitlines()
    assert first.startswith(f"smtpretry: error: queue {blocked / 'q.db'}: cannot create the database")
    assert second == f"smtpretry: warning: 1 deferred recipient {NOT_QUEUED} (see the error above)"


def test_on_a_terminal_send_shows_each_retry_its_attempt_reason_and_wait(
    smtpretry: Smtpretry, fast: Path
) -> None:
    handler = ScriptedHandler(greeting=[R421_TOO_MANY, R421_TOO_MANY])
    master, terminal = os.openpty()
    with serve_threaded(handler) as port:
        proc = smtpretry.start("send", "--host", "127.0.0.1", "--port", str(port), "--tls", "none",
                               "--config", fast, "-", stdin=-1, stderr=terminal, env={"COLUMNS": "250"})
        os.close(terminal)
        out, _ = proc.communicate(ONE, timeout=60)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the process has closed its end
            while chunk := os.read(master, 65536):
                shown += chunk
    os.close(master)
    assert proc.returncode == 0
    assert out == "delivered a@example.com\n"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode())
    retries = [ln for ln in text.splitlines() if " RETRY " in ln]
    assert len(retries) == 2, text
    for n, ln in enumerate(retries, 1):
        # the attempt, the wait and the reason, as `logs tail` shows them
        assert re.search(rf"127\.0\.0\.1:{port} a@example\.com #{n}  retry in [\d.]+ s after greeting "
                         rf"{re.escape(R421_TOO_MANY)} \[throttled/retry\]$", ln), ln


# -- queue run -----------------------------------------------------------------------------------


def test_queue_run_exits_1_when_a_recipient_failed_and_prints_the_totals(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    handler = ScriptedHandler(rcpt={"r0@example.com": [R550_UNKNOWN]})
    db = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        seed(db, entries_for(3, port=port, at=time.time() - 1))
        done = smtpretry("queue", "run", "--queue", db)
    assert done.returncode == 1, done.stderr
    assert done.stdout == "entries: 3, delivered: 2, deferred: 0, failed: 1, expired: 0\n"
    assert held(db) == []


def test_queue_run_exits_0_when_recipients_are_deferred_again(smtpretry: Smtpretry, tmp_path: Path) -> None:
    handler = ScriptedHandler(rcpt={"r0@example.com": [R422_OVER_QUOTA]})
    db = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        seed(db, entries_for(2, port=port, at=time.time() - 1))
        done = smtpretry("queue", "run", "--queue", db)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "entries: 2, delivered: 1, deferred: 1, failed: 0, expired: 0\n"
    [entry] = held(db)
    assert entry.recipients[0].address == "r0@example.com" and entry.next_attempt_at > time.time()


def test_queue_run_timeout_and_max_attempts_bound_a_server_that_never_answers(
    smtpretry: Smtpretry, tmp_path: Path, fast: Path, silent: Silent
) -> None:
    db = tmp_path / "q.db"
    seed(db, entries_for(1, port=silent.port, at=time.time() - 1))
    done = smtpretry("queue", "run", "--queue", db, "--config", fast, "--timeout", "0.2",
                     "--max-attempts", "2", "-v", "--log-format", "json", timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "entries: 1, delivered: 0, deferred: 1, failed: 0, expired: 0\n"
    records = [json.loads(line) for line in done.stderr.splitlines()]  # -v --log-format json
    decisions = [(r["event"], r["attempt"], r["failure"]) for r in records
                 if r["event"] in ("smtpretry.retry_scheduled", "smtpretry.recipient_deferred")]
    assert decisions == [("smtpretry.retry_scheduled", 1, "timeout"),
                         ("smtpretry.recipient_deferred", 2, "timeout")]
    deadline = time.monotonic() + 10  # the accepting thread may lag behind the kernel's backlog
    while len(silent.accepted) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(silent.accepted) == 2  # two connections tried: --max-attempts


def test_queue_run_with_nothing_due_says_when_the_next_entry_is_due(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    db = tmp_path / "q.db"
    [entry] = entries_for(1, at=time.time() + 7200)
    seed(db, [entry])
    done = smtpretry("queue", "run", "--queue", db)
    assert (done.returncode, done.stderr) == (0, "")
    due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.next_attempt_at))
    expected = rf"nothing due now: 1 entry waiting; the next is due at {due} \(in 2h\)\n"
    assert re.fullmatch(expected, done.stdout), done.stdout
    [entry_id] = [e.id for e in held(db)]
    assert smtpretry("queue", "delete", entry_id, "--queue", db).returncode == 0
    emptied = smtpretry("queue", "run", "--queue", db)
    assert (emptied.returncode, emptied.stdout) == (0, "nothing due: the queue is empty\n")


@pytest.mark.parametrize(("signum", "status", "said"), [
    (signal.SIGTERM, 143, "SIGTERM: stopped; entries being sent are due again"),
    (signal.SIGINT, 130, "interrupted: stopped; entries being sent are due again"),
], ids=["SIGTERM", "Ctrl-C"])
def test_queue_run_stopped_by_a_signal_prints_its_totals_and_gives_its_entries_back(
    smtpretry: Smtpretry, tmp_path: Path, silent: Silent, signum: int, status: int, said: str
) -> None:
    handler = ScriptedHandler()
    db = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        now = time.time()
        seed(db, [*entries_for(1, port=port, at=now - 10, tag="quick"),
                  *entries_for(1, port=silent.port, at=now - 5, tag="stuck")])
        proc = smtpretry.start("queue", "run", "--forever", "--queue", db, "--concurrency", "1")
        try:
            deadline = time.monotonic() + 30
            # The first entry is delivered and written back before the second is claimed.
            while not silent.accepted and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            assert silent.accepted, "the runner never reached the second entry"
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == status, err
    assert out == "entries: 1, delivered: 1, deferred: 0, failed: 0, expired: 0\n"
    assert err.splitlines()[-1] == said and "Traceback" not in err
    assert handler.copies == Counter({"r0quick@example.com": 1})
    [stuck] = held(db)
    assert stuck.recipients[0].address == "r0stuck@example.com"
    assert stuck.lease_until <= time.time()  # given back: due again at once, not after its lease
