"""Shared fixtures. Async tests opt in with ``pytestmark = pytest.mark.asyncio``."""

from __future__ import annotations

import ssl

import pytest
import trustme

from tests.servers import make_tls

pytest_plugins = (
    "pytester",  # runs a pytest session inside a test (tests/unit/test_schema.py)
    "tests.redis_server",  # redis_server / redis_url fixtures, for the Redis backend
    "tests.schema_check",  # every event the suite emits follows the schema
)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway certificate authority for the whole run."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_pair(tls_ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for "localhost"/"127.0.0.1", signed by ``tls_ca``."""
    return make_tls(tls_ca)
