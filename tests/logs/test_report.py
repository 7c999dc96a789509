"""``logs report``: one self-contained HTML page, rendered in a real headless Chromium.

Chromium comes from Debian's packages (``apt-get install -y chromium``). Without it the
browser test is skipped on a developer's machine, but never in CI (``CI`` set): there it
fails, so a missing browser cannot pass silently.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from smtpretry.cli.logs import logs_group
from tests.logs.conftest import Scenario

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
    for title in ("Effective connection cap", "421 replies per second", "Deferred backlog"):
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
