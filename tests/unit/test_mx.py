"""The pure parts of MX routing: ordering, address bounds, DNS outcomes as replies, the
limit-key rule, route matching and its configuration errors, and when to move to the next MX."""

from __future__ import annotations

import random

import pytest

from smtpretry import ConfigError, Phase, Reply, TransportFailure
from smtpretry.classify import NXDOMAIN_DEFER, RULES, Action, Category, classify
from smtpretry.config import is_fqdn, mx_limit_key, parse_config
from smtpretry.decide import classify_evidence
from smtpretry.endpoint import TLSMode
from smtpretry.mx import (
    MAX_ADDRESSES,
    Lookup,
    MXHost,
    Resolution,
    candidates,
    for_route,
    is_public,
    order_hosts,
    settle,
)
from smtpretry.reply import FailureKind
from smtpretry.router import skip_reason

HOSTS = (MXHost("a", 20, ("192.0.2.1",)), MXHost("b", 10, ("192.0.2.2",)),
         MXHost("c", 10, ("192.0.2.3",)), MXHost("d", 10, ("192.0.2.4",)))


def test_hosts_go_by_preference_and_equal_preferences_are_shuffled_by_the_rng() -> None:
    for seed in (0, 1):
        equal = ["b", "c", "d"]
        random.Random(seed).shuffle(equal)  # what the injected rng makes of the preference-10 group
        assert [h.name for h in order_hosts(HOSTS, random.Random(seed))] == [*equal, "a"]
    orders = {tuple(h.name for h in order_hosts(HOSTS, random.Random(seed))) for seed in range(30)}
    assert all(o[-1] == "a" for o in orders) and len(orders) == 6  # every order of b, c, d


def test_addresses_per_delivery_are_bounded() -> None:
    many = [MXHost(f"mx{i}", i, (f"192.0.2.{i}", f"2001:db8::{i}")) for i in range(1, 6)]
    got = candidates(many)
    assert len(got) == MAX_ADDRESSES == 5
    assert [(h.name, a) for h, a in got][:3] == [
        ("mx1", "192.0.2.1"), ("mx1", "2001:db8::1"), ("mx2", "192.0.2.2")]
    assert candidates(many, limit=1) == [(many[0], "192.0.2.1")]


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.2", False), ("::1", False),
    ("10.1.2.3", False), ("192.168.1.1", False), ("172.16.0.1", False), ("100.64.0.1", False),
    ("169.254.1.1", False), ("0.0.0.0", False), ("fd00::1", False), ("224.0.0.1", False),
    ("::ffff:127.0.0.1", False), ("not an address", False),
])
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


def _code(r: Resolution) -> tuple[int, str] | None:
    return (r.failure.code, str(r.failure.enhanced)) if r.failure is not None else None


def test_dns_outcomes_become_the_replies_the_issue_names() -> None:
    assert _code(settle("d.test", Lookup.OK, [(0, ".")])) == (556, "5.1.10")
    assert _code(settle("d.test", Lookup.NXDOMAIN)) == (550, "5.1.2")
    assert _code(settle("d.test", Lookup.TEMPORARY)) == (451, "4.4.3")
    assert _code(settle("d.test", Lookup.OK, [(10, "mx.d.test")], {"mx.d.test": ((), False)})) == (
        550, "5.4.4")
    temporary = settle("d.test", Lookup.OK, [(10, "mx1.d.test"), (20, "mx2.d.test")],
                       {"mx1.d.test": ((), False), "mx2.d.test": ((), True)})
    assert _code(temporary) == (451, "4.4.3")
    assert all(r.phase is Phase.RESOLUTION for r in (
        settle("d.test", Lookup.NXDOMAIN).failure, settle("d.test", Lookup.TEMPORARY).failure))


def test_no_mx_records_means_the_domain_is_its_own_mx() -> None:
    r = settle("d.test", Lookup.NO_ANSWER, addresses={"d.test": (("192.0.2.9",), False)})
    assert r.implicit and r.failure is None
    assert r.hosts == (MXHost("d.test", 0, ("192.0.2.9",)),)
    assert _code(settle("d.test", Lookup.NO_ANSWER)) == (550, "5.4.4")


def test_mx_records_are_sorted_deduplicated_and_a_stray_null_mx_ignored() -> None:
    r = settle("d.test", Lookup.OK, [(20, "B.d.test."), (10, "a.d.test"), (0, "."), (30, "a.d.test")],
               {"a.d.test": (("192.0.2.1",), False), "b.d.test": (("192.0.2.2",), False)})
    assert r.failure is None and r.host_names == ("a.d.test", "b.d.test")


