"""The ``smtpretry`` command in-process through click's CliRunner, and once as a real process.

``send`` talks to a ScriptedHandler in a Controller thread (CliRunner is sync and the
command runs its own event loop); the assertions are made at the server as well as on
what the command prints. ``demo`` runs the embedded DemoServer.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import smtpretry
import smtpretry.cli.demo
from smtpretry.cli import cli
from smtpretry.cli.demo_server import DemoServer
from tests.servers import R422_OVER_QUOTA, R550_UNKNOWN, ScriptedHandler, serve_threaded

REPO = Path(__file__).resolve().parents[2]

MESSAGE = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: a@example.com, b@example.com\r\n"
    b"Subject: hello\r\n"
    b"Message-ID: <cli-test@example.org>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


def _invoke(args: list[str], *, input: bytes | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=input, env=env, catch_exceptions=False)


def _send_args(port: int, *extra: str) -> list[str]:
    return ["send", "--host", "127.0.0.1", "--port", str(port), "--tls", "none", *extra]


@pytest.fixture
def eml(tmp_path: Path) -> Path:
    path = tmp_path / "message.eml"
    path.write_bytes(MESSAGE)
    return path


# -- send --------------------------------------------------------------------------------------


def test_send_delivers_each_recipient_once_and_exits_0(eml: Path) -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        result = _invoke(_send_args(port, str(eml)))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["delivered a@example.com", "delivered b@example.com"]
    assert result.stderr == ""
    assert handler.copies == {"a@example.com": 1, "b@example.com": 1}


def test_send_reports_a_deferred_recipient_and_where_it_was_queued(eml: Path, tmp_path: Path) -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R422_OVER_QUOTA]})
    queue = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        result = _invoke(_send_args(port, "--queue", str(queue), str(eml)))
    assert result.exit_code == 0, result.output
    delivered, deferred, queued = result.stdout.splitlines()
    assert delivered == "delivered a@example.com"
    assert re.fullmatch(
        r"deferred b@example\.com until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: " + re.escape(R422_OVER_QUOTA),
        deferred,
    ), deferred
    url = f"sqlite:///{str(queue).lstrip('/')}"
    assert re.fullmatch(rf"queued as [0-9a-f]{{16}} in {re.escape(url)} \(1 recipient; .*\)",
                        queued), queued
    assert handler.copies == {"a@example.com": 1}


def test_send_without_a_queue_says_a_deferred_recipient_will_not_be_retried(eml: Path) -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R422_OVER_QUOTA]})
    with serve_threaded(handler) as port:
        result = _invoke(_send_args(port, str(eml)), env={"SMTPRETRY_QUEUE": None, "SMTPRETRY_CONFIG": None})
    assert result.exit_code == 75, result.output
    assert result.stdout.splitlines() == [
        "delivered a@example.com",
        f"deferred b@example.com (not queued: will not be retried): {R422_OVER_QUOTA}",
    ]
    assert "not queued: will not be retried" in result.stderr


def test_send_exits_1_when_a_recipient_failed(eml: Path) -> None:
    handler = ScriptedHandler(rcpt={"a@example.com": [R550_UNKNOWN]})
    with serve_threaded(handler) as port:
        result = _invoke(_send_args(port, str(eml)))
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        f"failed a@example.com: {R550_UNKNOWN}",
        "delivered b@example.com",
    ]
    assert handler.copies == {"b@example.com": 1}


def test_send_reads_stdin_and_the_envelope_options_override_the_headers() -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        result = _invoke(
            _send_args(
                port, "--from", "bounces@example.org", "--to", "c@example.com", "--to", "d@example.com", "-"
            ),
            input=MESSAGE,
        )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["delivered c@example.com", "delivered d@example.com"]
    assert handler.copies == {"c@example.com": 1, "d@example.com": 1}
    [(sender, rcpts, _)] = handler.received
    assert (sender, rcpts) == ("bounces@example.org", ["c@example.com", "d@example.com"])


def test_send_logs_in_with_the_password_from_the_environment(eml: Path) -> None:
    handler = ScriptedHandler(auth={"app": "s3cret"})
    with serve_threaded(handler) as port:
        result = _invoke(
            _send_args(port, "--user", "app", "--password-env", "MY_SMTP_PW", str(eml)),
            env={"MY_SMTP_PW": "s3cret"},
        )
    assert result.exit_code == 0, result.output
    assert handler.logins == ["app"]
    assert "s3cret" not in result.output


def test_send_is_quiet_by_default_readable_with_verbose_and_json_lines_with_log_format_json(
    eml: Path, tmp_path: Path
) -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R422_OVER_QUOTA] * 4})  # one per send
    log = tmp_path / "both.jsonl"
    with serve_threaded(handler) as port:
        quiet = _invoke(_send_args(port, str(eml)))
        verbose = _invoke(_send_args(port, "-v", str(eml)))
        machine = _invoke(_send_args(port, "-v", "--log-format", "json", str(eml)))
        both = _invoke(_send_args(port, "-v", "--log-file", str(log), str(eml)))
    # No log unless asked: only the one line that says the deferral is not queued.
    warning = ("smtpretry: warning: 1 deferred recipient not queued: will not be retried "
               "(no queue named: give --queue, set SMTPRETRY_QUEUE or [queue] url)")
    assert quiet.stderr.splitlines() == [warning]
    # -v: as `logs tail` shows each decision, the time in ISO 8601 with its zone.
    readable = [ln for ln in verbose.stderr.splitlines() if ln != warning]
    assert [ln.split()[1] for ln in readable] == ["DEFERRED", "DELIVERED", "DONE"]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z DEFERRED +127\.0\.0\.1:\d+ "
                    r"<cli-test@example\.org> b@example\.com #1  deferred until \d{4}-.*Z after rcpt 422",
                    readable[0]), readable[0]
    # --log-format json: the same events as JSON lines, for machines.
    records = [json.loads(line) for line in machine.stderr.splitlines() if line.startswith("{")]
    assert [r["event"] for r in records] == [
        "smtpretry.recipient_deferred",
        "smtpretry.message_delivered",
        "smtpretry.send_completed",
    ]
    assert records[0]["recipient"] == "b@example.com"
    assert verbose.stdout.splitlines()[0] == "delivered a@example.com"
    assert verbose.stdout.splitlines()[1].startswith("deferred b@example.com (not queued")
    # -v and --log-file together: readable on stderr, JSON in the file.
    labels = [ln.split()[1] for ln in both.stderr.splitlines() if ln != warning]
    assert labels == ["DEFERRED", "DELIVERED", "DONE"]
    assert [json.loads(ln)["event"] for ln in log.read_text().splitlines()] == [r["event"] for r in records]


def test_send_writes_the_decision_log_to_a_file(eml: Path, tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        result = _invoke(_send_args(port, "--log-file", str(log), str(eml)))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # it holds addresses
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["smtpretry.message_delivered", "smtpretry.send_completed"]
    assert records[0]["recipients"] == ["a@example.com", "b@example.com"]


def _no_headers(tmp_path: Path) -> str:
    path = tmp_path / "garbage.eml"
    path.write_bytes(b"\x00\x01 this is not a message at all\n")
    return str(path)


def _empty(tmp_path: Path) -> str:
    path = tmp_path / "empty.eml"
    path.write_bytes(b"")
    return str(path)


def _no_recipients(tmp_path: Path) -> str:
    path = tmp_path / "norcpt.eml"
    path.write_bytes(b"From: s@example.org\r\nSubject: x\r\n\r\nhi\r\n")
    return str(path)


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        pytest.param(lambda tmp, eml: [str(tmp / "missing.eml")], "cannot read", id="missing-file"),
        pytest.param(lambda tmp, eml: [_empty(tmp)], "the message is empty", id="empty-file"),
        pytest.param(lambda tmp, eml: [_no_headers(tmp)], "not an email message", id="no-headers"),
        pytest.param(lambda tmp, eml: [_no_recipients(tmp)], "recipients: none given", id="no-recipients"),
        pytest.param(
            lambda tmp, eml: ["--to", "a@example.com\r\nRCPT TO:<x@y>", eml],
            "control characters",
            id="crlf-in-address",
        ),
        pytest.param(
            lambda tmp, eml: ["--user", "app", eml], "SMTPRETRY_PASSWORD is not set", id="password-unset"
        ),
        pytest.param(lambda tmp, eml: ["--max-connections", "0", eml], "max_connections", id="bad-limit"),
        pytest.param(lambda tmp, eml: ["--timeout", "0", eml], "timeout", id="bad-timeout"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    make_args: Any, expected: str, tmp_path: Path, eml: Path
) -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        result = CliRunner().invoke(
            cli, _send_args(port, *make_args(tmp_path, str(eml))), env={"SMTPRETRY_PASSWORD": None}
        )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("smtpretry: error: ") and expected in line, line
    assert "Traceback" not in result.output
    assert handler.commands == []  # nothing was sent


def test_a_bad_port_is_a_usage_error_not_a_traceback(eml: Path) -> None:
    result = CliRunner().invoke(cli, ["send", "--host", "127.0.0.1", "--port", "70000", str(eml)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["smtpretry: error: port: expected an integer 1..65535, got 70000"]


def test_no_server_given_is_one_line_and_exit_2(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@example.org\r\nTo: b@example.com\r\n\r\nhi\r\n")
    result = CliRunner().invoke(cli, ["send", str(eml)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "smtpretry: error: give --host (and --port), or --profile NAME with --config FILE, "
        "or --config FILE with [routes]"
    ]


def test_send_with_a_profile_from_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = ScriptedHandler(auth={"app": "pw"})
    monkeypatch.setenv("RELAY_PASSWORD", "pw")
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@example.org\r\nTo: b@example.com\r\nSubject: x\r\n\r\nhi\r\n")
    with serve_threaded(handler) as port:
        config = tmp_path / "smtpretry.toml"
        config.write_text(
            f'[profiles.relay]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
            'username = "app"\npassword_env = "RELAY_PASSWORD"\n'
        )
        result = CliRunner().invoke(cli, ["send", "--config", str(config), "--profile", "relay", str(eml)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "delivered b@example.com"
    assert handler.logins == ["app"] and handler.copies["b@example.com"] == 1


def test_a_recipient_deferred_under_a_profile_is_resent_by_the_queue_as_that_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two profiles for one relay, with different accounts: the entry must say which.
    handler = ScriptedHandler(auth={"first": "pw1", "second": "pw2"},
                              rcpt={"b@example.com": [R422_OVER_QUOTA]})
    monkeypatch.setenv("FIRST_PASSWORD", "pw1")
    monkeypatch.setenv("SECOND_PASSWORD", "pw2")
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@example.org\r\nTo: b@example.com\r\nSubject: x\r\n\r\nhi\r\n")
    queue = f"sqlite:///{tmp_path / 'q.db'}"
    with serve_threaded(handler) as port:
        config = tmp_path / "smtpretry.toml"
        config.write_text("".join(
            f'[profiles.{name}]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
            f'username = "{name}"\npassword_env = "{name.upper()}_PASSWORD"\n'
            for name in ("first", "second")
        ))
        sent = CliRunner().invoke(cli, ["send", "--config", str(config), "--profile", "second",
                                        "--queue", queue, str(eml)])
        assert sent.exit_code == 0, sent.output
        assert sent.stdout.startswith("deferred b@example.com until ")
        listed = [json.loads(line) for line in
                  CliRunner().invoke(cli, ["queue", "list", "--queue", queue, "--json"]).stdout.splitlines()]
        assert listed[0]["destination"]["profile"] == "second"
        CliRunner().invoke(cli, ["queue", "retry", "--all", "--queue", queue])
        ran = CliRunner().invoke(cli, ["queue", "run", "--once", "--config", str(config), "--queue", queue])
        assert ran.exit_code == 0, ran.output
    assert handler.logins == ["second", "second"]  # the resend logged in as the same profile
    assert handler.copies["b@example.com"] == 1


def test_version() -> None:
    result = _invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"smtpretry, version {smtpretry.__version__}"


# -- demo --------------------------------------------------------------------------------------


def _summary(stdout: str) -> dict[str, str]:
    """The summary's ``label: value`` lines (the decision lines start with a time)."""
    return dict(line.split(": ", 1) for line in stdout.splitlines() if not _DECISION.match(line))


