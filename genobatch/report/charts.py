"""The report's charts, as plain SVG (no library, nothing fetched): a timeline of every attempt with a time axis,
queued time beside run time, failed attempts in the failure colour and a legend; and box plots of a metric's
spread per step."""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Sequence

from .trace import TraceRow

FAILED = "#b00020"  # a failed attempt, whatever its step
QUEUED = "#d9d9d9"  # waiting between submission and start
LABEL_WIDTH, BAR_HEIGHT, ROW = 280, 10, 14
MAX_DOTS = 500  # dots per box plot row: beyond that they only blacken the line (100,000 tasks made 400,000)


# tick steps a clock reads well (seconds): 20 s steps made ticks of "1.33333 min"
CLOCK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _ticks(span_s: float, wanted: int = 8) -> float:
    """A round step for about ``wanted`` ticks over ``span_s`` seconds: a clock's (15 s, 5 min, 2 h) from a
    second up, a decimal one below."""
    raw = max(span_s / wanted, 0.001)
    if raw > 1:
        return float(next((step for step in CLOCK_STEPS if step >= raw), 86400 * math.ceil(raw / 86400)))
    base = 10.0 ** math.floor(math.log10(raw))
    return next(base * m for m in (1.0, 2.0, 5.0, 10.0) if base * m >= raw)


def _clock(seconds: float) -> str:
    """A tick's label: ``0.5 s``, ``45 s``, ``2 min 30 s``, ``1 h 30 min``."""
    if seconds < 60:
        return f"{seconds:g} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def timeline(rows: Sequence[TraceRow], colours: dict[str, str], width: int = 900) -> str:
    """Every attempt as a bar from its start to its end, after a grey bar for the time it waited."""
    attempts = sorted((r for r in rows if r.start and r.complete), key=lambda r: (r.start or 0, r.name))
    if not attempts:
        return "<p>No task ran in this run.</p>"
    origin = min(min(r.submit or r.start or 0, r.start or 0) for r in attempts)
    end = max(r.complete or 0 for r in attempts)
    span = max(1, end - origin) / 1000
    scale = width / span
    height = ROW * len(attempts) + 40
    parts = [
        f'<svg class="timeline" width="{LABEL_WIDTH + width + 20}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" font-size="10" font-family="sans-serif">'
    ]
    step = _ticks(span)
    for n in range(int(span / step) + 1):
        x = LABEL_WIDTH + n * step * scale
        parts.append(f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{height}" stroke="#eee"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="12" text-anchor="middle">{_clock(round(n * step, 3))}</text>')
    for i, row in enumerate(attempts):
        y = 24 + i * ROW
        label = html.escape(row.name if len(row.name) < 44 else row.name[:41] + "...")
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 9}" text-anchor="end">{label} #{row.attempt}</text>')
        queued_from = (row.submit or row.start or 0) - origin
        started, ended = (row.start or 0) - origin, (row.complete or 0) - origin
        if started > queued_from:
            x, w = LABEL_WIDTH + queued_from / 1000 * scale, (started - queued_from) / 1000 * scale
            parts.append(
                f'<rect class="queued" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_HEIGHT}" fill="{QUEUED}"/>'
            )
        failed = row.status != "COMPLETED"
        colour = FAILED if failed else colours.get(row.step, "#999999")
        x, w = LABEL_WIDTH + started / 1000 * scale, max(1.0, (ended - started) / 1000 * scale)
        title = html.escape(f"{row.name}: {row.status}, ran {(ended - started) / 1000:.1f} s")
        parts.append(
            f'<rect class="{"failed" if failed else "ran"}" data-step="{html.escape(row.step)}" x="{x:.1f}" y="{y}" '
            f'width="{w:.1f}" height="{BAR_HEIGHT}" fill="{colour}"><title>{title}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)


def legend(steps: Sequence[str], colours: dict[str, str]) -> str:
    items = [(step, colours.get(step, "#999999")) for step in steps] + [("queued", QUEUED), ("failed", FAILED)]
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:{colour}"></i>{html.escape(name)}</span>' for name, colour in items)
        + "</div>"
    )


def dots(numbers: list[float], most: int = MAX_DOTS) -> list[float]:
    """The values to draw as dots: all of them, or ``most`` evenly spaced order statistics (the smallest and the
    largest among them), which keep the spread's shape."""
    if len(numbers) <= most:
        return numbers
    ordered = sorted(numbers)
    return [ordered[i * (len(ordered) - 1) // (most - 1)] for i in range(most)]


def boxplots(values: dict[str, list[float]], unit: str, width: int = 420) -> str:
    """One horizontal box (quartiles, whiskers to min and max, a dot per value, or ``MAX_DOTS``) per step."""
    present = {step: v for step, v in values.items() if v}
    if not present:
        return "<p>Not measured.</p>"
    top = max(max(v) for v in present.values()) or 1.0
    scale = width / top
    height = 22 * len(present) + 30
    parts = [
        f'<svg class="boxplot" width="{120 + width + 60}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
        'font-size="10" font-family="sans-serif">'
    ]
    for i, (step, numbers) in enumerate(present.items()):
        y = 10 + 22 * i
        low, high = min(numbers), max(numbers)
        q1, median, q3 = statistics.quantiles(numbers, n=4) if len(numbers) > 1 else [numbers[0]] * 3
        parts.append(f'<text x="114" y="{y + 11}" text-anchor="end">{html.escape(step)}</text>')
        left, right = 120 + low * scale, 120 + high * scale
        parts.append(f'<line x1="{left:.1f}" y1="{y + 7}" x2="{right:.1f}" y2="{y + 7}" stroke="#555"/>')
        parts.append(
            f'<rect x="{120 + q1 * scale:.1f}" y="{y}" width="{max(1.0, (q3 - q1) * scale):.1f}" height="14" '
            'fill="#cfe2f3" stroke="#555"/>'
        )
        middle = 120 + median * scale
        parts.append(f'<line x1="{middle:.1f}" y1="{y}" x2="{middle:.1f}" y2="{y + 14}" stroke="#000"/>')
        parts += [f'<circle cx="{120 + v * scale:.1f}" cy="{y + 7}" r="1.5" fill="#333"/>' for v in dots(numbers)]
    axis_y = height - 12
    parts.append(f'<text x="120" y="{axis_y + 10}">0</text>')
    parts.append(f'<text x="{120 + width}" y="{axis_y + 10}" text-anchor="end">{top:.4g} {html.escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)
