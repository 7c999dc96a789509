"""A real authoritative DNS server on 127.0.0.1, for the tests of MX routing.

What this module owns: ``Zone`` (a table of answers: MX, A, AAAA, names that do not exist,
names that fail with SERVFAIL, names the server never answers), ``dns_server`` (dnslib's
``DNSServer`` on a free unprivileged UDP port of 127.0.0.1 in a thread, answering from a zone,
and counting the questions it got), and ``dns_config`` (the ``[dns]`` table that points a
resolver at it, so no test ever reads ``/etc/resolv.conf``).

Answers are authoritative (AA set). A name with records of other types only gets an empty
NOERROR answer (NODATA), which dnspython reports as ``NoAnswer``: the case of the implicit MX.
A name under no zone entry at all is NXDOMAIN. Names are compared lower-case, without the
final dot.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, MX, QTYPE, RCODE, RR, A, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSServer

__all__ = ["DNSServerHandle", "Zone", "dns_config", "dns_server"]


@dataclass
class Zone:
    """What the server answers. ``mx``: domain -> [(preference, exchange)] (``"."`` for a
    null MX); ``a``/``aaaa``: name -> addresses; ``servfail``: names answered with SERVFAIL;
    ``silent``: names never answered; ``ttl``: the TTL of every record."""

    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    ttl: int = 300

    def exists(self, name: str) -> bool:
        return name in self.mx or name in self.a or name in self.aaaa


class _Silence(DNSError):
    """Raised to send no reply at all (dnslib's handler drops the request)."""


class _QuietLogger:
    """dnslib logs every request to stdout by default; tests want none of it."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.questions: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        q = request.q
        name = str(q.qname).lower().rstrip(".")
        qtype = QTYPE[q.qtype]
        with self.lock:
            self.questions[(name, qtype)] += 1
        zone = self.zone
        if name in zone.silent:
            raise _Silence("silent name")
        reply = request.reply(aa=1, ra=0)
        if name in zone.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if not zone.exists(name):
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if qtype == "MX":
            for preference, exchange in zone.mx.get(name, []):
                reply.add_answer(RR(q.qname, QTYPE.MX, ttl=zone.ttl, rdata=MX(exchange, preference)))
        elif qtype == "A":
            for address in zone.a.get(name, []):
                reply.add_answer(RR(q.qname, QTYPE.A, ttl=zone.ttl, rdata=A(address)))
        elif qtype == "AAAA":
            for address in zone.aaaa.get(name, []):
                reply.add_answer(RR(q.qname, QTYPE.AAAA, ttl=zone.ttl, rdata=AAAA(address)))
        return reply


@dataclass
class DNSServerHandle:
    port: int
    zone: Zone
    resolver: _ZoneResolver

    def questions(self, name: str | None = None, qtype: str | None = None) -> int:
        """How many questions the server got (for ``name`` and/or ``qtype``)."""
        with self.resolver.lock:
            return sum(n for (qn, qt), n in self.resolver.questions.items()
                       if (name is None or qn == name) and (qtype is None or qt == qtype))


@contextlib.contextmanager
def dns_server(zone: Zone) -> Iterator[DNSServerHandle]:
    """``with dns_server(zone) as dns``: an authoritative server on 127.0.0.1:``dns.port``."""
    resolver = _ZoneResolver(zone)
    server = DNSServer(resolver, address="127.0.0.1", port=0, logger=_QuietLogger())
    port: int = server.server.server_address[1]
    # dnslib's start_thread() polls for shutdown every 0.5 s: poll faster, tests stop it often.
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield DNSServerHandle(port, zone, resolver)
    finally:
        server.stop()
        thread.join(5)
        server.server.server_close()


def dns_config(port: int, **extra: Any) -> dict[str, Any]:
    """The ``[dns]`` table for a server on 127.0.0.1:``port`` (short timeouts for tests)."""
    return {"nameservers": ["127.0.0.1"], "port": port, "timeout": "2s", **extra}
