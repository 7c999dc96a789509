"""One self-contained HTML page about a decision log: charts over time and the summary tables.

What this module owns: :func:`render_report`, which turns a :class:`Summary` into HTML. The
page needs nothing but itself: the charts are inline SVG drawn here, the style is one inline
``<style>`` block, there is no script and no link to anything, so it opens offline, in a mail
attachment or a CI artefact.

Charts, per destination and over the log's time span (buckets from ``Timeline``), on a time
axis with ticks at round instants (``19:51:22.4``, ``19:52``, ``2026-12-05``) and value axes
with round ticks (never a fraction of a count):

- recipient decisions by outcome (delivered, retry, deferred, failed), stacked, and the
  retries of the facade's ``connect()``/``login()``, which name no recipient: every
  destination of the log gets its chart, one that only failed to connect too;
- the effective connection cap (from ``cap_lowered``/``cap_raised`` and the
  ``connections_cap`` key of other events), from the configured cap at the start of the
  axis, carried forward between events (its changes are also in the chart's ``<desc>``);
- 421 replies per minute, counted over buckets of at least a second (:func:`rate_width`);
- the deferred backlog: recipients deferred and not yet delivered or failed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from .. import __version__
from .._time import iso
from ..events import SCHEMA_VERSION
from .summary import BUCKET_WIDTHS, STATUSES, Bucket, DestinationStats, Summary, Timeline

__all__ = ["rate_width", "render_report", "tick_label", "time_step", "time_ticks", "value_ticks"]

PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#b91c1c")
OUTCOMES = (
    ("delivered", "delivered", "#16a34a"),
    ("retried", "retry", "#eab308"),
    ("deferred", "deferred", "#c026d3"),
    ("failed", "failed", "#dc2626"),
    ("connect_retried", "connect retry", "#64748b"),
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


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


# -- axes ------------------------------------------------------------------------------------

# Steps between time ticks, in seconds: round instants at every scale.
_TIME_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
               60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
               86400.0, 172800.0, 604800.0)


def time_step(span_s: float, *, most: int = 8) -> float:
    """The step between time ticks for a span: the smallest round one that needs at most
    ``most`` ticks."""
    return next((s for s in _TIME_STEPS if span_s / s <= most), _TIME_STEPS[-1])


def time_ticks(t0: float, t1: float, step: float) -> list[float]:
    """Every multiple of ``step`` from ``t0`` to ``t1`` (epoch seconds): round instants."""
    first, last = math.ceil(t0 / step - 1e-6), math.floor(t1 / step + 1e-6)
    return [k * step for k in range(first, last + 1)]


def tick_label(ts: float, step: float) -> str:
    """A tick's time, UTC, as precise as the step needs: ``19:51:22.4``, ``19:51:30``,
    ``19:50``, ``2026-12-04``."""
    moment = datetime.fromtimestamp(ts, UTC)
    if step < 1:
        decimals = 1 if step >= 0.1 else 2 if step >= 0.01 else 3
        return moment.strftime("%H:%M:%S.%f")[: 9 + decimals]
    if step < 60:
        return moment.strftime("%H:%M:%S")
    if step < 86400:
        return moment.strftime("%H:%M")
    return moment.strftime("%Y-%m-%d")


def value_ticks(top: float, *, integer: bool) -> list[float]:
    """Ticks from 0 to at least ``top`` at a round step (1, 2 or 5 times a power of ten);
    counts never get a fractional tick."""
    top = max(top, 1.0)
    raw = top / 4
    exp = math.floor(math.log10(raw))
    steps = sorted(m * 10.0 ** e for e in (exp - 1, exp, exp + 1) for m in (1, 2, 5))
    step = next(s for s in steps if s >= raw and (not integer or (s >= 1 and s == int(s))))
    return [k * step for k in range(math.ceil(top / step - 1e-9) + 1)]


Segment = tuple[float, float, float | None]
"""A value held from one instant to another (epoch seconds); None: nothing known."""


class _Frame:
    """Axes for one chart: time along x (``t0``..``t1``, epoch seconds, at round ticks),
    values up y (round ticks from 0)."""

    def __init__(self, title: str, timeline: Timeline, y_top: float, y_label: str, *,
                 integer: bool = True) -> None:
        span = timeline.span()
        start, end = span.start * timeline.width, (span.stop if span else 1) * timeline.width
        self.step = time_step(max(end - start, timeline.width))
        # The axis begins at a round tick strictly before the first event, so that what held
        # before it (the configured cap) is drawn, however the first event falls.
        first = math.floor(start / self.step + 1e-6)
        self.t0 = (first - 1 if first * self.step >= start - 1e-9 else first) * self.step
        self.t1 = max(math.ceil(end / self.step - 1e-6) * self.step, self.t0 + self.step)
        self.width = timeline.width
        self.y_ticks = value_ticks(y_top, integer=integer)
        self.y_max = self.y_ticks[-1]
        self.parts: list[str] = []
        self.title = title
        self.y_label = y_label
        self.plot_w = W - LEFT - RIGHT
        self.plot_h = H - TOP - BOTTOM

    def x(self, ts: float) -> float:
        return LEFT + (ts - self.t0) / (self.t1 - self.t0) * self.plot_w

    def y(self, value: float) -> float:
        return TOP + self.plot_h - value / self.y_max * self.plot_h

    def axes(self, caption: str) -> None:
        p = self.parts
        p.append(f'<text class="title" x="{LEFT}" y="18">{_e(self.title)}</text>')
        for value in self.y_ticks:
            y = self.y(value)
            p.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
            p.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
        p.append(f'<text x="14" y="{TOP + self.plot_h / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {TOP + self.plot_h / 2:.0f})">{_e(self.y_label)}</text>')
        bottom = TOP + self.plot_h
        p.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#9ca3af"/>')
        ticks = time_ticks(self.t0, self.t1, self.step)
        for k, ts in enumerate(ticks):
            x = self.x(ts)
            anchor = "start" if k == 0 else "end" if k == len(ticks) - 1 else "middle"
            p.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#9ca3af"/>')
            p.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="{anchor}">'
                     f'{_e(tick_label(ts, self.step))}</text>')
        day = datetime.fromtimestamp(self.t0, UTC).strftime("%Y-%m-%d")
        p.append(f'<text x="{W - RIGHT}" y="{H - 2}" text-anchor="end" fill="#6b7280">'
                 f'UTC, {day}; {_e(caption)}</text>')

    def legend(self, items: Sequence[tuple[str, str]]) -> None:
        x = float(W - RIGHT)
        for label, colour in reversed(items):
            width = 18 + 6.5 * len(label)
            x -= width + 10
            self.parts.append(f'<rect x="{x:.0f}" y="8" width="12" height="12" rx="2" fill="{colour}"/>')
            self.parts.append(f'<text x="{x + 16:.0f}" y="18">{_e(label)}</text>')

    def note(self, text: str) -> None:
        self.parts.append(f'<text x="{LEFT + self.plot_w / 2:.0f}" y="{TOP + self.plot_h / 2:.0f}" '
                          f'text-anchor="middle" fill="#6b7280">{_e(text)}</text>')

    def svg(self, desc: str = "") -> str:
        body = "".join(self.parts)
        described = f"<desc>{_e(desc)}</desc>" if desc else ""
        return (f'<div class="chart"><svg viewBox="0 0 {W} {H}" width="100%" role="img" '
                f'aria-label="{_e(self.title)}">{described}{body}</svg></div>')


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


# -- charts ----------------------------------------------------------------------------------


def _stacked(title: str, timeline: Timeline, series: dict[int, Bucket]) -> str:
    top = max((sum(getattr(b, key) for key, _, _ in OUTCOMES) for b in series.values()), default=0)
    connects = any(b.connect_retried for b in series.values())
    f = _Frame(title, timeline, top, "recipients (connect: attempts)" if connects else "recipients")
    f.axes(f"bucket {_duration(timeline.width)}")
    w = timeline.width
    drawn = False
    for idx, b in sorted(series.items()):
        x0, x1 = f.x(idx * w), f.x((idx + 1) * w)
        bar = x1 - x0
        gap = 0.15 * bar if bar > 4 else 0.0
        base = 0.0
        for key, _, colour in OUTCOMES:
            value = getattr(b, key)
            if not value:
                continue
            drawn = True
            y0, y1 = f.y(base), f.y(base + value)
            f.parts.append(f'<rect x="{x0 + gap / 2:.2f}" y="{y1:.2f}" width="{max(bar - gap, 0.6):.2f}" '
                           f'height="{y0 - y1:.2f}" fill="{colour}"/>')
            base += value
    if not drawn:
        f.note("nothing timestamped was decided here")
    f.legend([(label, colour) for key, label, colour in OUTCOMES if key != "connect_retried" or connects])
    return f.svg()


def _empty(title: str, timeline: Timeline, note: str) -> str:
    f = _Frame(title, timeline, 1, "recipients")
    f.axes(f"bucket {_duration(timeline.width)}")
    f.note(note)
    return f.svg()


def _lines(title: str, y_label: str, timeline: Timeline, destinations: Sequence[str],
           segments: Callable[[_Frame, str], list[Segment]], *, integer: bool, caption: str,
           floor: float = 0.0, describe: bool = False) -> str:
    probe = _Frame(title, timeline, 1, y_label)
    values = {d: segments(probe, d) for d in destinations}
    top = max((v for segs in values.values() for _, _, v in segs if v is not None), default=0.0)
    f = _Frame(title, timeline, max(top, floor), y_label, integer=integer)
    f.axes(caption)
    described: list[str] = []
    for i, d in enumerate(destinations):
        colour = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = []
        points: list[str] = []
        changes: list[str] = []
        last: float | None = None
        for t_start, t_end, v in values[d]:
            if v is None:
                if points:
                    runs.append(points)
                    points = []
                last = None
                continue
            y = f.y(v)
            points += [f"{f.x(t_start):.1f},{y:.1f}", f"{f.x(t_end):.1f},{y:.1f}"]
            if v != last:
                changes.append(f"{_fmt(v)} from {tick_label(t_start, 0.001)}")
                last = v
        if points:
            runs.append(points)
        for run in runs:
            f.parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                           f'stroke-linejoin="round" points="{" ".join(run)}"/>')
        described.append(f"{d}: " + (", ".join(changes) or "no values"))
    f.legend([(d, PALETTE[i % len(PALETTE)]) for i, d in enumerate(destinations)])
    return f.svg("; ".join(described) if describe else "")


def _cap_segments(
    timeline: Timeline, d: DestinationStats | None, f: _Frame, destination: str
) -> list[Segment]:
    """The effective cap, from the configured cap at the start of the axis: in each bucket
    the lowest it went, carried forward between events."""
    series = timeline.series.get(destination, {})
    w = timeline.width
    configured = d.cap_configured if d is not None else None
    if configured is None:  # no cap event: it stood at the first value the log shows
        configured = next((series[i].cap_min for i in sorted(series) if series[i].cap_min is not None), None)
    current = float(configured) if configured is not None else None
    out: list[Segment] = []
    span = timeline.span()
    if span:
        out.append((f.t0, span.start * w, current))
    for idx in span:
        b = series.get(idx)
        if b is not None and b.cap_min is not None:
            out.append((idx * w, (idx + 1) * w, float(b.cap_min)))
            current = float(b.cap_last) if b.cap_last is not None else current
        else:
            out.append((idx * w, (idx + 1) * w, current))
    if span:
        out.append((span.stop * w, f.t1, current))
    return [seg for seg in out if seg[1] > seg[0]]


def _backlog_segments(timeline: Timeline, f: _Frame, destination: str) -> list[Segment]:
    series = timeline.series.get(destination, {})
    w = timeline.width
    level = 0
    span = timeline.span()
    out: list[Segment] = [(f.t0, span.start * w, 0.0)] if span else []
    for idx in span:
        b = series.get(idx)
        if b is not None:
            level += b.backlog_delta
        out.append((idx * w, (idx + 1) * w, float(level)))
    if span:
        out.append((span.stop * w, f.t1, float(level)))
    return [seg for seg in out if seg[1] > seg[0]]


def rate_width(timeline: Timeline) -> float:
    """The width of the 421 rate's buckets: at least a second, and at least a fortieth of
    the span, so that a rate per minute is a count over a real stretch of time, not six
    replies that fell in one millisecond multiplied by 60,000."""
    span = len(timeline.span()) * timeline.width
    wanted = max(timeline.width, 1.0, span / 40)
    return next((w for w in BUCKET_WIDTHS if w >= wanted), BUCKET_WIDTHS[-1])


def _rate_segments(timeline: Timeline, f: _Frame, destination: str) -> list[Segment]:
    """421 replies per minute, over buckets of :func:`rate_width`."""
    series = timeline.series.get(destination, {})
    width = rate_width(timeline)
    ratio = round(width / timeline.width)
    counts: dict[int, int] = {}
    for idx, b in series.items():
        counts[idx // ratio] = counts.get(idx // ratio, 0) + b.replies_421
    span = timeline.span()
    if not span:
        return []
    out: list[Segment] = []
    # Drawn over the log's own span: no rate before its first event or after its last.
    first, last = span.start * timeline.width, span.stop * timeline.width
    for k in range(span.start // ratio, (span.stop - 1) // ratio + 1):
        t_start, t_end = max(k * width, first), min((k + 1) * width, last)
        out.append((t_start, t_end, counts.get(k, 0) / width * 60.0))
    return [seg for seg in out if seg[1] > seg[0]]


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
    sub = (f"{len(stats.files)} file(s): {', '.join(stats.files)} · {stats.records} records · "
           f"{iso(t.first_ts, ms=True)} – {iso(t.last_ts, ms=True)}")
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
            heading = f"Recipient decisions at {d}"
            if d in timeline.series:
                parts.append(_stacked(heading, timeline, timeline.series[d]))
            else:
                parts.append(_empty(heading, timeline, "no timestamped decisions at this destination"))
        charted = [d for d in destinations if d in timeline.series]
        bucket = f"bucket {_duration(timeline.width)}"
        parts.append(_lines(
            "Effective connection cap (from the configured cap)", "connections", timeline, charted,
            lambda f, d: _cap_segments(timeline, summary.destinations.get(d), f, d),
            integer=True, caption=f"the lowest in each {bucket}", floor=1.0, describe=True))
        width = rate_width(timeline)
        parts.append(_lines(
            "421 replies per minute", "421 per minute", timeline, charted,
            lambda f, d: _rate_segments(timeline, f, d), integer=False,
            caption=f"counted over {_duration(width)}, times 60 s / {_duration(width)}"))
        parts.append(_lines(
            "Deferred backlog", "recipients", timeline, charted,
            lambda f, d: _backlog_segments(timeline, f, d), integer=True, caption=bucket))
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
                 f"generated {iso(datetime.now(UTC).timestamp())}</footer>")
    parts.append("</body></html>")
    return "\n".join(parts)
