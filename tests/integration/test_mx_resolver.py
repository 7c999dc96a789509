"""MXResolver against a real authoritative DNS server on 127.0.0.1: what it caches, for how
long, and that one lookup is in flight per domain. The questions are counted at the server."""

from __future__ import annotations

import asyncio
import sys

import pytest

from smtpretry import ConfigError, Router
from smtpretry.config import DNSSettings, parse_config
from smtpretry.mx import MXResolver
from tests.dns_server import Zone, dns_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ZONE = Zone(mx={"a.test": [(10, "mx.a.test")]}, a={"mx.a.test": ["192.0.2.1"]},
            servfail={"sf.test"}, ttl=60)


def settings(port: int, **kw: float) -> DNSSettings:
    return DNSSettings(nameservers=("127.0.0.1",), port=port, timeout=2.0, **kw)


async def test_answers_are_cached_for_their_ttl() -> None:
    clock = Clock()
    with dns_server(ZONE) as dns:
        resolver = MXResolver(settings(dns.port), clock=clock)
        first = await resolver.resolve("a.test")
        second = await resolver.resolve("a.test")
        assert (first.from_cache, second.from_cache) == (False, True)
        assert second.hosts == first.hosts and first.ttl_s == 60
        assert dns.questions("a.test", "MX") == 1 and dns.questions("mx.a.test", "A") == 1
        clock.now += 61
        third = await resolver.resolve("a.test")
        assert third.from_cache is False and dns.questions("a.test", "MX") == 2


async def test_failures_are_cached_for_the_negative_ttl() -> None:
    clock = Clock()
    with dns_server(ZONE) as dns:
        resolver = MXResolver(settings(dns.port, negative_ttl=30.0), clock=clock)
        for _ in range(3):
            assert (await resolver.resolve("sf.test")).failure is not None
        asked = dns.questions("sf.test", "MX")
        assert asked >= 1  # dnspython may ask again within one lookup on SERVFAIL
        clock.now += 31
        await resolver.resolve("sf.test")
        assert dns.questions("sf.test", "MX") > asked


async def test_one_lookup_in_flight_per_domain() -> None:
    with dns_server(ZONE) as dns:
        resolver = MXResolver(settings(dns.port))
        answers = await asyncio.gather(*(resolver.resolve("a.test") for _ in range(20)))
        assert dns.questions("a.test", "MX") == 1
        assert len({a.hosts for a in answers}) == 1
        assert [a.from_cache for a in answers].count(False) == 1
        assert resolver.queries == 3  # MX, then A and AAAA of its one host


async def test_a_cancelled_waiter_does_not_cancel_the_lookup_others_wait_for() -> None:
    zone = Zone(mx={"a.test": [(10, "mx.a.test")]}, a={"mx.a.test": ["192.0.2.1"]})
    with dns_server(zone) as dns:
        resolver = MXResolver(settings(dns.port))
        first = asyncio.ensure_future(resolver.resolve("a.test"))
        second = asyncio.ensure_future(resolver.resolve("a.test"))
        await asyncio.sleep(0)
        first.cancel()
        got = await second
        assert got.failure is None and got.host_names == ("mx.a.test",)


def test_an_mx_route_without_dnspython_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "dns.asyncresolver", None)  # as if dnspython were not installed
    cfg = parse_config({"helo_name": "mail.example.org", "routes": {"default": {"via": "mx"}}})
    with pytest.raises(ConfigError, match=r"pip install 'smtpretry\[mx\]'"):
        Router(cfg)