def test_private_addresses_are_refused_unless_the_route_allows_them() -> None:
    r = settle("d.test", Lookup.OK, [(10, "mx.d.test"), (20, "mx2.d.test")],
               {"mx.d.test": (("127.0.0.2",), False), "mx2.d.test": (("93.184.216.34", "10.0.0.1"), False)})
    assert for_route(r, allow_private=True) == r
    public = for_route(r, allow_private=False)
    assert public.failure is None and candidates(public.hosts) == [(public.hosts[1], "93.184.216.34")]
    only_private = settle("d.test", Lookup.OK, [(10, "mx.d.test")], {"mx.d.test": (("127.0.0.2",), False)})
    assert _code(for_route(only_private, allow_private=False)) == (550, "5.4.4")


@pytest.mark.parametrize("reply, category, action", [
    (Reply.build(556, "5.1.10 null MX", Phase.RESOLUTION), Category.UNKNOWN_RECIPIENT, Action.FAIL),
    (Reply.build(550, "5.1.2 no such domain", Phase.RESOLUTION), Category.UNKNOWN_RECIPIENT, Action.FAIL),
    (Reply.build(451, "4.4.3 SERVFAIL", Phase.RESOLUTION), Category.SERVICE_UNAVAILABLE, Action.DEFER),
    (Reply.build(550, "5.4.4 unroutable", Phase.RESOLUTION), Category.OTHER_PERMANENT, Action.FAIL),
])
def test_resolution_replies_are_classified_by_rules_keyed_on_the_phase(
    reply: Reply, category: Category, action: Action,
) -> None:
    c = classify_evidence(reply)
    assert (c.category, c.action) == (category, action) and c.reason.startswith("resolution: ")
    # The same reply from a server in a session is not read as a DNS outcome.
    assert not classify(reply.code, reply.enhanced, reply.text, phase=Phase.RCPT).reason.startswith(
        "resolution")


def test_nxdomain_defer_rule_defers_only_a_missing_domain() -> None:
    rules = (NXDOMAIN_DEFER, *RULES)
    nx = Reply.build(550, "5.1.2 no such domain", Phase.RESOLUTION)
    assert classify_evidence(nx, rules).action is Action.DEFER
    null = Reply.build(556, "5.1.10 null MX", Phase.RESOLUTION)
    assert classify_evidence(null, rules).action is Action.FAIL


def test_limit_key_is_an_mx_rule_only_when_every_host_matches_it() -> None:
    google = ["aspmx.l.google.com", "alt1.aspmx.l.google.com"]
    assert mx_limit_key("v.test", google, [".google.com", ".l.google.com"]) == "mx:.l.google.com"
    assert mx_limit_key("v.test", [*google, "mx.other.test"], [".google.com"]) == (
        "alt1.aspmx.l.google.com,aspmx.l.google.com,mx.other.test")
    assert mx_limit_key("v.test", ["MX2.d.test.", "mx1.d.test"], []) == "mx1.d.test,mx2.d.test"
    assert mx_limit_key("Self.test", [], [".test"]) == "mx:.test"
    assert mx_limit_key("self.test", [], []) == "self.test"


def test_mx_settings_take_the_domain_rule_then_the_mx_rule_then_the_defaults() -> None:
    cfg = parse_config({"defaults": {"max_connections": 9}, "destinations": {
        "mx:.p.test": {"max_connections": 3}, "domain:own.test": {"max_connections": 1}}})
    own = cfg.mx_settings("own.test", ["mx.p.test"])
    assert (own.limit_key, own.limits.max_connections) == ("domain:own.test", 1)
    provider = cfg.mx_settings("x.test", ["mx1.p.test", "mx2.p.test"])
    assert (provider.limit_key, provider.limits.max_connections) == ("mx:.p.test", 3)
    mixed = cfg.mx_settings("y.test", ["mx1.p.test", "mx.q.test"])
    assert (mixed.limit_key, mixed.limits.max_connections) == ("mx.q.test,mx1.p.test", 9)


