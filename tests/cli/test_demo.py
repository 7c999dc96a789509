"""``smtpretry demo`` as a user runs it: the installed command in a process of its own.

Its first screen states the scenario; then come the decisions that are not plain deliveries
(all of them with ``--verbose``), with a live line of counts and the cap on a terminal; its
last line explains the result, checked at the server.
"""

from __future__ import annotations

import re

from tests.cli.conftest import TERMINAL, plain, run

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
SCENARIO = re.compile(
    r"Scenario: 60 messages to 180 recipients through a local server that allows 3 connections at once "
    r"\(421 to more\), with a client cap of 8 connections; (?P<full>\d+) recipients are over quota "
    r"\(full\*: 422 4\.2\.2, deferred\) and (?P<big>\d+) get a message too large for their mailbox "
    r"\(big\*: 422 4\.3\.4, failed\)\."
)
LAST = ("consistent: yes: every recipient ended delivered, deferred or failed as the server scripted it, "
        "and each delivered recipient got exactly one copy, counted at the server")


def test_the_demo_opens_with_its_scenario_and_its_last_line_explains_the_result() -> None:
    done = run("demo", "--messages", "60")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    scenario = SCENARIO.fullmatch(lines[0])
    assert scenario, lines[0]
    assert re.fullmatch(rf"Shown: the decisions other than plain deliveries \(--verbose: all\), at seconds "
                        rf"since {ISO}\.", lines[1]), lines[1]
    assert lines[-1] == LAST
    summary = dict(ln.split(": ", 1) for ln in lines if not re.match(r"\s*\d+\.\d+s ", ln))
    # The scenario's figures are the server's script, and the result follows it.
    assert summary["deferred"].startswith(f"{scenario['full']} (over quota, 422 4.2.2")
    assert summary["failed"].startswith(f"{scenario['big']} (message too large")
    cap = r"8 -> 4 -> .* \(\d+ lowered after a 421(, \d+ raised after 20 successes in a row)?\)"
    assert re.fullmatch(cap, summary["cap changes"]), summary["cap changes"]
    assert summary["copies per delivered recipient"] == "exactly 1 (counted at the server)"
    assert re.fullmatch(rf"\d+\.\d\d s, from {ISO}", summary["duration"])
    # Only what is not a plain delivery is shown, and its times carry the date and the zone.
    decisions = [ln for ln in lines[2:] if re.match(r"\s*\d+\.\d+s ", ln)]
    labels = {ln.split()[1] for ln in decisions}
    assert "DELIVERED" not in labels and {"CAP", "RETRY", "DEFERRED", "FAILED"} <= labels
    assert all(re.search(rf"deferred until {ISO} after", ln) for ln in decisions if " DEFERRED " in ln)
    assert len(decisions) < 100  # not the 180 recipients' deliveries
    verbose = run("demo", "--messages", "60", "--verbose").stdout.splitlines()
    assert sum(" DELIVERED " in ln for ln in verbose) > 20


def test_on_a_terminal_the_demo_shows_a_live_view_of_counts_and_the_cap() -> None:
    done = run("demo", "--messages", "60", env=TERMINAL)
    assert done.returncode == 0, done.stderr
    screen = plain(done.stdout)
    assert screen.lstrip().startswith("Scenario: 60 messages to 180 recipients")
    assert re.search(r"\d+/60 messages · \d+ delivered · \d+ deferred · \d+ failed · cap \d of 8", screen)
    assert re.search(r"│ consistent +│ yes: every recipient ended delivered, deferred or failed", screen)
    assert "DELIVERED" not in screen
