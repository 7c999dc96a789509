"""`logs summary` of a Router's log: per provider (the destination of an MX route's events is
its limit key) and per recipient domain (from ``route_resolved``). The events are the ones a
real Router logs, through a real DNS server to MX hosts on 127.0.0.2 and 127.0.0.3."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from structlog.testing import capture_logs

from smtpretry import Router
from smtpretry.cli.logs import logs_group
from smtpretry.logs import ReadStats, read_records, summarize
from smtpretry.logs.report import render_report
from tests.dns_server import Zone, dns_server
from tests.integration.test_router import config, message, mx_pair
from tests.servers import ScriptedHandler


async def test_a_routed_log_is_summarised_per_provider_and_per_domain(tmp_path: Path) -> None:
    p, q = ScriptedHandler(rcpt={"gone@b.test": ["550 5.1.1 User unknown"]}), ScriptedHandler()
    zone = Zone(mx={"a.test": [(10, "mx.p.test")], "b.test": [(10, "mx.p.test")],
                    "c.test": [(10, "mx.q.test")], "null.test": [(0, ".")]},
                a={"mx.p.test": ["127.0.0.2"], "mx.q.test": ["127.0.0.3"]})
    with dns_server(zone) as dns:
        async with mx_pair(p, q) as port:
            with capture_logs() as logs:
                async with Router(config(dns.port, port)) as router:
                    await router.send(message("ann@a.test", "bob@b.test", "gone@b.test", "cat@c.test",
                                              "dan@null.test", mid="<r1@t>"))
                    await router.send(message("eve@a.test", mid="<r2@t>"))
    log = tmp_path / "routed.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in logs))
    stats = ReadStats()
    summary = summarize(read_records([str(log)], stats), stats=stats)

    by_provider = {name: d.recipients for name, d in summary.destinations.items()}
    assert by_provider["mx.p.test"] == {"delivered": 3, "deferred": 0, "failed": 1, "pending": 0}
    assert by_provider["mx.q.test"] == {"delivered": 1, "deferred": 0, "failed": 0, "pending": 0}
    domains = {name: (sorted(d.providers), d.resolved, d.from_cache, d.recipients)
               for name, d in summary.domains.items()}
    assert domains == {
        "a.test": (["mx.p.test"], 2, 1, {"delivered": 2, "deferred": 0, "failed": 0, "pending": 0}),
        "b.test": (["mx.p.test"], 1, 0, {"delivered": 1, "deferred": 0, "failed": 1, "pending": 0}),
        "c.test": (["mx.q.test"], 1, 0, {"delivered": 1, "deferred": 0, "failed": 0, "pending": 0}),
        "null.test": ([], 1, 0, {"delivered": 0, "deferred": 0, "failed": 1, "pending": 0}),
    }
    assert summary.as_dict()["domains"][0]["routes"] == ["default"]

    table = CliRunner().invoke(logs_group, ["summary", str(log)])
    assert table.exit_code == 0, table.output
    assert "Per recipient domain" in table.stdout and "null.test" in table.stdout
    assert "mx.q.test" in render_report(summary)  # the report charts per provider


def test_a_mailers_log_has_no_domain_table() -> None:
    summary = summarize(iter(()))
    assert summary.domains == {} and "domains" not in summary.as_dict()
