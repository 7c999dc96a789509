"""MX resolution for direct delivery: RFC 5321 5.1 and RFC 7505, with caches.

What this module owns:

- pure values and functions: :class:`MXHost`, :class:`Resolution`,
  :func:`order_hosts` (preference order, equal preferences shuffled with an
  injected random source), :func:`candidates` (at most
  :data:`MAX_ADDRESSES` addresses per delivery), :func:`is_public`,
  :func:`settle` (what the DNS answers mean: the hosts to try, or the reply
  that ends the recipients' attempt) and :func:`for_route` (private
  addresses refused unless a route allows them);
- :class:`MXResolver`, the only code that talks to DNS (dnspython, the ``mx``
  extra, imported when a resolver is made): a TTL cache, a short negative
  cache, and one lookup in flight per domain.

Every DNS outcome that stops a delivery is a :class:`~smtpretry.Reply` of
phase ``resolution``, classified like any server reply (``classify.py``):

=============================================  ==============  ========
outcome                                        reply           action
=============================================  ==============  ========
null MX (``0 .``, RFC 7505)                     ``556 5.1.10``  fail
no such domain (NXDOMAIN)                       ``550 5.1.2``   fail (defer with ``nxdomain = "defer"``)
SERVFAIL, timeout, refused by the nameserver    ``451 4.4.3``   defer
no MX host has an address                       ``550 5.4.4``   fail (``451 4.4.3`` if a lookup was temporary)
only private addresses (not allowed)            ``550 5.4.4``   fail
=============================================  ==============  ========

.. versionadded:: 0.5
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .config import DNSSettings
from .errors import ConfigError
from .reply import Phase, Reply

__all__ = [
    "MAX_ADDRESSES",
    "Lookup",
    "MXHost",
    "MXResolver",
    "Resolution",
    "candidates",
    "for_route",
    "is_public",
    "order_hosts",
    "settle",
]

MAX_ADDRESSES = 5
"""Addresses tried per delivery at most, over all MX hosts (Postfix's
``smtp_mx_address_limit``): a domain with twenty MX records is not a reason
to open twenty connections for one message."""


class Lookup(StrEnum):
    """How one DNS query ended."""

    OK = "ok"
    NXDOMAIN = "nxdomain"    # the name does not exist
    NO_ANSWER = "no_answer"  # the name exists, without records of this type
    TEMPORARY = "temporary"  # SERVFAIL, REFUSED, no answer in time: ask again later


@dataclass(frozen=True, slots=True)
class MXHost:
    """One MX host: its name, its preference (lower first) and its addresses
    (IPv4 first, then IPv6)."""

    name: str
    preference: int
    addresses: tuple[str, ...] = ()
    temporary: bool = False
    """Its address lookup failed for now (it may have addresses after all)."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where a domain's mail goes: its MX hosts in preference order (equal
    preferences as DNS gave them: :func:`order_hosts` shuffles them per
    delivery), or ``failure``, the reply that ends its recipients' attempt.

    ``implicit``: the domain has no MX records and is its own MX host (RFC
    5321 5.1). ``ttl_s``: how long the answer may be kept. ``from_cache``:
    this answer came from the cache (or from a lookup already under way).
    """

    domain: str
    hosts: tuple[MXHost, ...] = ()
    failure: Reply | None = None
    implicit: bool = False
    ttl_s: float = 0.0
    from_cache: bool = False

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)


def _reply(code: int, text: str) -> Reply:
    return Reply.build(code, text, Phase.RESOLUTION)


def null_mx(domain: str) -> Reply:
    return _reply(556, f"5.1.10 {domain} accepts no mail (null MX, RFC 7505)")


def no_such_domain(domain: str) -> Reply:
    return _reply(550, f"5.1.2 {domain}: no such domain (NXDOMAIN)")


def temporary(domain: str, detail: str) -> Reply:
    return _reply(451, f"4.4.3 {domain}: temporary DNS failure ({detail})")


def unroutable(domain: str, detail: str) -> Reply:
    return _reply(550, f"5.4.4 {domain}: {detail}")


def order_hosts(hosts: Iterable[MXHost], rng: random.Random) -> tuple[MXHost, ...]:
    """MX hosts by preference, lowest first; hosts of equal preference in
    random order (RFC 5321 5.1: "randomize them to spread the load")."""
    by_preference: dict[int, list[MXHost]] = {}
    for host in hosts:
        by_preference.setdefault(host.preference, []).append(host)
    ordered: list[MXHost] = []
    for preference in sorted(by_preference):
        group = by_preference[preference]
        rng.shuffle(group)
        ordered.extend(group)
    return tuple(ordered)


def candidates(hosts: Iterable[MXHost], limit: int = MAX_ADDRESSES) -> list[tuple[MXHost, str]]:
    """The (host, address) pairs to try, in order, at most ``limit``."""
    out: list[tuple[MXHost, str]] = []
    for host in hosts:
        for address in host.addresses:
            if len(out) == limit:
                return out
            out.append((host, address))
    return out


def is_public(address: str) -> bool:
    """Whether an MX address may be connected to by default: a global unicast
    address, not loopback, private (RFC 1918, ULA), link-local, shared
    (100.64/10), unspecified, reserved or multicast. An MX record pointing
    inside the sender's own network is a classic way to reach what only
    trusted hosts should."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


