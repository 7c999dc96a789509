"""``smtpretry config init [FILE]``: write a commented configuration file to start from.

The file (``smtpretry.toml`` in the working directory by default, ``-`` for standard
output) sets the defaults explicitly and shows every other key commented out, with what it
does. It names no secret, so ``config check`` accepts it as it is. An existing file is never
overwritten.
"""

from __future__ import annotations

import os

import click

from ._errors import fail

__all__ = ["SAMPLE", "init_command"]

SAMPLE = """\
# smtpretry configuration. `smtpretry config check FILE` shows what each destination gets.
#
# One file serves the command line (--config FILE, or SMTPRETRY_CONFIG), Mailer(config=...)
# (smtpretry.load_config(FILE)) and the smtplib facade (SMTPRETRY_CONFIG). Durations are
# seconds or strings with a unit: "250ms", "30s", "5m", "2h", "5d". The lines starting with
# "# " are examples: remove the "# " to use one.

# backend = "redis://127.0.0.1:6379/0"  # share the caps and the queue between workers (redis extra)
# helo_name = "mail.example.org"        # the name MX hosts are greeted with ([routes] via = "mx")

[defaults]                       # every destination, where no [destinations."..."] rule says more
max_connections = 10             # connections open at once to one destination (the configured cap)
max_messages_per_connection = 100
# max_messages_per_minute = 600  # a pace per destination; no limit when unset
# idle_timeout = "5s"            # how long an unused connection is kept for the next message
# adaptive = true                # lower the cap when the server throttles, raise it back after successes
# cap_recovery = 20              # successes in a row per step back up
# cap_probe_after = "5m"         # how long a refused cap level is remembered

[defaults.retry]
backoff_base = "1s"              # the first wait before a retry; doubles each time, with full jitter
backoff_cap = "5m"               # the longest wait
max_attempts = 6                 # connections tried within one send before a recipient is deferred
# max_elapsed = "15m"            # time within one send before a recipient is deferred
defer_schedule = ["5m", "15m", "30m", "1h", "2h", "4h"]  # when a deferred recipient is tried again
max_lifetime = "5d"              # after that, a deferred recipient fails as expired
# delivery = "at_least_once"     # or "at_most_once": never send twice, even when a reply is lost

# The settings a destination gets: the most specific rule, each naming only what it changes.
# [destinations."smtp.example-isp.net"]        # one host, every port ("host:port": one port)
# max_connections = 2
# max_messages_per_minute = 60
# [destinations."smtp.example-isp.net".retry]
# backoff_base = "30s"
# [destinations."mx:.google.com"]              # every host ending so shares ONE limit
# max_connections = 20
# [destinations."*.mail.example.com"]          # a glob on the host: each host its own limit
# max_connections = 4
# [destinations."domain:yahoo.com"]            # by the recipients' domain, where no host rule matches
# max_connections = 5

# Where and how to connect: `smtpretry send --profile isp`, Mailer.from_profile(config, "isp").
# [profiles.isp]
# host = "smtp.example-isp.net"
# port = 587
# tls = "starttls"                             # the default; "implicit" (port 465) or "none"
# username = "app@example.org"
# password_env = "ISP_SMTP_PASSWORD"           # read from this environment variable, never stored
# timeout = "60s"                              # for each reply
# local_hostname = "app.example.org"           # the name sent in EHLO
# allow_plaintext_auth = false                 # a password over an unencrypted connection

# Routing by recipient domain (smtpretry send --routes, smtpretry.Router; the mx extra for MX).
# [routes."domain:example.com"]                # this domain: through a profile
# via = "profile:isp"
# [routes.default]                             # every other domain: straight to its MX hosts
# via = "mx"
# mx_port = 25
# tls = "opportunistic"                        # or "required" (verified) or "none"
# allow_private_mx = false                     # MX addresses on private networks are refused
# [dns]
# nameservers = ["192.0.2.53"]                 # none: the system's resolver
# timeout = "10s"
# negative_ttl = "1m"                          # how long a failed lookup is remembered
# nxdomain = "fail"                            # or "defer"

# Where deferred recipients wait (default: $XDG_STATE_HOME/smtpretry/queue.db).
# [queue]
# url = "sqlite:///var/lib/smtpretry/queue.db"
"""

DEFAULT_FILE = "smtpretry.toml"


@click.command("init")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), default=DEFAULT_FILE,
                required=False, metavar="[FILE]")
def init_command(file: str) -> None:
    """Write a commented configuration to FILE (default: smtpretry.toml here; - for
    standard output). An existing file is never overwritten."""
    if file == "-":
        click.echo(SAMPLE, nl=False)
        return
    try:
        # O_EXCL: never overwrite, even a file that appears between a check and the write.
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        fail(f"{file} exists: not overwritten (remove it, or give another FILE)")
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(SAMPLE)
    click.echo(f"wrote {file}: check it with `smtpretry config check {file}`", err=True)
