"""One voice for every command, as a user meets it with the installed ``smtpretry``: one
error style (``smtpretry: error: ...``, exit 2, no traceback, for click's usage errors too),
one time format for people (ISO 8601 with its zone), and shell completion."""

from __future__ import annotations

import re

import pytest

from tests.cli.conftest import run


@pytest.mark.parametrize(("args", "message"), [
    (["bogus"], "no such command 'bogus'"),
    (["queue", "show"], "queue show: missing argument 'ID...|-'"),
    (["logs", "tail", "--bogus", "x.log"], "logs tail: no such option '--bogus'"),
    (["send", "--port", "x", "m.eml"], "send: invalid value for '--port': 'x' is not a valid integer"),
    (["demo", "--messages", "0"], "demo: invalid value for '--messages'"),
    (["config", "init", "a.toml", "b.toml"], "config init: got unexpected extra argument (b.toml)"),
    (["logs", "summary", "missing.log"], "missing.log: no such file"),
])
def test_every_error_is_one_line_in_one_style_with_exit_2(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"smtpretry: error: {message}"), line
    assert "Usage:" not in done.stderr and "Error:" not in done.stderr


def test_a_usage_error_names_the_help_to_read() -> None:
    assert run("queue", "show").stderr.rstrip().endswith("(see 'smtpretry queue show --help')")


def test_times_for_people_are_iso_8601_with_their_zone(tmp_path: object) -> None:
    done = run("demo", "--messages", "20", "--server-delay", "0")
    any_time = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d| UTC)?"
    stamps = re.findall(any_time, done.stdout)
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z"
    assert stamps and all(re.fullmatch(iso, s) for s in stamps), stamps


def test_shell_completion_for_bash_zsh_and_fish() -> None:
    bash = run(env={"_SMTPRETRY_COMPLETE": "bash_source"})
    assert bash.returncode == 0 and "complete -o nosort -F _smtpretry_completion smtpretry" in bash.stdout
    assert run(env={"_SMTPRETRY_COMPLETE": "zsh_source"}).stdout.startswith("#compdef smtpretry")
    assert "_smtpretry_completion" in run(env={"_SMTPRETRY_COMPLETE": "fish_source"}).stdout
    words = run(env={"_SMTPRETRY_COMPLETE": "bash_complete", "COMP_WORDS": "smtpretry qu", "COMP_CWORD": "1"})
    assert words.stdout.split() == ["plain,queue"]
    options = run(env={"_SMTPRETRY_COMPLETE": "bash_complete", "COMP_WORDS": "smtpretry logs tail -",
                       "COMP_CWORD": "3"}).stdout.split()
    assert {"plain,-F", "plain,--follow", "plain,--lines"} <= set(options)


def test_a_group_without_a_command_shows_its_help() -> None:
    done = run("queue")
    assert done.returncode in (0, 2) and "smtpretry: error" not in done.stderr
    assert (done.stdout + done.stderr).startswith("Usage: smtpretry queue [OPTIONS] COMMAND [ARGS]...")
