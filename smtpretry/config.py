"""The TOML configuration: per-destination limits and retry policy, profiles,
the queue; ``load_config()``, destination matching and ``configure()``.

One loader serves the CLI, :class:`~smtpretry.Mailer` and the smtplib facade.
Keys are the same words as the dataclass fields and the log keys. Every
problem in a file is reported, one line each, naming the file, the key and
what is expected.

Which settings a destination gets (most specific first, each level filling in
only the keys it names over ``[defaults]``)::

    [destinations."smtp.example.net:587"] exact host and port
    [destinations."smtp.example.net"]    exact host
    [destinations."mx:.google.com"]      MX host suffix: every host ending so shares ONE limit
    [destinations."*.mail.example.com"]  glob on the host: each host its own limit
    [destinations."domain:gmail.com"]    the recipients' domain
    [defaults]

Which route a recipient's domain takes (``[routes]``, for the
:class:`~smtpretry.Router`): ``"domain:example.com"`` (that domain), then the
longest ``"domain:.example.com"`` (its subdomains, not itself), then
``"default"``. A route goes ``via = "mx"`` (the domain's MX hosts) or
``via = "profile:NAME"`` (a smarthost). The limits of an MX-routed domain:
its ``domain:`` rule, else an ``mx:`` rule that every one of its MX hosts
matches, else ``[defaults]``, counted per limit key (:func:`mx_limit_key`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import os
import re
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .endpoint import TLSMode
from .errors import ConfigError
from .policy import Delivery, Limits, RetryPolicy

__all__ = [
    "DNSSettings",
    "Config",
    "Profile",
    "Route",
    "Settings",
    "active_config",
    "configure",
    "load_config",
    "mx_limit_key",
    "parse_duration",
]

ENV_VAR = "SMTPRETRY_CONFIG"

_LIMIT_KEYS = {f.name for f in dataclasses.fields(Limits)}
_RETRY_KEYS = {f.name for f in dataclasses.fields(RetryPolicy)}
_DURATION_KEYS = {"backoff_base", "backoff_cap", "max_elapsed", "max_lifetime", "idle_timeout",
                  "cap_probe_after"}
_PROFILE_KEYS = {"host", "port", "tls", "username", "password_env", "timeout", "local_hostname",
                 "allow_plaintext_auth"}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_DURATION_HELP = 'expected a duration such as 30, "30s", "5m", "2h" or "5d"'


def parse_duration(value: object, key: str = "duration") -> float:
    """Seconds from a number or a string such as ``"30s"``, ``"5m"``, ``"1.5h"``, ``"5d"``.

    :raises ConfigError: naming ``key``.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{key}: {_DURATION_HELP}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        return float(m[1]) * _UNITS[m[2] or "s"]
    raise ConfigError(f"{key}: {_DURATION_HELP}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective settings for one destination: its limits and retry
    policy, the name of the limit it counts against (destinations that share
    a limit share this name) and the rule that matched."""

    limits: Limits
    policy: RetryPolicy
    limit_key: str
    rule: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """Where and how to connect. The password is read from the environment
    variable ``password_env`` when needed; it is never stored."""

    name: str
    host: str
    port: int = 587
    tls: TLSMode = TLSMode.STARTTLS
    username: str | None = None
    password_env: str | None = None
    timeout: float = 60.0
    local_hostname: str | None = None
    allow_plaintext_auth: bool = False

    @property
    def password(self) -> str | None:
        """The password, read from ``password_env`` now (``None`` when it is not set)."""
        return os.environ.get(self.password_env) if self.password_env else None

    def unset_secret(self) -> str | None:
        """What is wrong with this profile's secret now, naming the key and the
        variable (``profiles.NAME.password_env: the environment variable X is not
        set``), or ``None`` when the profile needs none or it is set. A file is
        loaded whatever the environment holds; this is asked when the profile is
        used (:meth:`Mailer.from_profile`) and by ``smtpretry config check``.

        .. versionadded:: 0.5
        """
        if self.password_env is None or self.password_env in os.environ:
            return None
        return f"profiles.{self.name}.password_env: the environment variable {self.password_env} is not set"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where the recipients of some domains go: a ``[routes."KEY"]`` table.

    ``key`` is ``"domain:example.com"``, ``"domain:.example.com"`` or
    ``"default"``. ``via`` is ``"mx"`` (straight to the domain's MX hosts)
    or ``"profile:NAME"`` (then ``profile`` is NAME). For MX routes:
    ``mx_port`` (25; MX records carry no port), ``tls`` (``opportunistic`` by
    default, ``starttls`` for ``tls = "required"``, or ``none``),
    ``allow_private_mx`` (MX addresses on loopback or private networks are
    refused unless true) and ``helo_name`` (the name to greet MX hosts with;
    the top-level ``helo_name`` when not given).

    .. versionadded:: 0.5
    """

    key: str
    via: str
    profile: str | None = None
    mx_port: int = 25
    tls: TLSMode = TLSMode.OPPORTUNISTIC
    allow_private_mx: bool = False
    helo_name: str | None = None

    @property
    def is_mx(self) -> bool:
        return self.via == "mx"


@dataclass(frozen=True, slots=True, kw_only=True)
class DNSSettings:
    """The ``[dns]`` table: how MX hosts are looked up.

    ``nameservers`` (IP addresses; empty: the system's, from
    ``/etc/resolv.conf``), ``port`` (53), ``timeout`` (seconds for the whole
    lookup of one domain), ``negative_ttl`` (seconds a failed lookup is
    remembered), ``nxdomain`` (``"fail"``, the default, or ``"defer"``: what
    a domain that does not exist does to its recipients).

    .. versionadded:: 0.5
    """

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = 10.0
    negative_ttl: float = 60.0
    nxdomain: str = "fail"


def mx_limit_key(domain: str, hosts: Sequence[str], suffixes: Sequence[str]) -> str:
    """The limit key of a domain delivered to its MX ``hosts`` (pure).

    ``mx:SUFFIX`` for the longest of ``suffixes`` (each like ``".google.com"``)
    that *every* host name matches, so all the domains a provider hosts share
    one cap and a domain that mixes providers is not swept in; otherwise the
    sorted set of host names joined by commas, so two domains served by the
    same hosts share one cap. With no host (an implicit MX) the host name is
    the domain itself.
    """
    names = sorted({h.lower().rstrip(".") for h in hosts} or {domain.lower().rstrip(".")})
    matching = [
        sfx for sfx in suffixes
        if all(n.endswith(sfx) or n == sfx.lstrip(".") for n in names)
    ]
    if matching:
        return "mx:" + max(matching, key=len)
    return ",".join(names)


_HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+", re.I)


def is_fqdn(name: str) -> bool:
    """A fully qualified host name to greet MX hosts with: at least two
    labels, letters, digits and hyphens, not ``localhost``."""
    name = name.rstrip(".")
    return bool(_HOSTNAME.fullmatch(name)) and not name.lower().startswith("localhost.") and not (
        name.lower().endswith((".localhost", ".localdomain", ".local"))
    )


def domain_key(domain: str) -> str:
    """A domain as routes and limits compare it: lower case, IDNA (punycode)
    encoded, without a trailing dot.

    :raises ValueError: the domain cannot be IDNA-encoded.
    """
    domain = domain.strip().rstrip(".").lower()
    if domain.startswith("["):  # an address literal stays as it is
        return domain
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"domain {domain!r} cannot be IDNA-encoded: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Rule:
    key: str
    kind: str  # host, mx, glob, domain
    pattern: str
    limits: Mapping[str, Any]
    retry: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A loaded configuration. ``settings_for(host)`` gives a destination's
    effective :class:`Settings`.

    .. versionadded:: 0.1
    """

    source: str = "<defaults>"
    limits: Limits = field(default_factory=Limits)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    rules: tuple[_Rule, ...] = ()
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    queue_url: str | None = None
    allow_plaintext_auth: bool = False
    backend_url: str | None = None
    """``backend = "redis://..."``: connection caps shared by every process
    through this store (and the queue too, unless ``[queue] url`` names another)."""
    routes: tuple[Route, ...] = ()
    """The ``[routes]`` table, for the :class:`~smtpretry.Router`."""
    dns: DNSSettings = field(default_factory=DNSSettings)
    helo_name: str | None = None
    """The top-level ``helo_name``: the name to greet servers with (MX routes need one)."""
    reuse_connections: bool = False
    """``reuse_connections = true``: the smtplib facade keeps a connection the
    caller QUITs and lends it to the next ``SMTP`` object that sets up the very
    same session (host, port, source address, EHLO name, TLS context object,
    login credentials); off, every ``SMTP`` object has its own connection, as
    with smtplib."""

    def route_for(self, domain: str) -> Route | None:
        """The route of a recipient domain: ``domain:`` exact, then the longest
        ``domain:.SUFFIX``, then ``default``; None when nothing matches.

        :raises ValueError: the domain cannot be IDNA-encoded.
        """
        domain = domain_key(domain)
        by_key = {r.key: r for r in self.routes}
        if (exact := by_key.get(f"domain:{domain}")) is not None:
            return exact
        suffixes = [r for r in self.routes if r.key.startswith("domain:.")
                    and domain.endswith(r.key[len("domain:"):])]
        if suffixes:
            return max(suffixes, key=lambda r: len(r.key))
        return by_key.get("default")

    def mx_settings(self, domain: str, hosts: Sequence[str]) -> Settings:
        """The settings of a domain delivered to its MX ``hosts``: its
        ``domain:`` rule, else an ``mx:`` rule every host matches (the limit
        key is then that rule), else ``[defaults]`` under the key
        :func:`mx_limit_key` gives."""
        domain = domain_key(domain)
        own = next((r for r in self.rules if r.kind == "domain" and r.pattern == domain), None)
        if own is not None:
            return self._settings(own, own.key)
        key = mx_limit_key(domain, hosts, [r.pattern for r in self.rules if r.kind == "mx"])
        rule = next((r for r in self.rules if r.kind == "mx" and key == "mx:" + r.pattern), None)
        if rule is None:
            return Settings(self.limits, self.policy, key, "defaults")
        limits = dataclasses.replace(self.limits, **rule.limits)
        policy = dataclasses.replace(self.policy, **rule.retry)
        # The rule's own key, as settings_for() names it for a Mailer sent to one of these hosts.
        return Settings(limits, policy, rule.key, rule.key)

    def rule_for(self, host: str, port: int | None = None, *,
                 recipient_domain: str | None = None) -> _Rule | None:
        host = host.lower().rstrip(".")
        for kind in ("hostport", "host", "mx", "glob", "domain"):
            candidates = [r for r in self.rules if r.kind == kind]
            if kind == "hostport":
                found = [r for r in candidates if port is not None and r.pattern == f"{host}:{port}"]
            elif kind == "host":
                found = [r for r in candidates if r.pattern == host]
            elif kind == "mx":
                found = [r for r in candidates if host.endswith(r.pattern) or host == r.pattern.lstrip(".")]
            elif kind == "glob":
                found = [r for r in candidates if fnmatch.fnmatchcase(host, r.pattern)]
            else:
                found = [r for r in candidates if recipient_domain and recipient_domain.lower() == r.pattern]
            if found:
                return max(found, key=lambda r: len(r.pattern))
        return None

    def settings_for(self, host: str, port: int | None = None, *,
                     recipient_domain: str | None = None) -> Settings:
        """The effective settings for sending to ``host`` (the recipients'
        domain decides only when no host rule matches)."""
        rule = self.rule_for(host, port, recipient_domain=recipient_domain)
        return self._settings(rule, f"{host}:{port}" if port is not None else host)

    def settings_of(self, key: str | None) -> Settings:
        """The settings a ``[destinations."KEY"]`` rule gives (None: ``[defaults]``)."""
        rule = next((r for r in self.rules if r.key == key), None)
        if key is not None and rule is None:
            raise ConfigError(f"{self.source}: destinations: no destination {key!r}")
        return self._settings(rule, key or "defaults")

    def _settings(self, rule: _Rule | None, where: str) -> Settings:
        if rule is None:
            return Settings(self.limits, self.policy, where, "defaults")
        limits = dataclasses.replace(self.limits, **rule.limits)
        policy = dataclasses.replace(self.policy, **rule.retry)
        key = rule.key if rule.kind in ("mx", "domain") else where
        return Settings(limits, policy, key, rule.key)

    def unset_secrets(self) -> list[str]:
        """:meth:`Profile.unset_secret` of every profile that has a problem, each
        naming the file: what using those profiles now would fail on.

        .. versionadded:: 0.5
        """
        return [f"{self.source}: {problem}" for p in self.profiles.values()
                if (problem := p.unset_secret()) is not None]

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ConfigError(f"{self.source}: profiles: no profile {name!r} (known: {known})") from None


class _Errors:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{self.source}: {key}: {message}")

    def check(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(self.lines))


def _table(errors: _Errors, key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        errors.add(key, f"expected a table, got {type(value).__name__}")
        return {}
    return value


def _values(errors: _Errors, prefix: str, raw: Mapping[str, Any], allowed: set[str],
            nested: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}.{key}" if prefix else key
        if key in nested:
            continue
        if key not in allowed:
            errors.add(path, f"unknown key (expected one of: {', '.join(sorted(allowed | nested))})")
            continue
        try:
            out[key] = _convert(key, value, path)
        except ConfigError as exc:  # its message starts with the key's path
            errors.add(*str(exc).split(": ", 1))
    return out


def _convert(key: str, value: Any, path: str) -> Any:
    if key in _DURATION_KEYS:
        return parse_duration(value, path)
    if key == "defer_schedule":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{path}: expected a non-empty list of durations")
        return tuple(parse_duration(v, f"{path}[{i}]") for i, v in enumerate(value))
    if key == "delivery":
        try:
            return Delivery(value)
        except ValueError:
            raise ConfigError(f'{path}: expected "at_least_once" or "at_most_once", got {value!r}') from None
    if key == "max_messages_per_minute":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if key in ("max_connections", "max_messages_per_connection", "max_attempts", "cap_recovery"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if key == "adaptive":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    return value


def _build(errors: _Errors, key: str, cls: type[Any], base: Any, values: Mapping[str, Any]) -> Any:
    try:
        return dataclasses.replace(base, **values)
    except ConfigError as exc:
        field_name, _, why = str(exc).partition(": ")
        errors.add(f"{key}.{field_name}" if key else field_name, why)
    except TypeError as exc:
        errors.add(key, str(exc))
    return base


def _rule_of(key: str) -> tuple[str, str]:
    if key.startswith("mx:"):
        suffix = key[3:].lower()
        return "mx", suffix if suffix.startswith(".") else "." + suffix
    if key.startswith("domain:"):
        return "domain", key[7:].lower()
    if any(c in key for c in "*?["):
        return "glob", key.lower()
    if re.fullmatch(r"[^:]+:\d+", key):
        return "hostport", key.lower()
    return "host", key.lower().rstrip(".")


def _profile(errors: _Errors, name: str, raw: Mapping[str, Any]) -> Profile | None:
    path = f"profiles.{name}"
    for key in raw:
        if key not in _PROFILE_KEYS:
            errors.add(f"{path}.{key}", f"unknown key (expected one of: {', '.join(sorted(_PROFILE_KEYS))})")
    host = raw.get("host")
    if not isinstance(host, str) or not host:
        errors.add(f"{path}.host", "expected a host name")
        return None
    kw: dict[str, Any] = {"name": name, "host": host}
    port = raw.get("port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        errors.add(f"{path}.port", f"expected an integer 1..65535, got {port!r}")
    kw["port"] = port
    try:
        kw["tls"] = TLSMode(raw.get("tls", "starttls"))
    except ValueError:
        errors.add(f"{path}.tls", f"expected \"starttls\", \"implicit\" or \"none\", got {raw.get('tls')!r}")
    for key in ("username", "password_env", "local_hostname"):
        if key in raw:
            if not isinstance(raw[key], str):
                errors.add(f"{path}.{key}", f"expected a string, got {raw[key]!r}")
            kw[key] = raw[key]
    if "timeout" in raw:
        try:
            kw["timeout"] = parse_duration(raw["timeout"], f"{path}.timeout")
        except ConfigError as exc:
            errors.add(f"{path}.timeout", str(exc).split(": ", 1)[-1])
    if "allow_plaintext_auth" in raw:
        kw["allow_plaintext_auth"] = bool(raw["allow_plaintext_auth"])
    if ("username" in raw) != ("password_env" in raw):
        errors.add(path, "give username and password_env together (the password comes from the environment)")
    # Whether password_env is set is not the file's business: a profile's secret is
    # read when that profile is used (Profile.unset_secret), so a file can be checked
    # without secrets, and one profile's unset variable never stops another.
    try:
        return Profile(**kw)
    except (TypeError, ValueError):
        return None


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """A :class:`Config` from an already parsed TOML document.

    :raises ConfigError: one line per problem.
    """
    errors = _Errors(source)
    top = {"backend", "defaults", "destinations", "dns", "helo_name", "profiles", "queue",
           "reuse_connections", "routes"}
    for key in data:
        if key not in top:
            errors.add(key, f"unknown table (expected one of: {', '.join(sorted(top))})")
    reuse = data.get("reuse_connections", False)
    if not isinstance(reuse, bool):
        errors.add("reuse_connections", f"expected true or false, got {reuse!r}")
        reuse = False
    defaults = _table(errors, "defaults", data.get("defaults", {}))
    limits = _build(errors, "defaults", Limits, Limits(),
                    _values(errors, "defaults", defaults, _LIMIT_KEYS, frozenset({"retry"})))
    policy = _build(errors, "defaults.retry", RetryPolicy, RetryPolicy(),
                    _values(errors, "defaults.retry", _table(errors, "defaults.retry",
                                                             defaults.get("retry", {})), _RETRY_KEYS))
    rules: list[_Rule] = []
    for key, raw in _table(errors, "destinations", data.get("destinations", {})).items():
        prefix = f'destinations."{key}"'
        raw = _table(errors, prefix, raw)
        lim = _values(errors, prefix, raw, _LIMIT_KEYS, frozenset({"retry"}))
        ret = _values(errors, f"{prefix}.retry", _table(errors, f"{prefix}.retry", raw.get("retry", {})),
                      _RETRY_KEYS)
        _build(errors, prefix, Limits, limits, lim)  # validate the merged values now
        _build(errors, f"{prefix}.retry", RetryPolicy, policy, ret)
        kind, pattern = _rule_of(key)
        rules.append(_Rule(key, kind, pattern, lim, ret))
    profiles: dict[str, Profile] = {}
    for name, raw in _table(errors, "profiles", data.get("profiles", {})).items():
        prof = _profile(errors, name, _table(errors, f"profiles.{name}", raw))
        if prof is not None:
            profiles[name] = prof
    queue = _table(errors, "queue", data.get("queue", {}))
    for key in queue:
        if key != "url":
            errors.add(f"queue.{key}", "unknown key (expected: url)")
    queue_url = queue.get("url")
    if queue_url is not None and not isinstance(queue_url, str):
        errors.add("queue.url", f"expected a URL such as \"sqlite:///path/queue.db\", got {queue_url!r}")
    backend_url = data.get("backend")
    if backend_url is not None and not (
        isinstance(backend_url, str) and backend_url.partition("://")[0].lower() in ("redis", "rediss")
        and backend_url.partition("://")[2]
    ):
        got = (f"scheme {backend_url.partition('://')[0]!r}" if isinstance(backend_url, str)
               else repr(backend_url))  # never echo a URL: it may hold a password
        errors.add("backend", f"expected a URL such as \"redis://127.0.0.1:6379/0\", got {got}")
        backend_url = None
    if queue_url is None:
        queue_url = backend_url  # one setting moves both the caps and the queue to the backend
    helo_name = data.get("helo_name")
    if helo_name is not None and not isinstance(helo_name, str):
        errors.add("helo_name", f"expected a host name, got {helo_name!r}")
        helo_name = None
    dns = _dns(errors, _table(errors, "dns", data.get("dns", {})))
    routes = _routes(errors, _table(errors, "routes", data.get("routes", {})), profiles, helo_name)
    errors.check()
    return Config(source=source, limits=limits, policy=policy, rules=tuple(rules), profiles=profiles,
                  queue_url=queue_url, backend_url=backend_url, routes=routes, dns=dns,
                  helo_name=helo_name, reuse_connections=reuse)


_ROUTE_KEYS = {"via", "mx_port", "tls", "allow_private_mx", "helo_name"}
_MX_ONLY = ("mx_port", "tls", "allow_private_mx")
_ROUTE_TLS = {"required": TLSMode.STARTTLS, "opportunistic": TLSMode.OPPORTUNISTIC, "none": TLSMode.NONE}


def _routes(errors: _Errors, raw: Mapping[str, Any], profiles: Mapping[str, Profile],
            helo_name: str | None) -> tuple[Route, ...]:
    routes: list[Route] = []
    for key, table in raw.items():
        path = f'routes."{key}"'
        table = _table(errors, path, table)
        if key == "default":
            norm = key
        elif key.startswith("domain:") and key[len("domain:"):].strip(". "):
            target = key[len("domain:"):]
            dot = "." if target.startswith(".") else ""
            try:
                norm = "domain:" + dot + domain_key(target.lstrip("."))
            except ValueError as exc:
                errors.add(path, str(exc))
                continue
        else:
            errors.add(path, 'expected "domain:example.com", "domain:.example.com" or "default"')
            continue
        for k in table:
            if k not in _ROUTE_KEYS:
                errors.add(f"{path}.{k}", f"unknown key (expected one of: {', '.join(sorted(_ROUTE_KEYS))})")
        via = table.get("via")
        kw: dict[str, Any] = {"key": norm}
        if via == "mx":
            kw["via"] = "mx"
        elif isinstance(via, str) and via.startswith("profile:"):
            name = via[len("profile:"):]
            if name not in profiles:
                known = ", ".join(sorted(profiles)) or "none"
                errors.add(f"{path}.via", f"no profile {name!r} (known: {known})")
            kw["via"], kw["profile"] = via, name
            for k in _MX_ONLY:
                if k in table:
                    errors.add(f"{path}.{k}", "applies to MX routes only (a profile has its own settings)")
        else:
            errors.add(f"{path}.via", f'expected "mx" or "profile:NAME", got {via!r}')
            continue
        if "mx_port" in table:
            port = table["mx_port"]
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                errors.add(f"{path}.mx_port", f"expected an integer 1..65535, got {port!r}")
            else:
                kw["mx_port"] = port
        if "tls" in table and kw["via"] == "mx":
            if table["tls"] not in _ROUTE_TLS:
                errors.add(f"{path}.tls",
                           f'expected "required", "opportunistic" or "none", got {table["tls"]!r}')
            else:
                kw["tls"] = _ROUTE_TLS[table["tls"]]
        if "allow_private_mx" in table:
            if not isinstance(table["allow_private_mx"], bool):
                errors.add(f"{path}.allow_private_mx",
                           f"expected true or false, got {table['allow_private_mx']!r}")
            else:
                kw["allow_private_mx"] = table["allow_private_mx"]
        helo = table.get("helo_name")
        if helo is not None and not isinstance(helo, str):
            errors.add(f"{path}.helo_name", f"expected a host name, got {helo!r}")
            helo = None
        kw["helo_name"] = helo
        if kw["via"] == "mx":
            greet = helo or helo_name
            if greet is None:
                errors.add(f"{path}.helo_name", "direct MX delivery needs a fully qualified helo_name "
                           "(here or at the top level): MX hosts refuse or score down a bare name")
            elif not is_fqdn(greet):
                where = f"{path}.helo_name" if helo else "helo_name"
                errors.add(where, f"expected a fully qualified host name such as \"mail.example.org\" "
                           f"for direct MX delivery, got {greet!r}")
        routes.append(Route(**kw))
    return tuple(routes)


def _dns(errors: _Errors, raw: Mapping[str, Any]) -> DNSSettings:
    allowed = {"nameservers", "port", "timeout", "negative_ttl", "nxdomain"}
    kw: dict[str, Any] = {}
    for k in raw:
        if k not in allowed:
            errors.add(f"dns.{k}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")
    if "nameservers" in raw:
        servers = raw["nameservers"]
        if not isinstance(servers, list) or not all(isinstance(a, str) for a in servers):
            errors.add("dns.nameservers", f"expected a list of IP addresses, got {servers!r}")
        else:
            for a in servers:
                try:
                    ipaddress.ip_address(a)
                except ValueError:
                    errors.add("dns.nameservers", f"expected IP addresses, got {a!r}")
            kw["nameservers"] = tuple(servers)
    if "port" in raw:
        port = raw["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            errors.add("dns.port", f"expected an integer 1..65535, got {port!r}")
        else:
            kw["port"] = port
    for k in ("timeout", "negative_ttl"):
        if k in raw:
            try:
                value = parse_duration(raw[k], f"dns.{k}")
            except ConfigError as exc:
                errors.add(f"dns.{k}", str(exc).split(": ", 1)[-1])
                continue
            if value < 0 or (k == "timeout" and value == 0):
                least = "> 0" if k == "timeout" else ">= 0"
                errors.add(f"dns.{k}", f"expected a duration {least}, got {raw[k]!r}")
            else:
                kw[k] = value
    if "nxdomain" in raw:
        if raw["nxdomain"] not in ("fail", "defer"):
            errors.add("dns.nxdomain", f'expected "fail" or "defer", got {raw["nxdomain"]!r}')
        else:
            kw["nxdomain"] = raw["nxdomain"]
    return DNSSettings(**kw)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check a TOML configuration file.

    :raises ConfigError: the file is missing or unreadable, is not TOML, or has
        unknown keys, wrong types or negative limits; one line per problem,
        naming the file and the key. Profiles' password variables are not read
        here, but when a profile is used (:meth:`Config.unset_secrets` lists
        those that are not set).

    .. versionchanged:: 0.5 an unset ``password_env`` is no longer an error here

    .. versionadded:: 0.1
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse_config(data, source)


_lock = threading.Lock()
_first_load = threading.Lock()
_active: Config | None = None


def configure(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    policy: RetryPolicy | None = None,
    limits: Limits | None = None,
    queue: str | None = None,
    allow_plaintext_auth: bool | None = None,
    reuse_connections: bool | None = None,
) -> Config:
    """Set the process-wide configuration that every :class:`smtpretry.SMTP`
    (the smtplib facade) uses: a :class:`Config`, a TOML file path, or
    nothing (the file named by ``SMTPRETRY_CONFIG``, else the defaults);
    ``policy``, ``limits`` and ``queue`` replace the defaults' values;
    ``allow_plaintext_auth`` lets ``login()`` send a password over an
    unencrypted connection to a host that is not on loopback;
    ``reuse_connections`` lends a connection one ``SMTP`` object QUIT to the
    next that sets up the same session (:attr:`Config.reuse_connections`).

    Call it once at start-up, before the first send.

    .. versionadded:: 0.1
    """
    global _active
    if config is None:
        env = os.environ.get(ENV_VAR)
        base = load_config(env) if env else Config()
    elif isinstance(config, Config):
        base = config
    else:
        base = load_config(config)
    changes: dict[str, Any] = {}
    if policy is not None:
        changes["policy"] = policy
    if limits is not None:
        changes["limits"] = limits
    if queue is not None:
        changes["queue_url"] = queue
    if allow_plaintext_auth is not None:
        changes["allow_plaintext_auth"] = allow_plaintext_auth
    if reuse_connections is not None:
        changes["reuse_connections"] = reuse_connections
    with _lock:
        _active = dataclasses.replace(base, **changes) if changes else base
        return _active


def active_config() -> Config:
    """The process-wide configuration: what :func:`configure` set, else the
    file named by ``SMTPRETRY_CONFIG`` (read once), else the defaults."""
    current = _active
    if current is not None:
        return current
    # The first call loads SMTPRETRY_CONFIG: once, even when many threads make their
    # first facade call at once (each its own Config would mean pools of its own).
    with _first_load:
        return _active if _active is not None else configure()
