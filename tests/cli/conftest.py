"""The CLI configures structlog globally (it is the application): undo it after each test,
so a later test does not write to a stream CliRunner has closed. No test reads the
machine's ``SMTPRETRY_*`` settings or touches the user's own state directory. And
:func:`run`, which runs the installed ``smtpretry`` command in a process of its own, as a
user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.cli.commands import Smtpretry


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SMTPRETRY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def smtpretry(tmp_path: Path) -> Smtpretry:
    """The installed ``smtpretry`` command, run as a process in ``tmp_path``."""
    return Smtpretry(tmp_path)


# -- the installed command, as a user runs it --------------------------------------------------

SMTPRETRY = Path(sys.executable).with_name("smtpretry")
"""The console script pip installed beside this Python (``.venv/bin/smtpretry``)."""

# rich takes the output for a terminal (TTY_COMPATIBLE, rich >= 14): what a user at one sees.
TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": "200"}


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``smtpretry ARGS...`` in a process of its own; never a traceback."""
    assert SMTPRETRY.exists(), f"{SMTPRETRY}: install the package (make install-test)"
    done = subprocess.run(
        [str(SMTPRETRY), *args], input=input, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def plain(text: str) -> str:
    """``text`` without terminal escapes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
