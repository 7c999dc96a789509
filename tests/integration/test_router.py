"""Routing by recipient domain, through a real DNS server and real SMTP servers on loopback.

A dnslib authoritative server on 127.0.0.1 (``tests/dns_server.py``) answers the MX, A and
AAAA questions; the MX hosts are aiosmtpd servers on 127.0.0.2 and 127.0.0.3 sharing one port
(MX records carry no port: the route's ``mx_port`` names it), so the configuration allows
private MX addresses. Assertions are made at the servers (copies per recipient, sessions
open at once) and on the decision log.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from structlog.testing import capture_logs

from smtpretry import Router, Status
from smtpretry.config import Config, parse_config
from tests.dns_server import Zone, dns_config, dns_server
from tests.servers import ScriptedHandler, serve

MX1, MX2 = "127.0.0.2", "127.0.0.3"
FAST = {"backoff_base": 0.001, "backoff_cap": 0.01, "max_attempts": 8}


def message(*to: str, mid: str = "<m@test>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "app@example.org"
    msg["To"] = ", ".join(to)
    msg["Message-ID"] = mid
    msg["Subject"] = "routed"
    msg.set_content("hello")
    return msg


@contextlib.asynccontextmanager
async def mx_pair(first: Any, second: Any, **kw: Any) -> AsyncIterator[int]:
    """Two SMTP servers, on 127.0.0.2 and 127.0.0.3, on one shared port."""
    for _ in range(20):
        async with serve(first, host=MX1, **kw) as port:
            try:
                cm = serve(second, host=MX2, port=port, **kw)
                await cm.__aenter__()
            except OSError:  # that port is taken on 127.0.0.3: another one
                continue
            try:
                yield port
            finally:
                await cm.__aexit__(None, None, None)
            return
    raise RuntimeError("no port free on both 127.0.0.2 and 127.0.0.3")


def config(dns_port: int, mx_port: int, *, routes: dict[str, Any] | None = None,
           dns: dict[str, Any] | None = None, **top: Any) -> Config:
    data: dict[str, Any] = {
        "helo_name": "client.example.org",
        "defaults": {"retry": FAST, **top.pop("defaults", {})},
        "dns": dns_config(dns_port, **(dns or {})),
        "routes": routes or {"default": {"via": "mx", "mx_port": mx_port, "allow_private_mx": True}},
        **top,
    }
    return parse_config(data)


def events_named(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == f"smtpretry.{name}"]


async def test_two_preferences_fall_back_to_the_second_on_a_421_greeting() -> None:
    first = ScriptedHandler(greeting=["421 4.3.2 Service shutting down, closing channel"])
    second = ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx1.a.test"), (20, "mx2.a.test")]},
                a={"mx1.a.test": [MX1], "mx2.a.test": [MX2]})
    with dns_server(zone) as dns:
        async with mx_pair(first, second) as port:
            with capture_logs() as logs:
                async with Router(config(dns.port, port)) as router:
                    result = await router.send(message("ann@a.test", "bob@a.test"))
    assert result.delivered == ["ann@a.test", "bob@a.test"]
    assert first.copies == {} and dict(second.copies) == {"ann@a.test": 1, "bob@a.test": 1}
    [skipped] = events_named(logs, "mx_skipped")
    assert (skipped["host"], skipped["address"], skipped["reason"], skipped["code"]) == (
        "mx1.a.test", MX1, "greeting", 421)
    [resolved] = events_named(logs, "route_resolved")
    assert resolved["mx_hosts"] == ["mx1.a.test", "mx2.a.test"]
    assert resolved["limit_key"] == "mx1.a.test,mx2.a.test" and resolved["from_cache"] is False


async def test_a_refused_connection_moves_to_the_next_mx_and_a_throttle_does_not() -> None:
    # mx1 has no server at all (refused); mx2 throttles once, then takes the message.
    second = ScriptedHandler(greeting=["421 4.7.0 Too many connections from your IP, slow down"])
    zone = Zone(mx={"a.test": [(10, "mx1.a.test"), (20, "mx2.a.test")]},
                a={"mx1.a.test": ["127.0.0.4"], "mx2.a.test": [MX2]})
    with dns_server(zone) as dns:
        async with serve(second, host=MX2) as port:
            with capture_logs() as logs:
                async with Router(config(dns.port, port)) as router:
                    result = await router.send(message("ann@a.test"))
    assert result.delivered == ["ann@a.test"] and second.copies == {"ann@a.test": 1}
    skipped = events_named(logs, "mx_skipped")
    assert [(e["host"], e["reason"]) for e in skipped] == [("mx1.a.test", "refused")]
    # The throttling greeting was the engine's to act on: a retry, the provider's cap lowered.
    [retry] = events_named(logs, "retry_scheduled")
    assert retry["category"] == "throttled" and retry["destination"] == "mx1.a.test,mx2.a.test"
    [lowered] = events_named(logs, "cap_lowered")
    assert (lowered["destination"], lowered["previous_cap"], lowered["connections_cap"]) == (
        "mx1.a.test,mx2.a.test", 10, 5)


async def test_equal_preferences_are_used_in_varying_order() -> None:
    first, second = ScriptedHandler(), ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx1.a.test"), (10, "mx2.a.test")]},
                a={"mx1.a.test": [MX1], "mx2.a.test": [MX2]})
    with dns_server(zone) as dns:
        async with mx_pair(first, second) as port:
            # A new connection per message, so each delivery picks its first host anew.
            cfg = config(dns.port, port, defaults={"max_messages_per_connection": 1})
            async with Router(cfg, rng=random.Random(7)) as router:
                for i in range(16):
                    result = await router.send(message(f"u{i}@a.test", mid=f"<{i}@t>"))
                    assert result.ok
            questions = dns.questions("a.test", "MX")
    assert len(first.received) + len(second.received) == 16
    assert len(first.received) >= 3 and len(second.received) >= 3
    assert questions == 1  # the answer is cached for its TTL


async def test_null_mx_fails_at_once_without_a_connection() -> None:
    server = ScriptedHandler()
    zone = Zone(mx={"null.test": [(0, ".")]})
    with dns_server(zone) as dns, capture_logs() as logs:
        async with serve(server, host=MX1) as port, Router(config(dns.port, port)) as router:
            result = await router.send(message("ann@null.test"))
    outcome = result.failed["ann@null.test"]
    assert (outcome.code, str(outcome.enhanced), outcome.reply and outcome.reply.phase.value) == (
        556, "5.1.10", "resolution")
    assert outcome.classification.reason == "resolution: null MX"
    assert server.commands == []
    [failed] = events_named(logs, "recipient_failed")
    assert (failed["phase"], failed["code"], failed["action"]) == ("resolution", 556, "fail")


async def test_a_domain_with_only_an_a_record_is_its_own_mx() -> None:
    server = ScriptedHandler()
    zone = Zone(mx={"aonly.test": []}, a={"aonly.test": [MX1]})
    with dns_server(zone) as dns:
        async with serve(server, host=MX1) as port:
            with capture_logs() as logs:
                async with Router(config(dns.port, port)) as router:
                    result = await router.send(message("ann@aonly.test"))
    assert result.ok and server.copies == {"ann@aonly.test": 1}
    [resolved] = events_named(logs, "route_resolved")
    assert resolved["mx_hosts"] == ["aonly.test"] and resolved["limit_key"] == "aonly.test"


@pytest.mark.parametrize("nxdomain, status", [("fail", Status.FAILED), ("defer", Status.DEFERRED)])
async def test_a_domain_that_does_not_exist_fails_or_defers_by_setting(nxdomain: str, status: Status) -> None:
    with dns_server(Zone()) as dns:
        async with Router(config(dns.port, 2525, dns={"nxdomain": nxdomain})) as router:
            result = await router.send(message("ann@nowhere.test"))
    outcome = result.outcomes["ann@nowhere.test"]
    assert outcome.status is status
    assert (outcome.code, str(outcome.enhanced)) == (550, "5.1.2")


@pytest.mark.parametrize("trouble", ["servfail", "silent"])
async def test_a_temporary_dns_failure_defers_and_never_fails(trouble: str) -> None:
    zone = Zone(servfail={"flaky.test"} if trouble == "servfail" else set(),
                silent={"flaky.test"} if trouble == "silent" else set())
    with dns_server(zone) as dns:
        cfg = config(dns.port, 2525, dns={"timeout": "500ms"})
        async with Router(cfg) as router:
            result = await router.send(message("ann@flaky.test"))
    outcome = result.deferred["ann@flaky.test"]
    assert (outcome.code, str(outcome.enhanced)) == (451, "4.4.3")
    assert outcome.classification.reason == "resolution: temporary DNS failure"
    assert outcome.next_attempt_at is not None


async def test_mx_hosts_none_of_which_resolves_fail_unless_a_lookup_was_temporary() -> None:
    zone = Zone(mx={"gone.test": [(10, "mx.gone.test")], "half.test": [(10, "mx.half.test")]},
                servfail={"mx.half.test"})
    with dns_server(zone) as dns:
        async with Router(config(dns.port, 2525)) as router:
            result = await router.send(message("ann@gone.test", "bob@half.test"))
    assert (result.failed["ann@gone.test"].code, str(result.failed["ann@gone.test"].enhanced)) == (
        550, "5.4.4")
    assert (result.deferred["bob@half.test"].code, str(result.deferred["bob@half.test"].enhanced)) == (
        451, "4.4.3")


async def test_mx_addresses_on_loopback_are_refused_unless_allowed() -> None:
    server = ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx1.a.test")]}, a={"mx1.a.test": [MX1]})
    with dns_server(zone) as dns:
        async with serve(server, host=MX1) as port:
            routes = {"default": {"via": "mx", "mx_port": port}}
            async with Router(config(dns.port, port, routes=routes)) as router:
                result = await router.send(message("ann@a.test"))
    outcome = result.failed["ann@a.test"]
    assert (outcome.code, str(outcome.enhanced)) == (550, "5.4.4") and "private" in outcome.text
    assert server.commands == []


async def test_two_domains_on_one_providers_mx_set_hold_one_cap_at_the_servers() -> None:
    # One handler behind both addresses: its session count is the provider's.
    provider = ScriptedHandler()
    mx = [(10, "mx1.p.test"), (10, "mx2.p.test")]
    zone = Zone(mx={"one.test": mx, "two.test": list(reversed(mx))},
                a={"mx1.p.test": [MX1], "mx2.p.test": [MX2]})

    class Slow(ScriptedHandler):
        async def handle_DATA(self, *args: Any) -> str:
            await asyncio.sleep(0.01)
            return await super().handle_DATA(*args)

    provider = Slow()
    with dns_server(zone) as dns:
        async with mx_pair(provider, provider) as port:
            cfg = config(dns.port, port, defaults={"max_connections": 2})
            with capture_logs() as logs:
                async with Router(cfg, rng=random.Random(3)) as router:
                    results = await asyncio.gather(*(
                        router.send(message(f"u{i}@one.test", f"u{i}@two.test", mid=f"<{i}@t>"))
                        for i in range(24)
                    ))
    assert all(r.ok for r in results)
    assert provider.max_active == 2  # the cap was reached, and never passed, over both hosts
    assert provider.sessions_refused == 0
    assert set(provider.copies.values()) == {1} and len(provider.copies) == 48
    keys = {e["limit_key"] for e in events_named(logs, "route_resolved")}
    assert keys == {"mx1.p.test,mx2.p.test"}


async def test_an_mx_rule_gathers_every_domain_whose_hosts_all_match_it() -> None:
    provider, other = ScriptedHandler(), ScriptedHandler()
    zone = Zone(mx={"one.test": [(10, "mx1.p.test")], "mixed.test": [(10, "mx1.p.test"), (20, "mx.q.test")]},
                a={"mx1.p.test": [MX1], "mx.q.test": [MX2]})
    with dns_server(zone) as dns:
        async with mx_pair(provider, other) as port:
            cfg = config(dns.port, port, destinations={"mx:.p.test": {"max_connections": 1}})
            with capture_logs() as logs:
                async with Router(cfg) as router:
                    result = await router.send(message("ann@one.test", "bob@mixed.test"))
    assert result.ok
    keys = {e["domain"]: e["limit_key"] for e in events_named(logs, "route_resolved")}
    assert keys == {"one.test": "mx:.p.test", "mixed.test": "mx.q.test,mx1.p.test"}


async def test_one_message_to_three_domains_gives_one_result_and_one_copy_each(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a.test and b.test are on provider P (127.0.0.2), c.test on provider Q (127.0.0.3);
    # corp.test goes through a smarthost profile on 127.0.0.1.
    p, q = ScriptedHandler(rcpt={"gone@b.test": ["550 5.1.1 User unknown"]}), ScriptedHandler()
    relay = ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx.p.test")], "b.test": [(10, "mx.p.test")],
                    "c.test": [(10, "mx.q.test")]},
                a={"mx.p.test": [MX1], "mx.q.test": [MX2]})
    to = ["ann@A.test", "bob@b.test", "gone@b.test", "cat@c.test", "dan@corp.test", "eve@a.test"]
    with dns_server(zone) as dns:
        async with mx_pair(p, q) as port, serve(relay) as relay_port:
            routes = {
                "default": {"via": "mx", "mx_port": port, "allow_private_mx": True},
                "domain:corp.test": {"via": "profile:relay"},
            }
            profiles = {"relay": {"host": "127.0.0.1", "port": relay_port, "tls": "none"}}
            cfg = config(dns.port, port, routes=routes, profiles=profiles)
            with capture_logs() as logs:
                async with Router(cfg) as router:
                    result = await router.send(message(*to))
    assert list(result.outcomes) == to
    assert result.delivered == ["ann@A.test", "bob@b.test", "cat@c.test", "dan@corp.test", "eve@a.test"]
    assert result.failed["gone@b.test"].code == 550
    assert dict(p.copies) == {"ann@A.test": 1, "eve@a.test": 1, "bob@b.test": 1}
    assert dict(q.copies) == {"cat@c.test": 1} and dict(relay.copies) == {"dan@corp.test": 1}
    routes_seen = {e["domain"]: (e["route"], e["limit_key"]) for e in events_named(logs, "route_resolved")}
    assert routes_seen == {
        "a.test": ("default", "mx.p.test"), "b.test": ("default", "mx.p.test"),
        "c.test": ("default", "mx.q.test"), "corp.test": ("domain:corp.test", f"127.0.0.1:{relay_port}"),
    }


async def test_opportunistic_tls_encrypts_when_offered_without_verifying(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls_pair  # a certificate for "localhost" from a CA the client does not trust
    handler = ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx1.a.test")]}, a={"mx1.a.test": [MX1]})
    with dns_server(zone) as dns:
        async with serve(handler, host=MX1, starttls_context=server_ctx) as port:
            async with Router(config(dns.port, port)) as router:
                result = await router.send(message("ann@a.test"))
    assert result.ok and handler.copies == {"ann@a.test": 1}
    assert ("STARTTLS", "") in handler.commands


async def test_required_tls_verifies_the_mx_certificate(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls_pair
    handler = ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx1.a.test")]}, a={"mx1.a.test": [MX1]})
    with dns_server(zone) as dns:
        async with serve(handler, host=MX1, starttls_context=server_ctx) as port:
            routes = {"default": {"via": "mx", "mx_port": port, "allow_private_mx": True, "tls": "required"}}
            async with Router(config(dns.port, port, routes=routes)) as router:
                result = await router.send(message("ann@a.test"))
    outcome = result.failed["ann@a.test"]
    assert outcome.failure is not None and outcome.failure.kind.value == "tls"
    assert handler.copies == {}


async def test_opportunistic_tls_goes_on_in_clear_when_the_handshake_fails(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # The server offers STARTTLS with a context that has no certificate at all: every
    # handshake breaks, so the client reconnects without STARTTLS.
    broken = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    handler = ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx1.a.test")]}, a={"mx1.a.test": [MX1]})
    with dns_server(zone) as dns:
        async with serve(handler, host=MX1, starttls_context=broken) as port:
            async with Router(config(dns.port, port)) as router:
                result = await router.send(message("ann@a.test"))
    assert result.ok and handler.copies == {"ann@a.test": 1}
    starttls = [c for c, _ in handler.commands if c == "STARTTLS"]
    ehlo = [c for c, _ in handler.commands if c == "EHLO"]
    assert (len(starttls), len(ehlo)) == (1, 2)  # one broken upgrade, then a session in clear


async def test_deferred_recipients_of_profile_routes_are_queued_one_entry_per_destination(
    tmp_path: Any,
) -> None:
    relay_a = ScriptedHandler(rcpt=["450 4.2.0 Greylisted, please try again later"])
    relay_b = ScriptedHandler(rcpt=["450 4.2.0 Greylisted, please try again later"])
    async with serve(relay_a) as port_a, serve(relay_b) as port_b:
        cfg = parse_config({
            "defaults": {"retry": FAST},
            "profiles": {"a": {"host": "127.0.0.1", "port": port_a, "tls": "none"},
                         "b": {"host": "127.0.0.1", "port": port_b, "tls": "none"}},
            "routes": {"domain:a.test": {"via": "profile:a"}, "default": {"via": "profile:b"}},
        })
        async with Router(cfg, queue=f"sqlite:///{tmp_path}/q.db") as router:
            result = await router.send(message("ann@a.test", "bob@b.test"))
            assert router.queue is not None
            entries = await router.queue.entries()
    assert set(result.deferred) == {"ann@a.test", "bob@b.test"}
    assert len(result.queue_ids) == 2 and result.queue_id == result.queue_ids[0]
    assert {e.id for e in entries} == set(result.queue_ids)
    assert {(e.destination.profile, e.recipients[0].address) for e in entries} == {
        ("a", "ann@a.test"), ("b", "bob@b.test")}


async def test_a_domain_no_route_matches_fails_its_recipients_and_the_others_go() -> None:
    relay = ScriptedHandler()
    async with serve(relay) as port:
        cfg = parse_config({"defaults": {"retry": FAST},
                            "profiles": {"r": {"host": "127.0.0.1", "port": port, "tls": "none"}},
                            "routes": {"domain:a.test": {"via": "profile:r"}}})
        async with Router(cfg) as router:
            result = await router.send(message("ann@a.test", "bob@elsewhere.test"))
    assert result.delivered == ["ann@a.test"]
    assert result.failed["bob@elsewhere.test"].code == 550
    assert "no route" in result.failed["bob@elsewhere.test"].text


def test_a_router_needs_routes() -> None:
    from smtpretry import ConfigError

    with pytest.raises(ConfigError, match=r"routes: the Router needs a \[routes\] table"):
        Router(parse_config({}))


async def test_plan_tells_the_route_the_mx_hosts_and_the_limit_key_of_a_domain() -> None:
    zone = Zone(mx={"a.test": [(20, "mx2.p.test"), (10, "mx1.p.test")], "null.test": [(0, ".")]},
                a={"mx1.p.test": [MX1], "mx2.p.test": [MX2]})
    with dns_server(zone) as dns:
        cfg = config(dns.port, 2525, destinations={"mx:.p.test": {"max_connections": 7}},
                     profiles={"r": {"host": "relay.test", "port": 587}},
                     routes={"default": {"via": "mx", "allow_private_mx": True},
                             "domain:corp.test": {"via": "profile:r"}})
        async with Router(cfg) as router:
            mx = await router.plan("A.test")
            cached = await router.plan("a.test")
            null = await router.plan("null.test")
            relay = await router.plan("corp.test")
    assert mx.route is not None and mx.route.key == "default"
    assert [h.name for h in mx.mx_hosts] == ["mx1.p.test", "mx2.p.test"]
    assert (mx.limit_key, mx.settings and mx.settings.limits.max_connections) == ("mx:.p.test", 7)
    assert (mx.from_cache, cached.from_cache) == (False, True)
    assert null.failure is not None and null.failure.code == 556 and null.limit_key is None
    assert (relay.limit_key, relay.mx_hosts) == ("relay.test:587", ())


class Clock:
    """The wall clock, moved on by hand: queued recipients come due without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_an_mx_routes_deferral_is_queued_by_route_and_resent_with_mx_resolved_again(
    tmp_path: Any,
) -> None:
    # First the domain's nameserver fails (SERVFAIL): deferred, queued by route and domain.
    # Then the zone is fixed: the runner looks the MX hosts up again and delivers there.
    url = f"sqlite:///{tmp_path}/q.db"
    server = ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx1.a.test")]}, a={"mx1.a.test": [MX1]}, servfail={"a.test"})
    clock = Clock()
    with dns_server(zone) as dns:
        async with serve(server, host=MX1) as port:
            cfg = config(dns.port, port, queue={"url": url}, dns={"negative_ttl": "1s"})
            with capture_logs() as logs:
                async with Router(cfg, clock=clock) as router:
                    first = await router.send(message("ann@a.test"))
                    assert router.queue is not None
                    [entry] = await router.queue.entries()
                    zone.servfail.clear()
                    clock.offset += 301  # the first deferral step (5 min) has passed
                    router.resolver.forget()  # type: ignore[union-attr]
                    stats = await router.run_queue(once=True, lease_s=5.0)
                    left = await router.queue.entries()
    assert list(first.deferred) == ["ann@a.test"] and first.queue_ids == (entry.id,)
    d = entry.destination
    assert (d.route, d.domain, d.provider, d.host, d.port, d.is_mx) == ("default", "a.test", None, "a.test",
                                                                         port, True)
    assert (stats.entries, stats.delivered) == (1, 1) and left == []
    assert server.copies == {"ann@a.test": 1}
    [queued] = events_named(logs, "message_queued")
    assert queued["queue_id"] == entry.id and queued["recipients"] == ["ann@a.test"]
    assert [e["from_cache"] for e in events_named(logs, "route_resolved")] == [False, False]


