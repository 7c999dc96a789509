"""load_config(): the documented shape, matching, and one clear line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpretry import ConfigError, Delivery, RetryPolicy, load_config
from smtpretry.config import parse_duration

EXAMPLE = """
[defaults]
max_connections = 10
max_messages_per_connection = 100
[defaults.retry]
backoff_base = 1.0
backoff_cap = 300.0
max_attempts = 6
defer_schedule = ["5m", "15m", "30m", "1h", "2h", "4h"]
max_lifetime = "5d"

[destinations."smtp.example-isp.net"]
max_connections = 2
max_messages_per_minute = 60
[destinations."smtp.example-isp.net".retry]
backoff_base = 30.0

[destinations."mx:.google.com"]
max_connections = 20

[destinations."*.mail.example.com"]
max_connections = 4
[destinations."*.mail.example.com".retry]
delivery = "at_most_once"

[destinations."domain:yahoo.com"]
max_connections = 3

[profiles.isp]
host = "smtp.example-isp.net"
port = 587
tls = "starttls"
username = "app@example.org"
password_env = "ISP_SMTP_PASSWORD"

[queue]
url = "sqlite:///var/lib/app/queue.db"
"""


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISP_SMTP_PASSWORD", "pw")
    path = tmp_path / "smtpretry.toml"
    path.write_text(EXAMPLE)
    return path


def test_the_documented_example_loads(example: Path) -> None:
    config = load_config(example)
    assert config.limits.max_connections == 10
    assert config.policy.defer_schedule == (300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
    assert config.policy.max_lifetime == 5 * 86400.0
    isp = config.settings_for("smtp.example-isp.net", 587)
    assert (isp.limits.max_connections, isp.limits.max_messages_per_minute) == (2, 60.0)
    assert isp.policy.backoff_base == 30.0
    assert isp.policy.max_attempts == 6  # inherited from [defaults.retry]
    assert isp.limit_key == "smtp.example-isp.net:587" and isp.rule == "smtp.example-isp.net"
    assert config.profile("isp").password == "pw"
    assert config.queue_url == "sqlite:///var/lib/app/queue.db"


def test_a_profiles_password_variable_is_read_only_when_that_profile_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smtpretry import Mailer

    monkeypatch.delenv("ISP_SMTP_PASSWORD", raising=False)
    path = tmp_path / "smtpretry.toml"
    path.write_text(EXAMPLE + '[profiles.local]\nhost = "127.0.0.1"\nport = 25\ntls = "none"\n')
    config = load_config(path)  # the README's example loads without its secret
    assert config.profile("isp").unset_secret() == (
        "profiles.isp.password_env: the environment variable ISP_SMTP_PASSWORD is not set"
    )
    assert config.unset_secrets() == [
        f"{path}: profiles.isp.password_env: the environment variable ISP_SMTP_PASSWORD is not set"
    ]
    assert Mailer.from_profile(config, "local").endpoint.username is None  # isp's secret is not asked
    with pytest.raises(ConfigError, match=r"profiles\.isp\.password_env: the environment variable "
                                          r"ISP_SMTP_PASSWORD is not set"):
        Mailer.from_profile(config, "isp")
    with pytest.raises(ConfigError, match=r"no profile 'nosuch' \(known: isp, local\)"):
        Mailer.from_profile(config, "nosuch")  # an unknown profile is said first
    monkeypatch.setenv("ISP_SMTP_PASSWORD", "pw")
    assert config.unset_secrets() == [] and Mailer.from_profile(config, "isp").endpoint.password == "pw"


def test_mx_suffix_hosts_share_one_limit_and_globs_do_not(example: Path) -> None:
    config = load_config(example)
    a = config.settings_for("alt1.gmail-smtp-in.l.google.com", 25)
    b = config.settings_for("gmail-smtp-in.l.google.com", 25)
    assert a.limits.max_connections == b.limits.max_connections == 20
    assert a.limit_key == b.limit_key == "mx:.google.com"
    c = config.settings_for("eu.mail.example.com", 25)
    d = config.settings_for("us.mail.example.com", 25)
    assert c.limits.max_connections == 4 and c.policy.delivery is Delivery.AT_MOST_ONCE
    assert c.limit_key != d.limit_key


def test_recipient_domain_applies_only_when_no_host_rule_matches(example: Path) -> None:
    config = load_config(example)
    assert (
        config.settings_for("mta5.am0.yahoodns.net", recipient_domain="yahoo.com").limits.max_connections == 3
    )
    assert (
        config.settings_for("smtp.example-isp.net", recipient_domain="yahoo.com").limits.max_connections == 2
    )
    other = config.settings_for("relay.example.org")
    assert other.rule == "defaults" and other.limits.max_connections == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[defaults]\nmax_conections = 3\n", "defaults.max_conections: unknown key"),
        ("[defaults]\nmax_connections = -1\n", "defaults.max_connections: expected an integer >= 1"),
        ('[defaults]\nmax_connections = "3"\n', "defaults.max_connections: expected an integer"),
        (
            '[defaults.retry]\ndefer_schedule = ["5 minutes"]\n',
            "defaults.retry.defer_schedule[0]: expected a duration",
        ),
        (
            '[destinations."a.example"]\nmax_connections = 0\n',
            'destinations."a.example".max_connections: expected',
        ),
        (
            '[destinations."a.example".retry]\nbackof_base = 1\n',
            'destinations."a.example".retry.backof_base: unknown key',
        ),
        (
            '[profiles.p]\nhost = "h"\ntls = "ssl"\n',
            'profiles.p.tls: expected "starttls", "implicit" or "none"',
        ),
        ("[smtp]\nx = 1\n", "smtp: unknown table"),
        ("[defaults\n", "not valid TOML"),
    ],
)
def test_each_problem_is_one_line_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: ")
    assert expected in lines[0]


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[defaults]\nmax_connections = 0\nfoo = 1\n[defaults.retry]\nmax_attempts = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(str(info.value).splitlines()) == 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1.5h", 5400.0),
        ("5d", 432000.0),
        ("250ms", 0.25),
        (" 2 ", 2.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "m5", "", True, None, [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(value)


def test_delivery_takes_the_enum_or_its_name_and_refuses_anything_else() -> None:
    assert RetryPolicy(delivery="at_most_once").delivery is Delivery.AT_MOST_ONCE  # type: ignore[arg-type]
    assert RetryPolicy(delivery=Delivery.AT_MOST_ONCE).delivery is Delivery.AT_MOST_ONCE
    with pytest.raises(ConfigError, match="delivery: expected 'at_least_once' or 'at_most_once', got 'once'"):
        RetryPolicy(delivery="once")  # type: ignore[arg-type]


def test_host_and_port_rule_wins_over_the_host_rule(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[destinations."relay.example.net"]\nmax_connections = 4\n'
        '[destinations."relay.example.net:2525"]\nmax_connections = 1\n'
    )
    config = load_config(path)
    assert config.settings_for("relay.example.net", 2525).limits.max_connections == 1
    assert config.settings_for("relay.example.net", 25).limits.max_connections == 4
    assert config.settings_for("relay.example.net").limits.max_connections == 4
