"""One self-contained HTML page about a decision log: charts over time and the summary tables.

What this module owns: :func:`render_report`, which turns a :class:`Summary` into HTML. The
page needs nothing but itself: the charts are inline SVG drawn here, the style is one inline
``<style>`` block, there is no script and no link to anything, so it opens offline, in a mail
attachment or a CI artefact.

Charts, per destination and over the log's time span (buckets from ``Timeline``):

- recipient decisions by outcome (delivered, retry, deferred, failed), stacked;
- the effective connection cap (from ``cap_lowered``/``cap_raised`` and the
  ``connections_cap`` key of other events), carried forward between events;
- 421 replies per second (or per minute, for logs longer than ten minutes);
- the deferred backlog: recipients deferred and not yet delivered or failed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from .. import __version__
from ..events import SCHEMA_VERSION
from .parse import clock
from .summary import STATUSES, Bucket, DestinationStats, Summary, Timeline

__all__ = ["render_report"]

PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#b91c1c")
OUTCOMES = (
    ("delivered", "delivered", "#16a34a"),
    ("retried", "retry", "#eab308"),
    ("deferred", "deferred", "#c026d3"),
    ("failed", "failed", "#dc2626"),
)
W, H = 1080, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 30, 34

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 24px auto; max-width: 1120px; color: #1f2937; background: #f8fafc; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #6b7280; margin: 0 0 16px; }
.warn { background: #fef3c7; border: 1px solid #f59e0b; padding: 8px 12px; border-radius: 6px; }
.kpis { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0 4px; }
.kpi { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 14px; min-width: 112px; }
.kpi b { display: block; font-size: 22px; } .kpi span { color: #6b7280; font-size: 12px; }
.chart { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; margin: 10px 0; padding: 4px; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: #374151; }
svg .title { font-size: 13px; font-weight: 600; fill: #111827; }
*, *::before, *::after { box-sizing: border-box; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; width: 100%; font-size: 12px; margin: 6px 0; }
th, td { border: 1px solid #e5e7eb; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f1f5f9; } td.l, th.l { text-align: left; }
.ok { color: #15803d; } .def { color: #a21caf; } .bad { color: #b91c1c; }
footer { color: #9ca3af; font-size: 12px; margin: 24px 0; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = step * 10 ** exp
        if top >= value:
            return float(top)
    return float(10 ** (exp + 1))


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


class _Frame:
    """Axes for one chart: time along x (bucket indices ``lo``..``hi``), values up y."""

    def __init__(self, title: str, timeline: Timeline, y_max: float, y_label: str) -> None:
        span = timeline.span()
        self.lo = span.start
        self.n = max(1, len(span))
        self.width = timeline.width
        self.y_max = _nice_max(y_max)
        self.parts: list[str] = []
        self.title = title
        self.y_label = y_label
        self.plot_w = W - LEFT - RIGHT
        self.plot_h = H - TOP - BOTTOM

    def x(self, idx: float) -> float:
        return LEFT + (idx - self.lo) / self.n * self.plot_w

    def y(self, value: float) -> float:
        return TOP + self.plot_h - value / self.y_max * self.plot_h

    def axes(self) -> None:
        p = self.parts
        p.append(f'<text class="title" x="{LEFT}" y="18">{_e(self.title)}</text>')
        for k in range(5):
            value = self.y_max * k / 4
            y = self.y(value)
            p.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
            p.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
        p.append(f'<text x="14" y="{TOP + self.plot_h / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {TOP + self.plot_h / 2:.0f})">{_e(self.y_label)}</text>')
        bottom = TOP + self.plot_h
        p.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#9ca3af"/>')
        start = self.lo * self.width
        total = self.n * self.width
        ticks = 6
        for k in range(ticks + 1):
            ts = start + total * k / ticks
            x = LEFT + self.plot_w * k / ticks
            label = clock(ts) if total < 600 else clock(ts)[:8] if total < 86400 else \
                datetime.fromtimestamp(ts, UTC).strftime("%m-%d %H:%M")
            anchor = "start" if k == 0 else "end" if k == ticks else "middle"
            p.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#9ca3af"/>')
            p.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="{anchor}">{_e(label)}</text>')
        p.append(f'<text x="{W - RIGHT}" y="{H - 2}" text-anchor="end" fill="#6b7280">'
                 f'UTC, bucket {_e(_duration(self.width))}</text>')

    def legend(self, items: Sequence[tuple[str, str]]) -> None:
        x = float(W - RIGHT)
        for label, colour in reversed(items):
            width = 18 + 6.5 * len(label)
            x -= width + 10
            self.parts.append(f'<rect x="{x:.0f}" y="8" width="12" height="12" rx="2" fill="{colour}"/>')
            self.parts.append(f'<text x="{x + 16:.0f}" y="18">{_e(label)}</text>')

    def svg(self) -> str:
        body = "".join(self.parts)
        return (f'<div class="chart"><svg viewBox="0 0 {W} {H}" width="100%" role="img" '
                f'aria-label="{_e(self.title)}">{body}</svg></div>')


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    if seconds < 86400:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 86400:g} d"


def _stacked(title: str, timeline: Timeline, series: dict[int, Bucket]) -> str:
    span = timeline.span()
    top = max((sum(getattr(b, key) for key, _, _ in OUTCOMES) for b in series.values()), default=0)
    f = _Frame(title, timeline, top, "recipients")
    f.axes()
    bar = f.plot_w / f.n
    gap = 0.15 * bar if bar > 4 else 0.0
    for idx in span:
        b = series.get(idx)
        if b is None:
            continue
        base = 0.0
        for key, _, colour in OUTCOMES:
            value = getattr(b, key)
            if not value:
                continue
            y0, y1 = f.y(base), f.y(base + value)
            f.parts.append(f'<rect x="{f.x(idx) + gap / 2:.2f}" y="{y1:.2f}" '
                           f'width="{max(bar - gap, 0.6):.2f}" '
                           f'height="{y0 - y1:.2f}" fill="{colour}"/>')
            base += value
    f.legend([(label, colour) for _, label, colour in OUTCOMES])
    return f.svg()


def _lines(title: str, y_label: str, timeline: Timeline, destinations: Sequence[str],
           value: Callable[[str], list[float | None]], *, step: bool) -> str:
    values = {d: value(d) for d in destinations}
    top = max((v for vs in values.values() for v in vs if v is not None), default=0.0)
    f = _Frame(title, timeline, top, y_label)
    f.axes()
    lo = f.lo
    for i, d in enumerate(destinations):
        colour = PALETTE[i % len(PALETTE)]
        points: list[str] = []
        segments: list[list[str]] = []
        for k, v in enumerate(values[d]):
            if v is None:
                if points:
                    segments.append(points)
                    points = []
                continue
            x0, x1 = f.x(lo + k), f.x(lo + k + 1)
            y = f.y(v)
            if step:
                points += [f"{x0:.1f},{y:.1f}", f"{x1:.1f},{y:.1f}"]
            else:
                points.append(f"{(x0 + x1) / 2:.1f},{y:.1f}")
        if points:
            segments.append(points)
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                f.parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            else:
                f.parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                               f'stroke-linejoin="round" points="{" ".join(seg)}"/>')
    f.legend([(d, PALETTE[i % len(PALETTE)]) for i, d in enumerate(destinations)])
    return f.svg()


def _cap_values(timeline: Timeline, destination: str) -> list[float | None]:
    series = timeline.series.get(destination, {})
    out: list[float | None] = []
    current: float | None = None
    for idx in timeline.span():
        b = series.get(idx)
        if b is not None and b.cap_min is not None:
            out.append(float(b.cap_min))  # the lowest the cap went in the bucket
            current = float(b.cap_last) if b.cap_last is not None else current
        else:
            out.append(current)
    return out


def _backlog_values(timeline: Timeline, destination: str) -> list[float | None]:
    series = timeline.series.get(destination, {})
    out: list[float | None] = []
    level = 0
    for idx in timeline.span():
        b = series.get(idx)
        if b is not None:
            level += b.backlog_delta
        out.append(float(level))
    return out


def _rate_values(timeline: Timeline, destination: str, per: float) -> list[float | None]:
    series = timeline.series.get(destination, {})
    out: list[float | None] = []
    for idx in timeline.span():
        b = series.get(idx)
        out.append((b.replies_421 if b is not None else 0) / timeline.width * per)
    return out


_SHORT = {"delivered": "dlv", "deferred": "def", "failed": "fail", "pending": "pend"}


def _counts_cells(counts: dict[str, int]) -> str:
    classes = {"delivered": "ok", "deferred": "def", "failed": "bad", "pending": ""}
    return "".join(f'<td class="{classes[s]}">{counts[s]}</td>' for s in STATUSES)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _destination_table(summary: Summary) -> str:
    head = ("<tr><th class=l rowspan=2>destination</th><th colspan=4>messages</th>"
            "<th colspan=4>recipients</th><th rowspan=2>421</th><th rowspan=2>retries</th>"
            "<th rowspan=2>backoff s</th><th rowspan=2>cap<br>↓/↑</th>"
            "<th rowspan=2>cap<br>cfg/min/last</th><th colspan=3>time to delivery s</th></tr><tr>"
            + "".join(f'<th title="{s}">{_SHORT[s]}</th>' for s in STATUSES) * 2
            + "<th>p50</th><th>p95</th><th>max</th></tr>")
    rows = []
    items: list[DestinationStats] = [d for _, d in sorted(summary.destinations.items())]
    if len(items) > 1:
        items.append(summary.total)
    for d in items:
        name = "all destinations" if d is summary.total else d.destination
        cap = "" if d is summary.total else "/".join(
            "–" if v is None else str(v) for v in (d.cap_configured, d.cap_min, d.cap_last))
        q = d.delivery_time
        rows.append(
            f"<tr><td class=l>{_e(name)}</td>{_counts_cells(d.messages)}{_counts_cells(d.recipients)}"
            f"<td>{d.replies_421}</td><td>{d.retries}</td><td>{d.backoff_s:.3f}</td>"
            f"<td>{d.cap_lowered}/{d.cap_raised}</td><td>{_e(cap)}</td>"
            f"<td>{_seconds(q.quantile(0.5))}</td><td>{_seconds(q.quantile(0.95))}</td>"
            f"<td>{_seconds(q.maximum)}</td></tr>"
        )
    return f"<div class=scroll><table>{head}{''.join(rows)}</table></div>"


def _category_table(summary: Summary) -> str:
    head = ("<tr><th class=l rowspan=2>destination</th><th class=l rowspan=2>category</th>"
            "<th rowspan=2>decisions</th><th colspan=4>messages that met it, ended</th>"
            "<th colspan=4>recipients that met it, ended</th></tr><tr>"
            + "".join(f'<th title="{s}">{_SHORT[s]}</th>' for s in STATUSES) * 2 + "</tr>")
    rows = [
        f"<tr><td class=l>{_e(c.destination)}</td><td class=l>{_e(c.category)}</td><td>{c.replies}</td>"
        f"{_counts_cells(c.messages)}{_counts_cells(c.recipients)}</tr>"
        for _, c in sorted(summary.categories.items())
    ]
    return f"<div class=scroll><table>{head}{''.join(rows)}</table></div>"


def _kpis(summary: Summary) -> str:
    t = summary.total
    items = [
        (t.recipients["delivered"], "recipients delivered"),
        (t.recipients["deferred"], "recipients deferred"),
        (t.recipients["failed"], "recipients failed"),
        (t.recipients["pending"], "recipients pending"),
        (t.replies_421, "421 replies"),
        (t.retries, "retries"),
        (f"{t.backoff_s:.2f} s", "backoff time"),
        (f"{t.cap_lowered}↓ {t.cap_raised}↑", "cap changes"),
    ]
    if t.pace_lowered or t.pace_raised:
        items.append((f"{t.pace_lowered}↓ {t.pace_raised}↑", "pace changes"))
    return '<div class="kpis">' + "".join(
        f'<div class="kpi"><b>{_e(v)}</b><span>{_e(label)}</span></div>' for v, label in items
    ) + "</div>"


def render_report(summary: Summary, *, title: str = "smtpretry decision log") -> str:
    """The HTML page for ``summary`` (built with :func:`summarize`), as text."""
    t = summary.total
    stats = summary.stats
    destinations = sorted(summary.destinations)
    timeline = summary.timeline
    long_log = len(timeline.span()) * timeline.width > 600
    per, per_label = (60.0, "per minute") if long_log else (1.0, "per second")
    sub = (f"{len(stats.files)} file(s): {', '.join(stats.files)} · {stats.records} records · "
           f"{clock(t.first_ts, date=True)} – {clock(t.last_ts, date=True)} UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1><p class=sub>{_e(sub)}</p>",
    ]
    note = stats.describe()
    if note:
        parts.append(f'<p class="warn">{_e(note)}</p>')
    if summary.filtered:
        parts.append(f"<p class=sub>{summary.filtered} records outside the time window left out.</p>")
    parts.append(_kpis(summary))
    if not timeline.series:
        parts.append("<p>No timestamped decisions to chart.</p>")
    else:
        parts.append("<h2>Decisions over time</h2>")
        for d in destinations:
            if d in timeline.series:
                parts.append(_stacked(f"Recipient decisions at {d}", timeline, timeline.series[d]))
        parts.append(_lines("Effective connection cap", "connections", timeline, destinations,
                            lambda d: _cap_values(timeline, d), step=True))
        parts.append(_lines(f"421 replies {per_label}", f"421 {per_label}", timeline, destinations,
                            lambda d: _rate_values(timeline, d, per), step=False))
        parts.append(_lines("Deferred backlog", "recipients", timeline, destinations,
                            lambda d: _backlog_values(timeline, d), step=True))
    parts.append("<h2>Per destination</h2>")
    parts.append("<p class=sub>dlv delivered · def deferred · fail failed · pend pending (no final event "
                 "in the log) · 421 replies · retries = backoff waits · cap ↓/↑ = changes of the "
                 "effective connection cap</p>")
    parts.append(_destination_table(summary))
    parts.append("<h2>Per category</h2>")
    parts.append("<p class=sub>A recipient counts under every category it met; one delivered at once "
                 "met only <i>accepted</i>. A message counts by its worst recipient.</p>")
    parts.append(_category_table(summary))
    parts.append(f"<footer>smtpretry {_e(__version__)} · log schema version {SCHEMA_VERSION} · "
                 f"generated {clock(datetime.now(UTC).timestamp(), date=True)} UTC</footer>")
    parts.append("</body></html>")
    return "\n".join(parts)
