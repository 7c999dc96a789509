"""The CLI configures structlog globally (it is the application): undo it after each test,
so a later test does not write to a stream CliRunner has closed. No test reads the
machine's ``SMTPRETRY_*`` settings or touches the user's own state directory."""

from __future__ import annotations

import os
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
