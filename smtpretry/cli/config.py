"""``smtpretry config check``: validate a configuration file, show the effective settings;
``config init`` (``config_init.py``) writes a commented one to start from.

Exit status 2, with one line per problem, when the file is not valid. A profile whose
``password_env`` variable is not set is a warning (the file is valid; that profile
cannot be used here and now), an error with ``--strict``: so a file can be checked in
CI without its secrets. The settings are a table on a terminal and plain aligned columns
when piped (one row per line, never folded), or JSON with ``--json``; a profile's row
says where and as whom it connects.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import click

from ..config import Config, Profile
from ..errors import ConfigError
from ._errors import Group, fail
from ._resolve import CONFIG_ENV
from ._table import show_table
from .config_init import init_command

__all__ = ["config_group"]


@click.group("config", cls=Group)
def config_group() -> None:
    """Check a configuration file, or write one to start from."""


def _fmt_seconds(value: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="Also show the settings this host gets (repeatable).")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN",
              help="Also show the route and the limit key of recipients at DOMAIN (repeatable); "
                   "an MX route looks its MX hosts up in DNS.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--strict", is_flag=True,
              help="Unset secrets (a profile's password_env) are errors, not warnings.")
def config_check(
    file: str | None, hosts: tuple[str, ...], domains: tuple[str, ...], as_json: bool, strict: bool
) -> None:
    """Check FILE (default: $SMTPRETRY_CONFIG) and print the effective settings per
    destination.

    Exit status 2, with one line per problem, when the file is not valid. A profile's
    password variable that is not set is a warning; with --strict, an error.
    """
    import json as json_module

    from ..config import load_config

    if file is None:
        file = os.environ.get(CONFIG_ENV) or None
        if file is None:
            fail(f"give a FILE to check, or set {CONFIG_ENV}")
    try:
        config = load_config(file)
    except ConfigError as exc:
        for problem in str(exc).splitlines():
            click.echo(f"smtpretry: error: {problem}", err=True)
        sys.exit(2)
    unset = config.unset_secrets()
    for problem in unset:
        click.echo(f"smtpretry: {'error' if strict else 'warning'}: {problem}", err=True)
    if unset and strict:
        sys.exit(2)
    chosen: list[tuple[str, Any, Profile | None]] = [("[defaults]", config.settings_of(None), None)]
    chosen += [(rule.key, config.settings_of(rule.key), None) for rule in config.rules]
    chosen += [(f"profile {n}", config.settings_for(p.host, p.port), p) for n, p in config.profiles.items()]
    chosen += [(host, config.settings_for(host), None) for host in hosts]
    routes = _routes(config, domains) if domains else []
    rows = []
    for label, s, profile in chosen:
        rows.append({
            "destination": label,
            "rule": s.rule,
            "host": profile.host if profile else None,
            "port": profile.port if profile else None,
            "tls": profile.tls.value if profile else None,
            "username": profile.username if profile else None,
            "password_env": profile.password_env if profile else None,
            "max_connections": s.limits.max_connections,
            "max_messages_per_connection": s.limits.max_messages_per_connection,
            "max_messages_per_minute": _number(s.limits.max_messages_per_minute),
            "backoff": f"{_fmt_seconds(s.policy.backoff_base)}..{_fmt_seconds(s.policy.backoff_cap)}",
            "max_attempts": s.policy.max_attempts,
            "defer_schedule": ", ".join(_fmt_seconds(v) for v in s.policy.defer_schedule),
            "max_lifetime": _fmt_seconds(s.policy.max_lifetime),
            "delivery": s.policy.delivery.value,
        })
    if as_json:
        out: dict[str, object] = {"file": file, "queue_url": config.queue_url, "destinations": rows,
                                  "warnings": unset}
        if domains:
            out["domains"] = routes
        click.echo(json_module.dumps(out, indent=2))
        return
    columns = ["destination", "rule", "host", "port", "tls", "username", "password_env", "max_connections",
               "max_messages_per_connection", "max_messages_per_minute", "backoff", "max_attempts",
               "defer_schedule", "max_lifetime", "delivery"]
    if not config.profiles:
        columns = [c for c in columns if c not in _PROFILE_COLUMNS]  # nothing to show in them
    show_table(
        columns, [["" if row[c] is None else str(row[c]) for c in columns] for row in rows],
        title=f"{file}: valid", right=("port", "max_connections", "max_messages_per_connection",
                                       "max_messages_per_minute", "max_attempts"),
    )
    if routes:
        keys = ("domain", "route", "via", "mx_hosts", "limit_key", "max_connections", "outcome")
        show_table(keys, [["" if r[c] is None else str(r[c]) for c in keys] for r in routes],
                   title="routes", right=("max_connections",))
    if config.queue_url:
        click.echo(f"queue: {config.queue_url}")


_PROFILE_COLUMNS = frozenset({"host", "port", "tls", "username", "password_env"})


def _number(value: float | None) -> int | float | None:
    """60.0 is shown, and written in JSON, as 60."""
    return int(value) if value is not None and value == int(value) else value


def _routes(config: Config, domains: tuple[str, ...]) -> list[dict[str, object]]:
    """Each domain's route and limit key, as a Router would give them (DNS asked for MX routes)."""
    from ..router import Router

    async def plan_all() -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        async with Router(config) as router:
            for domain in domains:
                try:
                    plan = await router.plan(domain)
                except ValueError as exc:
                    fail(str(exc))
                rows.append({
                    "domain": plan.domain,
                    "route": plan.route.key if plan.route else None,
                    "via": plan.route.via if plan.route else None,
                    "mx_hosts": ", ".join(f"{h.name} ({h.preference})" for h in plan.mx_hosts) or None,
                    "limit_key": plan.limit_key,
                    "max_connections": plan.settings.limits.max_connections if plan.settings else None,
                    "outcome": str(plan.failure) if plan.failure is not None else "ok",
                })
        return rows

    if not config.routes:
        fail(f"{config.source}: --domain: the file has no [routes] table")
    try:
        return asyncio.run(plan_all())
    except ConfigError as exc:
        fail(str(exc))


config_group.add_command(init_command)