def _figure(value: str) -> int:
    """The count a summary value starts with: ``28 (over quota...)`` is 28."""
    return int(value.split()[0])


_DECISION = re.compile(r"\s*\d+\.\d+s ")
# seconds, label, destination, message (a raised cap names none), recipients, #attempt, then
# what was decided
_DECISION_LINE = re.compile(
    r"\s*\d+\.\d+s (?P<label>[A-Z ]+?) +127\.0\.0\.1:\d+(?: <demo-\d+@smtpretry\.invalid>)?"
    r"(?: (?P<recipients>\S+(?:, \S+)*) #\d+)?  (?P<what>.*)$"
)


def test_demo_figures_agree_with_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    servers: list[DemoServer] = []

    class Recorded(DemoServer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            servers.append(self)

    monkeypatch.setattr(smtpretry.cli.demo, "DemoServer", Recorded)
    result = _invoke(["demo", "--messages", "30", "--seed", "1", "--verbose", "--server-delay", "0"])
    assert result.exit_code == 0, result.output
    [server] = servers
    s = _summary(result.stdout)
    assert s["messages"] == "30"
    assert s["recipients"] == "90"
    delivered, deferred, failed = (_figure(s[k]) for k in ("delivered", "deferred", "failed"))
    assert delivered + deferred + failed == 90
    # At the server: one copy per delivered recipient, never more sessions than its limit.
    assert sum(server.copies.values()) == delivered
    assert set(server.copies.values()) == {1}
    assert server.max_active <= 3
    assert s["max concurrent sessions"].startswith(f"{server.max_active} (server limit 3")
    assert s["421s seen"].endswith(f"(the server refused {server.refused} connections)")
    assert s["copies per delivered recipient"] == "exactly 1 (counted at the server)"
    assert s["consistent"].startswith("yes: every recipient ended")
    # With --verbose every decision was shown, as `logs tail` shows it: the scripted mailboxes fail (big*) or
    # defer (full*) as scripted.
    decisions = [_DECISION_LINE.match(ln) for ln in result.stdout.splitlines() if _DECISION.match(ln)]
    assert all(decisions)
    shown = [(m["label"], (m["recipients"] or "").split(", "), m["what"]) for m in decisions if m]
    failures = [(rcpts, what) for label, rcpts, what in shown if label == "FAILED"]
    assert len(failures) == failed
    assert all(r.startswith("big") and what.startswith("failed after rcpt 422 4.3.4 ")
               for [r], what in failures), failures
    deferrals = [(rcpts, what) for label, rcpts, what in shown if label == "DEFERRED"]
    assert len(deferrals) == deferred
    assert all(r.startswith("full") and " 422 4.2.2 " in what or " 421 " in what
               for [r], what in deferrals), deferrals
    assert sum(len(rcpts) for label, rcpts, _ in shown if label == "DELIVERED") == delivered


def test_demo_quiet_shows_only_the_summary() -> None:
    result = _invoke(["demo", "--messages", "10", "--quiet"])
    assert result.exit_code == 0, result.output
    assert [ln.split(": ")[0] for ln in result.stdout.splitlines()] == [
        "Scenario",
        "messages",
        "recipients",
        "delivered",
        "deferred",
        "failed",
        "421s seen",
        "retries",
        "cap changes",
        "max concurrent sessions",
        "copies per delivered recipient",
        "duration",
        "consistent",
    ]


def test_demo_writes_the_decision_log_to_a_file(tmp_path: Path) -> None:
    log = tmp_path / "demo.jsonl"
    result = _invoke(["demo", "--messages", "10", "--quiet", "--log-file", str(log)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(r["event"] == "smtpretry.send_completed" for r in records) == 10
    delivered = sum(len(r["recipients"]) for r in records if r["event"] == "smtpretry.message_delivered")
    assert delivered == _figure(_summary(result.stdout)["delivered"])


def test_python_m_smtpretry_demo_in_a_real_process() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "smtpretry", "demo", "--messages", "20"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    s = _summary(done.stdout)
    assert s["messages"] == "20"
    assert s["copies per delivered recipient"] == "exactly 1 (counted at the server)"
    assert s["consistent"].startswith("yes")


# rich takes the output for a terminal (TTY_COMPATIBLE, rich >= 14); the styles are stripped.
_TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": "200"}


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_on_a_terminal_send_prints_a_table_and_keeps_brackets_in_replies(eml: Path) -> None:
    handler = ScriptedHandler(rcpt={"a@example.com": ["550 5.1.1 [a@example.com] unknown [x]"]})
    with serve_threaded(handler) as port:
        result = _invoke(_send_args(port, str(eml)), env=_TERMINAL)
    assert result.exit_code == 1, result.output
    out = _plain(result.stdout)
    assert "550 5.1.1 [a@example.com] unknown [x]" in out
    assert "┃ recipient " in out


def test_on_a_terminal_demo_prints_a_summary_table() -> None:
    result = _invoke(["demo", "--messages", "5", "--quiet"], env=_TERMINAL)
    assert result.exit_code == 0, result.output
    assert re.search(r"│ copies per delivered recipient +│ exactly 1 \(counted at the server\) ",
                     _plain(result.stdout))


def test_config_check_prints_effective_settings_and_exits_2_on_problems(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[defaults]\nmax_connections = 10\n[destinations."smtp.example-isp.net"]\nmax_connections = 2\n'
        '[destinations."mx:.google.com"]\nmax_connections = 20\n'
    )
    result = CliRunner().invoke(
        cli, ["config", "check", str(good), "--json", "--host", "alt1.aspmx.l.google.com"]
    )
    assert result.exit_code == 0, result.output
    rows = {r["destination"]: r for r in json.loads(result.output)["destinations"]}
    assert rows["[defaults]"]["max_connections"] == 10
    assert rows["smtp.example-isp.net"]["max_connections"] == 2
    assert rows["alt1.aspmx.l.google.com"]["rule"] == "mx:.google.com"
    assert rows["alt1.aspmx.l.google.com"]["max_connections"] == 20
    bad = tmp_path / "bad.toml"
    bad.write_text("[defaults]\nmax_connections = 0\nfoo = 1\n")
    result = CliRunner().invoke(cli, ["config", "check", str(bad)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"smtpretry: error: {bad}: defaults.") for line in lines)
    assert "Traceback" not in result.output


def test_send_to_a_port_with_no_server_defers_to_the_queue(tmp_path: Path) -> None:
    with serve_threaded(ScriptedHandler()) as port:
        pass  # nothing listens there any more
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: a@example.org\r\nTo: b@example.com\r\nSubject: x\r\n\r\nhi\r\n")
    queue = f"sqlite:///{tmp_path / 'q.db'}"
    result = CliRunner().invoke(
        cli,
        [
            "send",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--tls",
            "none",
            "--max-attempts",
            "1",
            "--queue",
            queue,
            str(eml),
        ],
    )
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith("deferred b@example.com until ") and "refused" in line
    listed = CliRunner().invoke(cli, ["queue", "list", "--queue", queue, "--json"])
    assert listed.exit_code == 0, listed.output
    assert "b@example.com" in listed.output


def test_demo_routes_three_domains_to_two_providers_each_under_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers: list[DemoServer] = []

    class Recorded(DemoServer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            servers.append(self)

    monkeypatch.setattr(smtpretry.cli.demo, "DemoServer", Recorded)
    result = _invoke(["demo", "--routes", "--messages", "30", "--seed", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    a, b = servers
    s = _summary(result.stdout)
    assert (s["messages"], s["recipients"]) == ("30", "90") and s["consistent"].startswith("yes: ")
    assert s["Scenario"].startswith("30 messages to 90 recipients through a Router, one.example and "
                                    "two.example to provider A, three.example to provider B")
    # Each provider's cap on its own: it starts at the configured 8 and falls under the 421s.
    assert re.fullmatch(r"provider-a: 8 -> \d.*; provider-b: 8 -> \d.*", s["cap changes"]), s["cap changes"]
    # one.example and two.example went to provider A, three.example to provider B; each
    # delivered recipient has one copy there, and neither server saw more than its limit.
    assert {r.rpartition("@")[2] for r in a.copies} <= {"one.example", "two.example"}
    assert {r.rpartition("@")[2] for r in b.copies} == {"three.example"}
    assert set(a.copies.values()) | set(b.copies.values()) == {1}
    assert sum(a.copies.values()) + sum(b.copies.values()) == int(s["delivered"])
    assert a.max_active <= 3 and b.max_active <= 3
    assert s["max concurrent sessions"].startswith(f"provider-a {a.max_active}, provider-b {b.max_active}")
    assert s["421s seen"].endswith(f"(the servers refused {a.refused + b.refused} connections)")