async def test_a_greylisted_mx_recipient_comes_back_through_the_queue_runner(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    greylisting = ScriptedHandler(rcpt=["450 4.2.0 Greylisted, please try again later"])
    zone = Zone(mx={"a.test": [(10, "mx1.a.test")]}, a={"mx1.a.test": [MX1]})
    clock = Clock()
    with dns_server(zone) as dns:
        async with serve(greylisting, host=MX1) as port:
            async with Router(config(dns.port, port, queue={"url": url}), clock=clock) as router:
                first = await router.send(message("ann@a.test", "bob@a.test"))
                assert router.queue is not None
                [entry] = await router.queue.entries()
                clock.offset += 301
                stats = await router.run_queue(once=True, lease_s=5.0)
    assert first.delivered == ["bob@a.test"] and list(first.deferred) == ["ann@a.test"]
    assert (entry.destination.domain, entry.destination.provider) == ("a.test", "mx1.a.test")
    assert stats.delivered == 1
    assert dict(greylisting.copies) == {"ann@a.test": 1, "bob@a.test": 1}


async def test_two_providers_each_hold_their_own_cap_and_proceed_in_parallel() -> None:
    class Slow(ScriptedHandler):
        async def handle_DATA(self, *args: Any) -> str:
            await asyncio.sleep(0.01)
            return await super().handle_DATA(*args)

    p, q = Slow(), Slow()
    zone = Zone(mx={"one.test": [(10, "mx.p.test")], "two.test": [(10, "mx.q.test")]},
                a={"mx.p.test": [MX1], "mx.q.test": [MX2]})
    finished: list[str] = []
    with dns_server(zone) as dns:
        async with mx_pair(p, q) as port:
            cfg = config(dns.port, port, destinations={"mx:.p.test": {"max_connections": 2},
                                                       "mx:.q.test": {"max_connections": 3}})
            async with Router(cfg) as router:

                async def one(i: int) -> None:
                    domain = "one.test" if i % 2 else "two.test"
                    result = await router.send(message(f"u{i}@{domain}", mid=f"<{i}@t>"))
                    assert result.ok
                    finished.append(domain)

                await asyncio.gather(*(one(i) for i in range(40)))
    assert (p.max_active, q.max_active) == (2, 3)  # each cap reached and held, at its own servers
    assert (p.sessions_refused, q.sessions_refused) == (0, 0)
    assert len(p.copies) == len(q.copies) == 20 and set(p.copies.values()) == set(q.copies.values()) == {1}
    # Neither provider waited for the other: their sends finished interleaved.
    assert finished.index("one.test") < max(i for i, d in enumerate(finished) if d == "two.test")
    assert finished.index("two.test") < max(i for i, d in enumerate(finished) if d == "one.test")
