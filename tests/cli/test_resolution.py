"""Every command finds the same configuration and queue from the same flags and environment.

The precedence, as the installed ``smtpretry`` command applies it, for ``send`` and each
``queue`` subcommand, on real queue files: ``--config`` over ``SMTPRETRY_CONFIG``;
``--queue`` over ``SMTPRETRY_QUEUE`` over the configuration's ``[queue] url`` over the
default queue in the state directory. Five queues hold 1 to 5 entries, so what a command
shows or changes tells which one it used; ``send`` queues only when a queue is named.
And the commands that read or edit a queue never create one.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.commands import Silent, Smtpretry, entries_for, held, seed
from tests.servers import R422_OVER_QUOTA, ScriptedHandler, serve_threaded

MESSAGE = "From: s@example.org\r\nTo: a@example.com, b@example.com\r\nSubject: x\r\n\r\nhi\r\n"


@dataclass
class World:
    """The queues and configuration files one row of the matrix runs among."""

    smtpretry: Smtpretry
    queues: dict[str, Path]  # who would name it -> its file
    config_a: Path  # its [queue] url is queues["config_a"]
    config_b: Path  # its [queue] url is queues["config_b"]


def _world(smtpretry: Smtpretry, tmp_path: Path) -> World:
    queues = {name: tmp_path / name / "queue.db"
              for name in ("config_a", "config_b", "environment", "flag")}
    queues = {"default": smtpretry.default_queue, **queues}
    configs = []
    for name in ("config_a", "config_b"):
        path = tmp_path / f"{name}.toml"
        path.write_text(f'[queue]\nurl = "sqlite:///{str(queues[name]).lstrip("/")}"\n'
                        '[defaults.retry]\nbackoff_base = 0.001\n')
        configs.append(path)
    return World(smtpretry, queues, *configs)


# Each row: the flags and environment given, and the queue that must be used.
ROWS = {
    "default": ({}, [], "default"),
    "SMTPRETRY_CONFIG": ({"SMTPRETRY_CONFIG": "config_b"}, [], "config_b"),
    "--config over SMTPRETRY_CONFIG": (
        {"SMTPRETRY_CONFIG": "config_b"}, ["--config", "config_a"], "config_a",
    ),
    "SMTPRETRY_QUEUE over the configuration": (
        {"SMTPRETRY_CONFIG": "config_b", "SMTPRETRY_QUEUE": "environment"}, ["--config", "config_a"],
        "environment",
    ),
    "--queue over everything": (
        {"SMTPRETRY_CONFIG": "config_b", "SMTPRETRY_QUEUE": "environment"},
        ["--config", "config_a", "--queue", "flag"], "flag",
    ),
}


def _given(world: World, row: str) -> tuple[dict[str, str | None], list[str], str]:
    names = {"config_a": str(world.config_a), "config_b": str(world.config_b),
             "environment": str(world.queues["environment"]), "flag": f"sqlite://{world.queues['flag']}"}
    env, flags, expected = ROWS[row]
    return ({k: names[v] for k, v in env.items()}, [names.get(f, f) for f in flags], expected)


def _seed_all(world: World, *, due: bool, port: int = 2525) -> dict[str, list[str]]:
    """Queue number i (in the order of ``world.queues``) gets i + 1 entries."""
    at = time.time() - 1 if due else time.time() + 3600
    return {name: seed(db, entries_for(i + 1, port=port, at=at, tag=name))
            for i, (name, db) in enumerate(world.queues.items())}


@pytest.mark.parametrize("row", list(ROWS))
@pytest.mark.parametrize("command", ["list", "show", "stats", "retry", "delete"])
def test_every_queue_command_uses_the_queue_the_precedence_names(
    smtpretry: Smtpretry, tmp_path: Path, command: str, row: str
) -> None:
    world = _world(smtpretry, tmp_path)
    ids = _seed_all(world, due=False)
    env, flags, expected = _given(world, row)
    n = list(world.queues).index(expected) + 1
    target = ids[expected][0]
    args = {
        "list": ["list", "--json"], "show": ["show", target, "--json"], "stats": ["stats", "--json"],
        "retry": ["retry", "--all"], "delete": ["delete", target],
    }[command]
    done = smtpretry("queue", *args, *flags, env=env)
    assert done.returncode == 0, done.stderr
    match command:
        case "list":
            assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == ids[expected]
        case "show":
            assert json.loads(done.stdout)["id"] == target
        case "stats":
            assert json.loads(done.stdout)["entries"] == n
        case "retry":
            assert done.stdout == (f"{n} entries due now ({n} recipients)\n" if n > 1
                                   else "1 entry due now (1 recipient)\n")
        case "delete":
            assert done.stdout == "deleted 1 entry (1 recipient will not get the message)\n"
    after = {name: [e.id for e in held(db)] for name, db in world.queues.items()}
    for name, before in ids.items():
        if command == "delete" and name == expected:
            assert sorted(after[name]) == sorted(set(before) - {target})
        else:
            assert sorted(after[name]) == sorted(before), name  # no other queue was touched


@pytest.mark.parametrize("row", list(ROWS))
def test_queue_run_sends_the_queue_the_precedence_names(
    smtpretry: Smtpretry, tmp_path: Path, row: str
) -> None:
    handler = ScriptedHandler()
    world = _world(smtpretry, tmp_path)
    env, flags, expected = _given(world, row)
    with serve_threaded(handler) as port:
        ids = _seed_all(world, due=True, port=port)
        done = smtpretry("queue", "run", "--once", *flags, env=env)
    n = len(ids[expected])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"entries: {n}, delivered: {n}, deferred: 0, failed: 0, expired: 0\n"
    assert handler.copies == Counter({f"r{i}{expected}@example.com": 1 for i in range(n)})
    for name, db in world.queues.items():
        assert len(held(db)) == (0 if name == expected else len(ids[name])), name


@pytest.mark.parametrize("row", list(ROWS))
def test_send_queues_where_the_precedence_names_and_only_when_a_queue_is_named(
    smtpretry: Smtpretry, tmp_path: Path, row: str
) -> None:
    handler = ScriptedHandler(rcpt={"b@example.com": [R422_OVER_QUOTA] * 10})
    world = _world(smtpretry, tmp_path)
    env, flags, expected = _given(world, row)
    with serve_threaded(handler) as port:
        done = smtpretry("send", "--host", "127.0.0.1", "--port", port, "--tls", "none", *flags, "-",
                         env=env, input=MESSAGE)
    assert handler.copies == Counter({"a@example.com": 1})
    if expected == "default":
        # The default queue is for the queue commands: send names none, so it queues nothing.
        assert done.returncode == 75, done.stderr
        assert "deferred b@example.com (not queued: will not be retried)" in done.stdout
        assert not smtpretry.state.exists()
        assert not any(db.exists() for db in world.queues.values())
        return
    assert done.returncode == 0, done.stderr
    [entry] = held(world.queues[expected])
    assert [r.address for r in entry.recipients] == ["b@example.com"]
    assert re.search(rf"^queued as {entry.id} in sqlite:///", done.stdout, re.M), done.stdout
    assert [name for name, db in world.queues.items() if db.exists()] == [expected]


# -- read-only commands never create anything ----------------------------------------------------


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


@pytest.mark.parametrize("named_by", ["--queue", "SMTPRETRY_QUEUE", "[queue] url", "default"])
@pytest.mark.parametrize("command", ["list", "show", "stats", "retry", "delete"])
def test_a_read_only_command_on_a_queue_that_does_not_exist_exits_2_and_creates_nothing(
    smtpretry: Smtpretry, tmp_path: Path, command: str, named_by: str
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "q.db"
    config = tmp_path / "smtpretry.toml"
    config.write_text(f'[queue]\nurl = "{missing}"\n')
    flags, env = {
        "--queue": (["--queue", str(missing)], {}),
        "SMTPRETRY_QUEUE": ([], {"SMTPRETRY_QUEUE": str(missing)}),
        "[queue] url": (["--config", str(config)], {}),
        "default": ([], {}),
    }[named_by]
    path = smtpretry.default_queue if named_by == "default" else missing
    args = {"list": ["list"], "show": ["show", "x"], "stats": ["stats"], "retry": ["retry", "--all"],
            "delete": ["delete", "x"]}[command]
    before = _files(tmp_path)
    done = smtpretry("queue", *args, *flags, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    why = "the default queue" if named_by == "default" else f"from {named_by}"
    if named_by == "[queue] url":
        why = f"from [queue] url of {config}"
    assert done.stderr == f"smtpretry: error: no queue at {path} ({why})\n"
    assert _files(tmp_path) == before  # no directory, no database, no key


def test_queue_run_once_on_a_queue_that_does_not_exist_sends_nothing_and_creates_nothing(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    before = _files(tmp_path)
    done = smtpretry("queue", "run", "--once")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"nothing due: no queue at {smtpretry.default_queue} (the default queue)\n"
    assert _files(tmp_path) == before


def test_a_bad_configuration_named_by_the_environment_is_one_line_saying_so(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[queue]\nurl = 3\n")
    done = smtpretry("queue", "list", env={"SMTPRETRY_CONFIG": str(bad)})
    assert done.returncode == 2
    assert done.stderr == (f'smtpretry: error: {bad}: queue.url: expected a URL such as '
                           f'"sqlite:///path/queue.db", got 3 (named by SMTPRETRY_CONFIG)\n')


def test_resolve_reads_an_empty_variable_as_unset_and_refuses_an_empty_flag(tmp_path: Path) -> None:
    from click.exceptions import ClickException

    from smtpretry.cli._resolve import Source, resolve

    config = tmp_path / "c.toml"
    config.write_text(f'[queue]\nurl = "{tmp_path / "q.db"}"\n')
    default = resolve(environ={"SMTPRETRY_CONFIG": "", "SMTPRETRY_QUEUE": ""})
    assert (default.config_source, default.queue_source, default.queue_named) == (None, Source.DEFAULT, False)
    named = resolve(environ={"SMTPRETRY_CONFIG": str(config), "SMTPRETRY_QUEUE": ""})
    assert (named.config_source, named.queue_source, named.queue_url) == (
        Source.ENVIRONMENT, Source.CONFIGURATION, str(tmp_path / "q.db"))
    assert named.queue_origin == f"[queue] url of {config}" and named.queue_path == tmp_path / "q.db"
    redis = resolve(queue="redis://127.0.0.1:6379/0", environ={})
    assert (redis.queue_source, redis.queue_path) == (Source.FLAG, None)
    for flags in ({"queue": ""}, {"config": " "}):
        with pytest.raises(ClickException, match="expected"):
            resolve(**flags, environ={})  # type: ignore[arg-type]


def test_queue_run_forever_waits_for_its_queue_to_appear_and_then_sends_it(
    smtpretry: Smtpretry, tmp_path: Path
) -> None:
    handler = ScriptedHandler()
    silent = Silent()
    db = tmp_path / "later" / "q.db"
    with serve_threaded(handler) as port:
        proc = smtpretry.start("queue", "run", "--forever", "--poll", "0.05", "--concurrency", "1",
                               "--queue", db)
        try:
            assert proc.stderr is not None
            assert proc.stderr.readline() == f"waiting: no queue at {db} (from --queue)\n"
            assert not db.parent.exists()  # waiting creates nothing
            now = time.time()  # the first deferral makes the queue; the second entry never ends
            seed(db, [*entries_for(1, port=port, at=now - 10), *entries_for(1, port=silent.port, at=now - 5,
                                                                           tag="stuck")])
            deadline = time.monotonic() + 30
            # Once the runner talks to the silent server, the first entry is written back.
            while not silent.accepted and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            silent.close()
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 143, err
    assert out == "entries: 1, delivered: 1, deferred: 0, failed: 0, expired: 0\n"
    assert handler.copies == Counter({"r0@example.com": 1})
