"""The private Postfix instance for ``tests/mta`` (see ``tests/mta/postfix.py``).

Without Postfix (or without root, which its master needs) the tests are skipped locally with the
reason, and FAIL in CI (``CI`` set): there the Makefile installs Postfix, so a missing one is a
broken setup, not a reason to pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.mta.postfix import PostfixInstance, postfix_problem


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixInstance]:
    problem = postfix_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the MTA tests cannot run: {problem}", pytrace=False)
        pytest.skip(problem)
    instance = PostfixInstance(connection_limit=2, size_limit=100_000)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
