"""``logs report``: one self-contained HTML page, rendered in a real headless Chromium; and
the report a user draws from the demo's own log, with the installed command.

Chromium comes from Debian's packages (``apt-get install -y chromium``). Without it the
browser test is skipped on a developer's machine, but never in CI (``CI`` set): there it
fails, so a missing browser cannot pass silently.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from smtpretry.cli.logs import logs_group
from tests.cli.conftest import run
from tests.logs.conftest import REPO, Scenario

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_report(scenario: Scenario, out: Path) -> str:
    done = CliRunner().invoke(
        logs_group, ["report", str(scenario.first_log), str(scenario.second_log), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert done.stderr.startswith(f"wrote {out}")
    return out.read_text(encoding="utf-8")


def test_the_page_is_self_contained_and_has_charts_and_tables(scenario: Scenario, tmp_path: Path) -> None:
    page = make_report(scenario, tmp_path / "report.html")
    assert page.startswith("<!DOCTYPE html>")
    # Nothing to fetch: no external script, style sheet, image, font or import.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"<link\b|@import|url\(", page, re.I)
    assert "<script" not in page.lower()
    assert not re.search(r"https?://", page)
    # One decisions chart per destination, plus cap, 421 rate and backlog.
    assert page.count("<svg") == 2 + 3
    for title in ("Effective connection cap", "421 replies per minute", "Deferred backlog"):
        assert title in page
    assert scenario.throttle in page and scenario.plain in page
    assert "mailbox_full" in page and "message_too_large" in page
    assert os.stat(tmp_path / "report.html").st_mode & 0o777 == 0o644


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _screenshot(url: str, png: Path, profile: Path) -> None:
    assert CHROMIUM is not None
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         f"--screenshot={png}", "--window-size=1200,1600", url],
        capture_output=True, timeout=120, check=False,
    )
    assert png.exists(), f"chromium wrote no screenshot of {url}"


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (apt-get install -y chromium); required in CI")
def test_the_report_renders_in_headless_chromium(scenario: Scenario, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI must have chromium: apt-get install -y chromium"
    report = tmp_path / "report.html"
    make_report(scenario, report)
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    shot, empty = tmp_path / "report.png", tmp_path / "blank.png"
    _screenshot(report.as_uri(), shot, tmp_path / "profile1")
    _screenshot(blank.as_uri(), empty, tmp_path / "profile2")
    assert _png_size(shot) == (1200, 1600)
    # A rendered page of charts and tables compresses far worse than a blank one.
    assert shot.stat().st_size > 40_000
    assert shot.stat().st_size > 5 * empty.stat().st_size


# -- the report drawn from the demo's own log, as a user makes it -----------------------------

TICK = re.compile(r'<text class="tick"[^>]*>([^<]+)</text>')


def _seconds_of_day(label: str) -> float:
    h, m, s = label.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("demo-report")
    log = tmp / "demo.jsonl"
    done = run("demo", "--messages", "120", "--quiet", "--log-file", str(log))
    assert done.returncode == 0, done.stderr
    page = run("logs", "report", str(log), "-o", "-")
    assert page.returncode == 0 and page.stderr == "", page.stderr
    assert not (tmp / "-").exists()
    return log, page.stdout


def test_a_report_of_the_demos_log_shows_the_cap_falling_and_recovering(
    demo_report: tuple[Path, str],
) -> None:
    _, page = demo_report
    assert page.startswith("<!DOCTYPE html>")
    # The cap chart starts at the configured cap, falls after the 421s and climbs back.
    [desc] = re.findall(r'aria-label="Effective connection cap[^"]*"><desc>([^<]+)</desc>', page)
    values = [int(v) for v in re.findall(r"(\d+) from \d\d:", desc)]
    assert values[0] == 8, desc
    lowest = min(values)
    assert lowest < 8 and values.index(lowest) < len(values) - 1 and values[-1] > lowest, desc
    # A readable time axis: ticks at round instants, evenly spaced, as precise as needed.
    charts = page.split('<div class="chart">')[1:]
    assert len(charts) == 4  # decisions at the one destination, cap, 421 rate, backlog
    for chart in charts:
        labels = TICK.findall(chart)
        assert 3 <= len(labels) <= 9, labels
        assert all(re.fullmatch(r"\d\d:\d\d:\d\d(\.\d)?", label) for label in labels), labels
        seconds = [_seconds_of_day(label) for label in labels]
        steps = {round(b - a, 3) for a, b in zip(seconds, seconds[1:], strict=False)}
        assert len(steps) == 1 and steps.pop() in (0.2, 0.5, 1.0), labels
        assert "UTC, 20" in chart  # the date and the zone
        # Counts and caps have whole ticks.
        if "per minute" not in chart:
            y_labels = re.findall(r'text-anchor="end">([\d.]+)</text>', chart)
            assert y_labels and all("." not in v for v in y_labels), y_labels
    assert "421 replies per minute" in page and "counted over 1 s" in page


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (apt-get install -y chromium); required in CI")
def test_the_demo_report_renders_in_headless_chromium(demo_report: tuple[Path, str], tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI must have chromium: apt-get install -y chromium"
    _, page = demo_report
    html = tmp_path / "demo.html"
    html.write_text(page, encoding="utf-8")
    shot = tmp_path / "demo.png"
    _screenshot(html.as_uri(), shot, tmp_path / "profile")
    assert _png_size(shot) == (1200, 1600)
    assert shot.stat().st_size > 40_000


def test_a_destination_that_only_failed_to_connect_still_gets_its_chart(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    log = tmp_path / "app.jsonl"
    script = (
        "import asyncio, smtpretry\n"
        f"smtpretry.configure_logging(file={str(log)!r})\n"
        f"mailer = smtpretry.Mailer('127.0.0.1', {port}, tls='none',\n"
        "    policy=smtpretry.RetryPolicy(backoff_base=0.001, max_attempts=3))\n"
        "msg = b'From: a@example.org\\r\\nTo: b@example.org\\r\\nSubject: x\\r\\n\\r\\nhi\\r\\n'\n"
        "result = asyncio.run(mailer.send(msg))\n"
        "assert [o.status.value for o in result.outcomes.values()] == ['deferred']\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    page = run("logs", "report", str(log), "-o", "-").stdout
    heading = f"Recipient decisions at 127.0.0.1:{port}"
    [chart] = [c for c in page.split('<div class="chart">') if heading in c]
    # bars, not an empty frame: the retries of the refused connection, then the deferral
    assert 'width="12" height="12" rx="2" fill="#eab308"' in chart  # the legend's retry
    assert chart.count('fill="#eab308"') >= 2 and chart.count('fill="#c026d3"') >= 2