def settle(
    domain: str,
    mx: Lookup,
    records: Sequence[tuple[int, str]] = (),
    addresses: Mapping[str, tuple[tuple[str, ...], bool]] | None = None,
    *,
    ttl_s: float = 0.0,
) -> Resolution:
    """What the DNS answers mean for ``domain`` (pure).

    ``mx`` is how the MX query ended and ``records`` its (preference,
    exchange) pairs; ``addresses`` maps each host name to looked up (its
    addresses, whether a lookup was temporary). The domain itself stands for
    the implicit MX when the MX query found no records.
    """
    addresses = addresses or {}
    if mx is Lookup.NXDOMAIN:
        return Resolution(domain, failure=no_such_domain(domain))
    if mx is Lookup.TEMPORARY:
        return Resolution(domain, failure=temporary(domain, "MX lookup"))
    exchanges = [(p, n.lower().rstrip(".")) for p, n in records]
    implicit = mx is Lookup.NO_ANSWER or not exchanges
    if implicit:
        exchanges = [(0, domain)]
    elif all(n == "" for _, n in exchanges):
        # RFC 7505 3: "0 ." alone says the domain takes no mail. A "." among other
        # records is a broken zone; the real hosts are used.
        return Resolution(domain, failure=null_mx(domain), ttl_s=ttl_s)
    hosts: list[MXHost] = []
    seen: set[str] = set()
    for preference, name in sorted(exchanges, key=lambda e: e[0]):
        if name == "" or name in seen:
            continue
        seen.add(name)
        found, was_temporary = addresses.get(name, ((), False))
        hosts.append(MXHost(name, preference, tuple(found), was_temporary))
    resolution = Resolution(domain, tuple(hosts), implicit=implicit, ttl_s=ttl_s)
    if not any(h.addresses for h in hosts):
        if any(h.temporary for h in hosts):
            return dataclasses.replace(resolution, failure=temporary(domain, "address lookup"))
        what = f"{domain} has no MX records and no address" if implicit else "no MX host has an address"
        return dataclasses.replace(resolution, failure=unroutable(domain, what))
    return resolution


def for_route(resolution: Resolution, *, allow_private: bool) -> Resolution:
    """``resolution`` without the addresses a route may not connect to: those
    that are not public, unless ``allow_private`` (pure). Refused as private
    when no address is left."""
    if resolution.failure is not None or allow_private:
        return resolution
    hosts = tuple(dataclasses.replace(h, addresses=tuple(a for a in h.addresses if is_public(a)))
                  for h in resolution.hosts)
    if any(h.addresses for h in hosts):
        return dataclasses.replace(resolution, hosts=hosts)
    return dataclasses.replace(resolution, hosts=hosts, failure=unroutable(
        resolution.domain, "MX address refused: loopback, private or unspecified network "
        "(allow_private_mx = true allows it)",
    ))


