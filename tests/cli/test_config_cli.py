"""``smtpretry config init`` and ``config check`` as a user runs them: the installed command,
in a process of its own, on real files."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from smtpretry.config import _PROFILE_KEYS, load_config
from smtpretry.policy import Limits, RetryPolicy
from tests.cli.conftest import TERMINAL, plain, run


def test_config_init_writes_a_commented_file_that_check_accepts_without_secrets(tmp_path: Path) -> None:
    done = run("config", "init", cwd=tmp_path, env={"ISP_SMTP_PASSWORD": ""})
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == "wrote smtpretry.toml: check it with `smtpretry config check smtpretry.toml`\n"
    written = (tmp_path / "smtpretry.toml").read_text()
    assert written.startswith("# smtpretry configuration.")
    checked = run("config", "check", "smtpretry.toml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[0] == "smtpretry.toml: valid"
    # Never overwritten: the file an operator has edited stays as it is.
    (tmp_path / "smtpretry.toml").write_text("# mine\n")
    again = run("config", "init", cwd=tmp_path)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr == ("smtpretry: error: smtpretry.toml exists: not overwritten "
                            "(remove it, or give another FILE)\n")
    assert (tmp_path / "smtpretry.toml").read_text() == "# mine\n"
    # - writes the same text to standard output, another FILE is written there.
    assert run("config", "init", "-").stdout == written
    assert run("config", "init", str(tmp_path / "other.toml")).returncode == 0
    assert (tmp_path / "other.toml").read_text() == written


def test_the_sample_shows_every_key_and_each_example_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = run("config", "init", "-").stdout
    # Every example line, uncommented, is valid too (with the profile's password set).
    examples = re.sub(r"(?m)^# (?=\w+ = |\[)", "", sample)
    path = tmp_path / "all.toml"
    path.write_text(examples)
    monkeypatch.setenv("ISP_SMTP_PASSWORD", "x")
    config = load_config(path)
    assert config.backend_url == "redis://127.0.0.1:6379/0" and "isp" in config.profiles
    assert [r.key for r in config.routes] == ["domain:example.com", "default"]
    assert config.helo_name == "mail.example.org"
    assert [r.key for r in config.rules] == ["smtp.example-isp.net", "mx:.google.com", "*.mail.example.com",
                                             "domain:yahoo.com"]
    keys = {f.name for f in dataclasses.fields(Limits)} | {f.name for f in dataclasses.fields(RetryPolicy)}
    shown = set(re.findall(r"(?m)^(?:# )?(\w+) = ", sample))
    assert keys | _PROFILE_KEYS | {"backend", "url", "helo_name", "via", "mx_port", "nameservers"} <= shown


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "smtpretry.toml"
    path.write_text(
        '[defaults]\nmax_messages_per_minute = 60\n'
        '[destinations."smtp.example-isp.net"]\nmax_connections = 2\n'
        '[destinations."smtp.example-isp.net".retry]\nbackoff_base = "30s"\n'
        '[profiles.isp]\nhost = "smtp.example-isp.net"\nport = 587\n'
        'username = "app@example.org"\npassword_env = "ISP_PW"\n'
    )
    return path


def test_config_check_piped_is_one_unfolded_row_per_destination_with_full_profile_rows(
    tmp_path: Path,
) -> None:
    path = _config(tmp_path)
    done = run("config", "check", str(path), "--host", "mx.other.example", env={"ISP_PW": "secret"})
    assert done.returncode == 0, done.stderr
    title, header, *rows = done.stdout.splitlines()
    assert title == f"{path}: valid"
    assert header.split() == [
        "destination", "rule", "host", "port", "tls", "username", "password_env", "max_connections",
        "max_messages_per_connection", "max_messages_per_minute", "backoff", "max_attempts",
        "defer_schedule", "max_lifetime", "delivery",
    ]
    by_name = {r.split("  ")[0].strip(): r for r in rows}
    assert set(by_name) == {"[defaults]", "smtp.example-isp.net", "profile isp", "mx.other.example"}
    words = by_name["profile isp"].split()
    assert words[2:10] == ["smtp.example-isp.net", "smtp.example-isp.net", "587", "starttls",
                           "app@example.org", "ISP_PW", "2", "100"]
    assert words[10] == "60" and "60.0" not in done.stdout  # an integer shown as one
    assert by_name["smtp.example-isp.net"].split()[10] == "30s..5m"
    assert "secret" not in done.stdout
    as_json = json.loads(run("config", "check", str(path), "--json", env={"ISP_PW": "x"}).stdout)
    [isp] = [d for d in as_json["destinations"] if d["destination"] == "profile isp"]
    assert (isp["host"], isp["port"], isp["tls"], isp["username"], isp["max_messages_per_minute"]) == (
        "smtp.example-isp.net", 587, "starttls", "app@example.org", 60)


def test_config_check_on_a_terminal_is_a_table(tmp_path: Path) -> None:
    done = run("config", "check", str(_config(tmp_path)), env={**TERMINAL, "ISP_PW": "x"})
    assert done.returncode == 0, done.stderr
    screen = plain(done.stdout)
    assert re.search(r"│ profile isp +│ smtp\.example-isp\.net +│ smtp\.example-isp\.net +│ +587 │ starttls",
                     screen), screen
