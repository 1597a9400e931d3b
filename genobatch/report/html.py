"""The run report: one self-contained HTML file (no scripts, no network) with a summary, a timeline of every
attempt, requested-versus-used resources per step, the failures and the tool versions."""

from __future__ import annotations

import html
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from jinja2 import Environment

from .trace import TraceRow

TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>genobatch run report</title>
<style>
body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#f3f3f3} td:first-child{text-align:left}
.bar{height:10px;display:inline-block} .fail{color:#b00} pre{background:#f7f7f7;padding:8px;white-space:pre-wrap}
</style></head><body>
<h1>genobatch run report</h1>
<p>{{ started }} &ndash; {{ finished }} ({{ "%.1f"|format(wall) }} s wall).
{{ ran }} attempt(s) ran, {{ cached }} task(s) cached, {{ failed }} failed.
CPU time {{ "%.1f"|format(cpu) }} s; utilisation {{ "%.0f"|format(utilisation) }}% of the requested vCPU-seconds.
Compute used: {{ "%.4f"|format(vcpu_hours) }} vCPU-hours
(run time x vCPUs of every attempt, what AWS Batch bills by).</p>
<h2>Timeline</h2>
<svg width="{{ width + 260 }}" height="{{ 14 * bars|length + 20 }}" xmlns="http://www.w3.org/2000/svg" font-size="10">
{% for b in bars %}<text x="0" y="{{ 14 * loop.index }}">{{ b.label }}</text>
<rect x="{{ 250 + b.x }}" y="{{ 14 * loop.index - 9 }}" width="{{ [b.w, 1]|max }}" height="10" fill="{{ b.colour }}">
<title>{{ b.label }}: {{ "%.2f"|format(b.seconds) }} s</title></rect>
{% endfor %}</svg>
<h2>Requested versus used, per step</h2>
<table><tr><th>step</th><th>ran in</th><th>attempts</th><th>vCPU requested</th><th>mean CPU used (vCPU)</th>
<th>memory requested (MiB)</th><th>max peak RSS (MiB)</th><th>total realtime (s)</th></tr>
{% for s in steps %}<tr><td>{{ s.step }}</td><td>{{ s.ran_in }}</td><td>{{ s.attempts }}</td><td>{{ s.vcpus }}</td>
<td>{{ "%.2f"|format(s.cpu_used) }}</td><td>{{ s.memory }}</td><td>{{ s.rss }}</td>
<td>{{ "%.1f"|format(s.realtime) }}</td></tr>
{% endfor %}</table>
{% if errors %}<h2 class="fail">Failures</h2>
{% for name, why in errors.items() %}<h3>{{ name }}</h3><pre>{{ why }}</pre>
{% endfor %}{% endif %}
<h2>Tool versions</h2>
<table>{% for tool, v in versions.items() %}<tr><td>{{ tool }}</td><td>{{ v }}</td></tr>{% endfor %}
</table>
<h2>Parameters</h2><table>{% for k, v in params.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
</body></html>
"""


def write_report(
    path: Path,
    rows: list[TraceRow],
    versions: dict[str, str],
    params: dict[str, Any],
    started: float,
    finished: float,
    errors: dict[str, str],
    colours: dict[str, str],
    width: int = 900,
) -> None:
    """``colours``: each step's colour in the timeline (from its declaration)."""
    attempts = [r for r in rows if r.start and r.complete]
    origin = min((r.start for r in attempts if r.start), default=int(started * 1000))
    end = max((r.complete for r in attempts if r.complete), default=origin + 1)
    scale = width / max(1, end - origin)
    bars = [
        {
            "label": f"{r.name} #{r.attempt}",
            "x": (r.start - origin) * scale,
            "w": (r.complete - r.start) * scale,
            "seconds": (r.complete - r.start) / 1000,
            "colour": colours.get(r.step, "#999"),
        }
        for r in sorted(attempts, key=lambda r: r.start or 0)
        if r.start and r.complete
    ]
    per_step: dict[str, list[TraceRow]] = defaultdict(list)
    for r in attempts:
        per_step[r.step].append(r)
    steps = []
    for step, items in per_step.items():
        realtime = sum(r.realtime_s or 0 for r in items)
        steps.append(
            {
                "step": step,
                "ran_in": ", ".join(sorted({f"{r.runtime} {r.image}".strip() for r in items})),
                "attempts": len(items),
                "vcpus": max(r.vcpus for r in items),
                "cpu_used": sum(r.cpu_s or 0 for r in items) / realtime if realtime else 0,
                "memory": max(r.memory_mib for r in items),
                "rss": max((r.peak_rss_mib or 0 for r in items), default=0),
                "realtime": realtime,
            }
        )
    requested = sum((r.realtime_s or 0) * r.vcpus for r in attempts)
    cpu = sum(r.cpu_s or 0 for r in attempts)
    page = (
        Environment(autoescape=True)
        .from_string(TEMPLATE)
        .render(
            started=time.strftime("%F %T", time.localtime(started)),
            finished=time.strftime("%F %T", time.localtime(finished)),
            wall=finished - started,
            ran=len(attempts),
            cached=sum(1 for r in rows if r.status == "CACHED"),
            failed=len(errors),
            cpu=cpu,
            utilisation=100 * cpu / requested if requested else 0,
            vcpu_hours=requested / 3600,
            bars=bars,
            width=width,
            steps=steps,
            errors={k: html.unescape(v) for k, v in errors.items()},
            versions=versions,
            params=params,
        )
    )
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(page)
    temporary.replace(path)
