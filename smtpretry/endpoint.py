"""Where and how to connect: :class:`TLSMode`, :class:`Endpoint`, :func:`is_loopback`.

Values only: nothing here opens a socket. The transport connects to an
endpoint; the configuration, the Mailer, the router and the smtplib facade
build endpoints without importing the transport.

An endpoint keeps two names apart: ``host`` is the name the server goes by (the
one its certificate must carry, and the one the log and the limits use), and
``address`` is where to connect (an IP address of an MX host, say). They are the
same unless ``address`` is given.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache

from .errors import ConfigError

__all__ = ["Endpoint", "TLSMode", "is_loopback", "local_hostname"]


class TLSMode(StrEnum):
    """How the connection is protected: ``starttls`` upgrades a plain
    connection (and refuses to go on if the server cannot), ``implicit`` speaks
    TLS from the first byte (port 465), ``none`` never encrypts.

    ``opportunistic`` (for MX hosts, RFC 7435) upgrades with STARTTLS whenever
    the server offers it, without verifying the certificate (unless a
    ``tls_context`` is given, which is then used as it is), and goes on in
    clear when the server offers no STARTTLS or the upgrade fails (a
    connection whose handshake failed is closed and opened again without
    TLS). It keeps a passive eavesdropper out, not an active attacker.

    .. versionadded:: 0.1
    .. versionchanged:: 0.5 ``opportunistic``
    """

    STARTTLS = "starttls"
    IMPLICIT = "implicit"
    NONE = "none"
    OPPORTUNISTIC = "opportunistic"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cache
def local_hostname() -> str:
    """This machine's fully qualified name for EHLO, or ``localhost``.

    Looked up once per process: ``socket.getfqdn()`` can take seconds when DNS
    is slow, and smtplib would repeat it on every connection.
    """
    name = socket.getfqdn()
    return name if name and "." in name else "localhost"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where and how to connect. The password is never shown in ``repr``.

    :param host: the server's name: verified against its certificate, and the
        name it has in the log and in the limits (``host:port``)
    :param address: where to connect, when not ``host`` itself (an MX host's
        IP address); the certificate is still checked against ``host``
    :raises ConfigError: for a bad port, TLS mode or timeout; for a username
        without a password (or the reverse); for AUTH over a plaintext
        connection to a host that is not on loopback, unless ``allow_plaintext_auth``.

    .. versionadded:: 0.1
    """

    host: str
    port: int
    tls: TLSMode = TLSMode.STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    local_hostname: str | None = None
    source_address: tuple[str, int] | None = None
    allow_plaintext_auth: bool = False
    pipelining: bool = True
    address: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise ConfigError(f"port: expected an integer 1..65535, got {self.port!r}")
        try:
            object.__setattr__(self, "tls", TLSMode(self.tls))
        except ValueError:
            raise ConfigError(
                f"tls: expected starttls, implicit, opportunistic or none, got {self.tls!r}"
            ) from None
        if self.timeout <= 0:
            raise ConfigError(f"timeout: expected seconds > 0, got {self.timeout!r}")
        if (self.username is None) != (self.password is None):
            raise ConfigError("username and password: give both or neither")
        if (
            self.username is not None
            and self.tls in (TLSMode.NONE, TLSMode.OPPORTUNISTIC)  # opportunistic may stay in clear
            and not is_loopback(self.connect_to)
            and not self.allow_plaintext_auth
        ):
            raise ConfigError(
                f"tls: refusing to send a password in clear to {self.host}; use tls='starttls' "
                "or 'implicit', or set allow_plaintext_auth=True"
            )

    @property
    def connect_to(self) -> str:
        """The address the connection goes to: ``address``, else ``host``."""
        return self.address if self.address is not None else self.host

    @property
    def destination(self) -> str:
        """The name a destination goes by in logs and limits: ``host:port``."""
        return f"{self.host}:{self.port}"
