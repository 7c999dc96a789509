"""Message bytes at rest: Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography``.

The project's rule is that message bodies never reach the queue in clear.
The key comes from the environment variable ``SMTPRETRY_QUEUE_KEY`` when it is
set, else from a key file beside the queue (``queue.key``), created with mode
0600 on first use. This is the only module that imports ``cryptography``; any
backend (SQLite, Redis) encrypts through :class:`MessageCipher`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..errors import QueueError

__all__ = ["KEY_ENV", "KEY_FILE", "MessageCipher", "generate_key"]

KEY_ENV = "SMTPRETRY_QUEUE_KEY"
KEY_FILE = "queue.key"


def generate_key() -> str:
    """A new key, as ``SMTPRETRY_QUEUE_KEY`` or ``queue.key`` hold it."""
    return Fernet.generate_key().decode("ascii")


class MessageCipher:
    """Encrypt and decrypt message bytes with one key."""

    def __init__(self, key: str | bytes, *, source: str) -> None:
        self.source = source
        try:
            self._fernet = Fernet(key.strip() if isinstance(key, (str, bytes)) else key)
        except (ValueError, TypeError):
            raise QueueError(
                f"{source}: not a queue key (expected 32 url-safe base64-encoded bytes)"
            ) from None

    @classmethod
    def for_directory(cls, directory: Path, *, create: bool = True) -> MessageCipher:
        """The key from ``SMTPRETRY_QUEUE_KEY``, else ``directory/queue.key``
        (created, mode 0600, when missing, unless ``create`` is false).

        :raises QueueError: a malformed key, or a key file that cannot be read or
            created (or is missing, without ``create``).
        """
        env = os.environ.get(KEY_ENV)
        if env:
            return cls(env, source=KEY_ENV)
        path = directory / KEY_FILE
        if not path.exists():
            if not create:
                raise QueueError(f"{path}: no queue key here, and {KEY_ENV} is not set")
            _create_key_file(path)
        try:
            key = path.read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise QueueError(f"{path}: cannot read the queue key: {exc}") from exc
        return cls(key, source=str(path))

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes, *, what: str) -> bytes:
        """:raises QueueError: the token was made with another key, or altered."""
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise QueueError(
                f"{what}: cannot decrypt the message with the key from {self.source} "
                "(another key, or the data was altered)"
            ) from None


def _create_key_file(path: Path) -> None:
    """Write a new key to a private temporary file, then link it into place:
    two processes starting at once end up with the same key, and nobody reads
    a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(generate_key() + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            os.link(tmp, path)
    except OSError as exc:
        raise QueueError(f"{path}: cannot create the queue key: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
