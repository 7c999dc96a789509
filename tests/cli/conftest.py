"""The CLI configures structlog globally (it is the application): undo it after each test,
so a later test does not write to a stream CliRunner has closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