def test_routes_match_exact_then_the_longest_suffix_then_the_default() -> None:
    cfg = parse_config({
        "helo_name": "mail.example.org",
        "profiles": {"isp": {"host": "smtp.isp.test"}},
        "routes": {
            "domain:example.com": {"via": "profile:isp"},
            "domain:.example.com": {"via": "mx", "mx_port": 2525},
            "domain:.eu.example.com": {"via": "mx", "tls": "required"},
            "domain:bücher.test": {"via": "profile:isp"},
            "default": {"via": "mx", "tls": "none"},
        },
    })
    route = cfg.route_for
    assert route("Example.COM").key == "domain:example.com"  # type: ignore[union-attr]
    assert route("mail.example.com").key == "domain:.example.com"  # type: ignore[union-attr]
    assert route("a.eu.example.com").tls is TLSMode.STARTTLS  # type: ignore[union-attr]
    assert route("xn--bcher-kva.test").key == "domain:xn--bcher-kva.test"  # type: ignore[union-attr]
    assert route("BÜCHER.test").key == "domain:xn--bcher-kva.test"  # type: ignore[union-attr]
    assert route("other.test").key == "default"  # type: ignore[union-attr]
    assert route("other.test").tls is TLSMode.NONE  # type: ignore[union-attr]
    assert route("x.example.com").mx_port == 2525  # type: ignore[union-attr]
    assert cfg.route_for("y.test") is not None
    assert parse_config({"profiles": {"isp": {"host": "h"}},
                         "routes": {"domain:a.test": {"via": "profile:isp"}}}).route_for("b.test") is None


def test_route_configuration_errors_name_the_file_and_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({
            "helo_name": "localhost",
            "routes": {
                "default": {"via": "mx", "tls": "sometimes", "mx_port": 0},
                "domain:a.test": {"via": "profile:missing", "allow_private_mx": True},
                "domain:b.test": {"via": "smoke signals"},
                "example.com": {"via": "mx"},
            },
            "dns": {"nameservers": ["dns.example"], "timeout": "0s", "nxdomain": "bounce", "ttl": 5},
        }, source="app.toml")
    lines = str(info.value).splitlines()
    assert lines == [
        "app.toml: dns.ttl: unknown key (expected one of: nameservers, negative_ttl, nxdomain, port, "
        "timeout)",
        "app.toml: dns.nameservers: expected IP addresses, got 'dns.example'",
        "app.toml: dns.timeout: expected a duration > 0, got '0s'",
        'app.toml: dns.nxdomain: expected "fail" or "defer", got \'bounce\'',
        "app.toml: routes.\"default\".mx_port: expected an integer 1..65535, got 0",
        "app.toml: routes.\"default\".tls: expected \"required\", \"opportunistic\" or \"none\", "
        "got 'sometimes'",
        "app.toml: helo_name: expected a fully qualified host name such as \"mail.example.org\" for direct "
        "MX delivery, got 'localhost'",
        "app.toml: routes.\"domain:a.test\".via: no profile 'missing' (known: none)",
        "app.toml: routes.\"domain:a.test\".allow_private_mx: applies to MX routes only (a profile has its "
        "own settings)",
        "app.toml: routes.\"domain:b.test\".via: expected \"mx\" or \"profile:NAME\", got 'smoke signals'",
        "app.toml: routes.\"example.com\": expected \"domain:example.com\", \"domain:.example.com\" or "
        "\"default\"",
    ]


def test_an_mx_route_needs_a_fully_qualified_helo_name() -> None:
    with pytest.raises(ConfigError, match=r'routes."default".helo_name: direct MX delivery needs'):
        parse_config({"routes": {"default": {"via": "mx"}}})
    per_route = parse_config({"routes": {"default": {"via": "mx", "helo_name": "out.example.org"}}})
    assert per_route.routes[0].helo_name == "out.example.org"
    assert [is_fqdn(n) for n in ("mail.example.org", "mx", "localhost.localdomain", "-a.b", "a..b")] == [
        True, False, False, False, False]


@pytest.mark.parametrize("evidence, reason", [
    (TransportFailure(FailureKind.REFUSED, Phase.CONNECT), "refused"),
    (TransportFailure(FailureKind.TIMEOUT, Phase.CONNECT), "timeout"),
    (TransportFailure(FailureKind.TIMEOUT, Phase.GREETING), "timeout"),
    (TransportFailure(FailureKind.DISCONNECTED, Phase.GREETING), "disconnected"),
    (Reply.build(421, "4.3.2 Service shutting down", Phase.GREETING), "greeting"),
    (Reply.build(421, "4.7.0 Too many connections from your IP", Phase.GREETING), "throttled"),
    (Reply.build(554, "5.7.1 No SMTP service here", Phase.GREETING), None),
    (TransportFailure(FailureKind.TLS, Phase.STARTTLS), None),
    (Reply.build(421, "4.7.0 Too many connections", Phase.RCPT), None),
])
def test_when_a_refused_connection_moves_to_the_next_mx(evidence: Reply | TransportFailure,
                                                        reason: str | None) -> None:
    assert skip_reason(evidence, classify_evidence(evidence)) == reason