def _literal(domain: str) -> str | None:
    """The address of an address literal domain (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``)."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


class MXResolver:
    """Asynchronous MX resolution with dnspython, cached.

    Answers are kept for their TTL (the least TTL of the MX and address
    records), failures for ``negative_ttl``; while a domain is being looked
    up, other sends for it wait for that lookup instead of starting their
    own. ``nameservers`` empty: the system's resolver configuration. The
    whole lookup of one domain (MX, then the hosts' addresses) takes at most
    ``timeout`` seconds.

    :raises ConfigError: dnspython is not installed (the ``mx`` extra).

    .. versionadded:: 0.5
    """

    def __init__(self, settings: DNSSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            import dns.asyncresolver
        except ImportError:
            raise ConfigError(
                "routes: direct MX delivery (via = \"mx\") needs dnspython: "
                "pip install 'smtpretry[mx]'"
            ) from None
        self.settings = settings if settings is not None else DNSSettings()
        self._clock = clock
        resolver = dns.asyncresolver.Resolver(configure=not self.settings.nameservers)
        if self.settings.nameservers:
            resolver.nameservers = list(self.settings.nameservers)
            resolver.port = self.settings.port
        resolver.timeout = self.settings.timeout
        resolver.lifetime = self.settings.timeout
        self._resolver: Any = resolver
        self._cache: dict[str, tuple[float, Resolution]] = {}
        self._flights: dict[str, asyncio.Task[Resolution]] = {}
        self.queries = 0
        """DNS queries sent so far (each MX, A or AAAA question counts once)."""

    async def resolve(self, domain: str) -> Resolution:
        """The :class:`Resolution` of ``domain`` (already lower-case and IDNA-encoded)."""
        hit = self._cache.get(domain)
        if hit is not None and hit[0] > self._clock():
            return dataclasses.replace(hit[1], from_cache=True)
        flight = self._flights.get(domain)
        joined = flight is not None
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._lookup(domain))
            self._flights[domain] = flight
            flight.add_done_callback(lambda _t: self._flights.pop(domain, None))
        # Shielded: a send cancelled while waiting must not cancel the lookup the others wait for.
        resolution = await asyncio.shield(flight)
        return dataclasses.replace(resolution, from_cache=True) if joined else resolution

    def forget(self, domain: str | None = None) -> None:
        """Drop the cached answer of ``domain`` (of every domain for None)."""
        if domain is None:
            self._cache.clear()
        else:
            self._cache.pop(domain, None)

    async def _lookup(self, domain: str) -> Resolution:
        try:
            async with asyncio.timeout(self.settings.timeout):
                resolution = await self._query_domain(domain)
        except TimeoutError:
            resolution = Resolution(domain, failure=temporary(domain, "no answer in time"))
        negative = resolution.failure is not None and resolution.failure.code != 556
        keep = self.settings.negative_ttl if negative else resolution.ttl_s
        if keep > 0:
            self._cache[domain] = (self._clock() + keep, resolution)
        return resolution

    async def _query_domain(self, domain: str) -> Resolution:
        literal = _literal(domain)
        if literal is not None:
            return Resolution(domain, (MXHost(domain, 0, (literal,)),), implicit=True)
        mx, answer = await self._query(domain, "MX")
        ttls: list[float] = []
        records: list[tuple[int, str]] = []
        if answer is not None:
            ttls.append(answer.rrset.ttl)
            records = [(int(r.preference), r.exchange.to_text(omit_final_dot=True)) for r in answer]
            if records and all(n in ("", ".") for _, n in records):
                return settle(domain, mx, [(p, "") for p, _ in records], ttl_s=float(answer.rrset.ttl))
        if mx in (Lookup.NXDOMAIN, Lookup.TEMPORARY):
            return settle(domain, mx)
        names = [n.lower() for _, n in records if n not in ("", ".")] or [domain]
        looked = await asyncio.gather(*(self._addresses(n) for n in dict.fromkeys(names)))
        addresses: dict[str, tuple[tuple[str, ...], bool]] = {}
        for name, (found, was_temporary, host_ttls) in zip(dict.fromkeys(names), looked, strict=True):
            addresses[name] = (found, was_temporary)
            ttls.extend(host_ttls)
        if mx is Lookup.OK and not records:
            mx = Lookup.NO_ANSWER
        return settle(domain, mx, records, addresses, ttl_s=float(min(ttls)) if ttls else 0.0)

    async def _addresses(self, name: str) -> tuple[tuple[str, ...], bool, list[float]]:
        """A host's IPv4 then IPv6 addresses, whether a lookup was temporary, the TTLs."""
        (a, a_answer), (aaaa, aaaa_answer) = await asyncio.gather(
            self._query(name, "A"), self._query(name, "AAAA")
        )
        found: list[str] = []
        ttls: list[float] = []
        for answer in (a_answer, aaaa_answer):
            if answer is not None:
                ttls.append(answer.rrset.ttl)
                found.extend(r.address for r in answer)
        return tuple(found), Lookup.TEMPORARY in (a, aaaa), ttls

    async def _query(self, name: str, rdtype: str) -> tuple[Lookup, Any]:
        import dns.exception
        import dns.resolver

        self.queries += 1
        try:
            answer = await self._resolver.resolve(name + ".", rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return Lookup.NXDOMAIN, None
        except dns.resolver.NoAnswer:
            return Lookup.NO_ANSWER, None
        except dns.exception.DNSException:
            # SERVFAIL or REFUSED from every nameserver (NoNameservers), a timeout
            # (LifetimeTimeout), a malformed answer: nothing to conclude from.
            return Lookup.TEMPORARY, None
        return Lookup.OK, answer
