"""The command line through routes: ``config check --domain``, ``send`` without ``--host``,
``queue list --by`` and ``queue run`` of an MX route's entry.

A dnslib DNS server on 127.0.0.1 answers for the test domains (``tests/dns_server.py``); the
MX host is an aiosmtpd server in a Controller thread on 127.0.0.2 (CliRunner is sync and
the command runs its own event loop). Assertions are made at the server as well as on what
the command prints.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from smtpretry.cli import cli
from tests.dns_server import Zone, dns_server
from tests.servers import ScriptedHandler, serve_threaded

MESSAGE = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: ann@a.test, bob@b.test, cat@corp.test\r\n"
    b"Subject: routed\r\n"
    b"Message-ID: <cli-routes@example.org>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)
ZONE = Zone(mx={"a.test": [(10, "mx1.p.test")], "b.test": [(10, "mx1.p.test")], "null.test": [(0, ".")]},
            a={"mx1.p.test": ["127.0.0.2"]})


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def write_config(tmp_path: Path, dns_port: int, mx_port: int, relay_port: int = 2525, extra: str = "") -> str:
    path = tmp_path / "routes.toml"
    path.write_text(
        'helo_name = "client.example.org"\n'
        f"{extra}"
        "[defaults.retry]\nbackoff_base = 0.001\nbackoff_cap = 0.01\nmax_attempts = 3\n"
        f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\ntimeout = "2s"\n'
        '[destinations."mx:.p.test"]\nmax_connections = 2\n'
        f'[routes.default]\nvia = "mx"\nmx_port = {mx_port}\nallow_private_mx = true\n'
        '[routes."domain:corp.test"]\nvia = "profile:relay"\n'
        f'[profiles.relay]\nhost = "127.0.0.1"\nport = {relay_port}\ntls = "none"\n'
    )
    return str(path)


def test_config_check_prints_the_route_and_the_limit_key_of_each_domain(tmp_path: Path) -> None:
    with dns_server(ZONE) as dns:
        config = write_config(tmp_path, dns.port, 2525)
        result = _invoke(["config", "check", config, "--json", "--domain", "A.test",
                          "--domain", "corp.test", "--domain", "null.test"])
    assert result.exit_code == 0, result.output
    rows = {r["domain"]: r for r in json.loads(result.stdout)["domains"]}
    assert {d: (r["route"], r["via"], r["limit_key"], r["max_connections"]) for d, r in rows.items()} == {
        "a.test": ("default", "mx", "mx:.p.test", 2),
        "corp.test": ("domain:corp.test", "profile:relay", "127.0.0.1:2525", 10),
        "null.test": ("default", "mx", None, None),
    }
    assert rows["a.test"]["mx_hosts"] == "mx1.p.test (10)" and rows["a.test"]["outcome"] == "ok"
    assert rows["null.test"]["outcome"].startswith("556 5.1.10")


def test_config_check_domain_needs_routes(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text("[defaults]\nmax_connections = 2\n")
    result = _invoke(["config", "check", str(path), "--domain", "a.test"])
    assert result.exit_code == 2
    assert "the file has no [routes] table" in result.stderr


def test_send_without_a_host_goes_by_the_routes(tmp_path: Path) -> None:
    mx, relay = ScriptedHandler(), ScriptedHandler()
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    with dns_server(ZONE) as dns, serve_threaded(mx, host="127.0.0.2") as mx_port, \
            serve_threaded(relay) as relay_port:
        config = write_config(tmp_path, dns.port, mx_port, relay_port)
        result = _invoke(["send", "--config", config, str(eml)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "delivered ann@a.test", "delivered bob@b.test", "delivered cat@corp.test"]
    assert dict(mx.copies) == {"ann@a.test": 1, "bob@b.test": 1}
    assert dict(relay.copies) == {"cat@corp.test": 1}


def test_send_with_routes_refuses_a_host_too(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    with dns_server(ZONE) as dns:
        config = write_config(tmp_path, dns.port, 2525)
        result = _invoke(["send", "--config", config, "--routes", "--host", "127.0.0.1", str(eml)])
    assert result.exit_code == 2
    assert "give no --host or --profile with it" in result.stderr


def test_a_deferred_mx_recipient_is_listed_by_domain_and_provider_and_resent_by_queue_run(
    tmp_path: Path,
) -> None:
    queue = f"sqlite:///{tmp_path}/q.db"
    mx = ScriptedHandler(rcpt=["450 4.2.0 Greylisted, please try again later"])
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE.replace(b", cat@corp.test", b""))
    with dns_server(ZONE) as dns, serve_threaded(mx, host="127.0.0.2") as mx_port:
        config = write_config(tmp_path, dns.port, mx_port)
        sent = _invoke(["send", "--config", config, "--queue", queue, str(eml)])
        by_domain = _invoke(["queue", "list", "--queue", queue, "--by", "domain", "--json"])
        by_provider = _invoke(["queue", "list", "--queue", queue, "--by", "provider", "--json"])
        _invoke(["queue", "retry", "--all", "--queue", queue])  # due now, not in 5 minutes
        resent = _invoke(["queue", "run", "--queue", queue, "--config", config])
        left = _invoke(["queue", "list", "--queue", queue])
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.splitlines()[0].startswith("deferred ann@a.test until")
    assert [(g["domain"], g["entries"], g["recipients"])
            for g in map(json.loads, by_domain.stdout.splitlines())] == [("a.test", 1, 1)]
    assert [(g["provider"], g["recipients"])
            for g in map(json.loads, by_provider.stdout.splitlines())] == [("mx:.p.test", 1)]
    assert resent.exit_code == 0, resent.output
    assert "delivered: 1" in resent.stdout
    assert left.stdout.strip() == "the queue is empty"
    assert dict(mx.copies) == {"ann@a.test": 1, "bob@b.test": 1}


def test_queue_run_without_the_routes_says_what_it_needs(tmp_path: Path) -> None:
    queue = f"sqlite:///{tmp_path}/q.db"
    mx = ScriptedHandler(rcpt=["450 4.2.0 Greylisted, please try again later"])
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE.replace(b", bob@b.test, cat@corp.test", b""))
    with dns_server(ZONE) as dns, serve_threaded(mx, host="127.0.0.2") as mx_port:
        config = write_config(tmp_path, dns.port, mx_port)
        _invoke(["send", "--config", config, "--queue", queue, str(eml)])
        _invoke(["queue", "retry", "--all", "--queue", queue])
        result = _invoke(["queue", "run", "--queue", queue])
    assert result.exit_code == 2
    assert "needs --config FILE with the [routes] it was sent by" in result.stderr
