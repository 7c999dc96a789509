"""Profiles from the installed ``smtpretry`` command: a password variable is read only when
its profile is used, ``config check`` warns about unset secrets (``--strict``: errors), an
unknown profile is said first, and ``--profile`` with ``--host/--port/--tls/--user`` is an
error naming the conflict."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from smtpretry.queue import Destination
from tests.cli.commands import Smtpretry, entries_for, held, seed
from tests.servers import ScriptedHandler, serve_threaded

MESSAGE = "From: s@example.org\r\nTo: a@example.com\r\nSubject: x\r\n\r\nhi\r\n"
UNSET = "profiles.isp.password_env: the environment variable ISP_SMTP_PASSWORD is not set"


def _config(tmp_path: Path, port: int = 2525) -> Path:
    """The README's kind of file: a profile with credentials and one without."""
    path = tmp_path / "smtpretry.toml"
    path.write_text(
        '[profiles.isp]\nhost = "smtp.example-isp.net"\nport = 587\ntls = "starttls"\n'
        'username = "app@example.org"\npassword_env = "ISP_SMTP_PASSWORD"\n'
        f'[profiles.local]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
    )
    return path


def test_config_check_warns_about_an_unset_secret_and_strict_makes_it_an_error(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    checked = smtpretry("config", "check", config, "--json")
    assert checked.returncode == 0  # valid: the secret is the environment's business
    assert checked.stderr == f"smtpretry: warning: {config}: {UNSET}\n"
    assert json.loads(checked.stdout)["warnings"] == [f"{config}: {UNSET}"]
    strict = smtpretry("config", "check", config, "--strict")
    assert (strict.returncode, strict.stdout) == (2, "")
    assert strict.stderr == f"smtpretry: error: {config}: {UNSET}\n"
    with_secret = smtpretry("config", "check", config, "--strict", env={"ISP_SMTP_PASSWORD": "pw"})
    assert (with_secret.returncode, with_secret.stderr) == (0, "")
    from_env = smtpretry("config", "check", "--json", env={"SMTPRETRY_CONFIG": str(config)})
    assert from_env.returncode == 0 and json.loads(from_env.stdout)["file"] == str(config)
    neither = smtpretry("config", "check")
    assert (neither.returncode, neither.stderr) == (2, "smtpretry: error: give a FILE to check, or set "
                                                       "SMTPRETRY_CONFIG\n")


def test_a_profile_without_credentials_sends_while_another_profiles_secret_is_unset(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        done = smtpretry("send", "--config", _config(tmp_path, port), "--profile", "local", "-",
                         input=MESSAGE)
    assert (done.returncode, done.stdout, done.stderr) == (0, "delivered a@example.com\n", "")
    assert handler.copies == Counter({"a@example.com": 1})


def test_the_secret_of_the_profile_used_is_read_when_used(smtpretry: Smtpretry, tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = smtpretry("send", "--config", config, "--profile", "isp", "-", input=MESSAGE)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"smtpretry: error: {config}: {UNSET}\n"


def test_an_unknown_profile_is_reported_first(smtpretry: Smtpretry, tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = smtpretry("send", "--config", config, "--profile", "nosuch", "--host", "h", "-", input=MESSAGE)
    assert done.returncode == 2
    assert done.stderr == f"smtpretry: error: {config}: profiles: no profile 'nosuch' (known: isp, local)\n"
    nowhere = smtpretry("send", "--profile", "local", "-", input=MESSAGE)
    assert nowhere.returncode == 2
    assert nowhere.stderr == ("smtpretry: error: --profile local: no configuration to find it in "
                              "(give --config FILE or set SMTPRETRY_CONFIG)\n")


@pytest.mark.parametrize("flags", [
    ["--host", "127.0.0.2"], ["--port", "2526"], ["--tls", "implicit"], ["--user", "u"],
    ["--password-env", "X"], ["--host", "127.0.0.2", "--port", "2526", "--tls", "none"],
], ids=["host", "port", "tls", "user", "password-env", "host-port-tls"])
def test_profile_with_connection_flags_is_an_error_naming_the_conflict(
    smtpretry: Smtpretry, tmp_path: Path, flags: list[str]
) -> None:
    handler = ScriptedHandler()
    with serve_threaded(handler) as port:
        done = smtpretry("send", "--config", _config(tmp_path, port), "--profile", "local", *flags, "-",
                         input=MESSAGE)
    assert (done.returncode, done.stdout) == (2, "")
    named = ", ".join(f for f in flags if f.startswith("--"))
    assert done.stderr == (
        "smtpretry: error: --profile local names the server, its TLS and its login; it cannot be "
        f"combined with {named} (give --profile, or the flags without it)\n"
    )
    assert handler.commands == []  # nothing was sent, anywhere


def test_queue_run_reads_a_profiles_secret_only_for_its_entries(smtpretry: Smtpretry, tmp_path: Path) -> None:
    handler = ScriptedHandler()
    db = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        config = _config(tmp_path, port)
        seed(db, entries_for(2, port=port, at=0.0))
        done = smtpretry("queue", "run", "--config", config, "--queue", db, "--timeout", "5")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "entries: 2, delivered: 2, deferred: 0, failed: 0, expired: 0\n"
    assert held(db) == []


def test_queue_run_never_sends_an_entry_without_the_profile_it_was_deferred_as(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    handler = ScriptedHandler()
    db = tmp_path / "q.db"
    with serve_threaded(handler) as port:
        config = _config(tmp_path, port)
        [entry] = entries_for(1, port=port, at=0.0)
        seed(db, [dataclasses.replace(entry, destination=Destination("127.0.0.1", port, "none", "gone"))])
        done = smtpretry("queue", "run", "--config", config, "--queue", db)
        unconfigured = smtpretry("queue", "run", "--queue", db)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"smtpretry: error: queue entries for 127.0.0.1:{port} were deferred as profile 'gone': "
        f"{config} has no such profile"
    )
    assert unconfigured.returncode == 2
    assert unconfigured.stderr.splitlines()[-1].endswith(
        "as profile 'gone': no configuration is named (give --config FILE or set SMTPRETRY_CONFIG)")
    assert handler.commands == []  # not sent without its login
    [kept] = held(db)
    assert kept.lease_until <= time.time()  # given back for the next run
