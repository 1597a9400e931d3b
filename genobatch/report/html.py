"""The run report: one self-contained HTML file (nothing fetched), after Nextflow's report and timeline: a banner
saying how the run ended, the run's facts, a timeline with a time axis and legend, the spread of time, CPU and
memory per step (box plots), requested against used, every failure with its command, exit reason and log,
a sortable table of every task, and the versions.

A report of 100,000 tasks was a 100 MB page that no browser shows well and took 907 MB to render. It is written
as it renders (jinja2's stream), and the timeline and the task table show at most ``REPORT_MAX_TASKS`` tasks,
Nextflow's ``report.maxTasks`` default, failures first, with a line saying so; the figures, box plots and
per-step table count every task, and the trace file lists them all."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment

from .charts import boxplots, legend, timeline
from .trace import RAN, TraceRow, root_failures

REPORT_MAX_TASKS = 10_000  # tasks in the timeline and the task table (Nextflow's report.maxTasks default)
OK_STATUSES = ("COMPLETED", "CACHED")


@dataclass
class RunSummary:
    """What the report says about the run besides its tasks."""

    run_id: str
    status: str  # succeeded, failed, interrupted
    started: float
    finished: float
    command: str
    work_dir: str
    outdir: str
    version: str
    executor: str
    runtime: str
    steps: list[str]  # in order
    colours: dict[str, str]  # step -> colour
    versions: dict[str, dict[str, str]]  # step -> tool -> version
    params: dict[str, Any]
    failures: dict[str, str] = field(default_factory=dict)  # task -> why (with its log's tail)
    commands: dict[str, str] = field(default_factory=dict)  # task -> its command


TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>genobatch run {{ s.run_id }}</title>
<style>
body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#f3f3f3;cursor:pointer}
td:first-child,th:first-child{text-align:left} .banner{padding:1em;font-size:1.3em;color:#fff;margin-bottom:1em}
.succeeded{background:#2e7d32} .failed{background:#b00020} .interrupted{background:#ef6c00}
.legend span{margin-right:1em} .legend i{display:inline-block;width:12px;height:10px;margin-right:4px}
pre{background:#f7f7f7;padding:8px;white-space:pre-wrap} .charts{display:flex;flex-wrap:wrap;gap:2em}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em} dt{font-weight:bold}
td.FAILED{color:#b00020;font-weight:bold} td.ABORTED{color:#ef6c00}
#tasks{font-size:0.9em} #tasks td{max-width:18em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
</style></head><body>
<div class="banner {{ s.status }}">Run {{ s.status }}{% if roots %}: {{ roots|length }} task(s) failed{% endif %}
{%- if not_run %}, {{ not_run|length }} not run because of it{% endif %}
&mdash; {{ ran }} attempt(s) ran, {{ cached }} task(s) cached, {{ "%.1f"|format(wall) }} s</div>
<dl>
<dt>run</dt><dd>{{ s.run_id }}</dd><dt>command</dt><dd><code>{{ s.command }}</code></dd>
<dt>started</dt><dd>{{ started }}</dd><dt>finished</dt><dd>{{ finished }}</dd>
<dt>work directory</dt><dd>{{ s.work_dir }}</dd><dt>results</dt><dd>{{ s.outdir }}</dd>
<dt>executor</dt><dd>{{ s.executor }}</dd><dt>runtime</dt><dd>{{ s.runtime }}</dd>
<dt>genobatch</dt><dd>{{ s.version }}</dd>
<dt>compute</dt><dd>{{ "%.1f"|format(cpu) }} CPU-seconds used of {{ "%.1f"|format(requested) }} requested
({{ "%.0f"|format(utilisation) }}%); {{ "%.4f"|format(requested / 3600) }} vCPU-hours (run time x vCPUs of every
attempt, what AWS Batch bills by)</dd>
</dl>
<h2>Timeline</h2>
{% if shown < total %}<p class="capped">The timeline and the task table show {{ "{:,}".format(shown) }} of
{{ "{:,}".format(total) }} tasks ({{ "{:,}".format(cap) }} at most, as Nextflow's report.maxTasks; those that did not
complete first). The figures and charts count every task; the execution trace beside this report lists them all.</p>
{% endif %}{{ legend|safe }}{{ timeline|safe }}
<h2>Spread per step</h2>
<div class="charts">
<div><h3>Run time</h3>{{ box_time|safe }}</div><div><h3>CPU (% of one vCPU)</h3>{{ box_cpu|safe }}</div>
<div><h3>Peak memory</h3>{{ box_memory|safe }}</div><div><h3>Memory used of requested</h3>{{ box_share|safe }}</div>
</div>
<h2>Requested versus used, per step</h2>
<table><tr><th>step</th><th>ran in</th><th>attempts</th><th>vCPU requested</th><th>mean CPU used (vCPU)</th>
<th>memory requested (MiB)</th><th>max peak RSS (MiB)</th><th>% of requested</th><th>total run time (s)</th></tr>
{% for r in per_step %}<tr><td>{{ r.step }}</td><td>{{ r.ran_in }}</td><td>{{ r.attempts }}</td><td>{{ r.vcpus }}</td>
<td>{{ r.cpu_used }}</td><td>{{ r.memory }}</td><td>{{ r.rss }}</td><td>{{ r.share }}</td>
<td>{{ "%.1f"|format(r.realtime) }}</td></tr>
{% endfor %}</table>
{% if roots %}<h2 class="failed-heading">Failures</h2>
{% for name, why in roots.items() %}<h3>{{ name }}</h3>
{% if s.commands.get(name) %}<p>command:</p><pre>{{ s.commands[name] }}</pre>{% endif %}<pre>{{ why }}</pre>
{% endfor %}{% if not_run %}<p>Not run, because a task they need failed: {{ not_run|join(", ") }}.</p>{% endif %}
{% endif %}
<h2>Tasks</h2>
<table id="tasks"><thead><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for t in tasks %}<tr>{% for value, sort in t %}<td{% if loop.index == 4 %} class="{{ value }}"{% endif %}
 data-sort="{{ sort }}" title="{{ value }}">{{ value }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
<h2>Versions</h2>
<table>{% for step, tools in s.versions.items() %}{% for tool, v in tools.items() %}
<tr><td>{{ step }}</td><td>{{ tool }}</td><td>{{ v }}</td></tr>{% endfor %}{% endfor %}</table>
<h2>Parameters</h2><table>{% for k, v in s.params.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
</table>
<script>
document.querySelectorAll("#tasks th").forEach(function (th, column) {
  th.title = "sort"; th.onclick = function () {
    var body = document.querySelector("#tasks tbody"), rows = Array.from(body.rows);
    var up = th.dataset.up !== "1"; th.dataset.up = up ? "1" : "0";
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.sort, y = b.cells[column].dataset.sort, nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return up ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  };
});
</script>
</body></html>
"""
HEADERS = ["task", "step", "sample", "status", "attempt", "exit", "reason", "run time (s)", "CPU (%)",
           "peak RSS (MiB)", "memory asked (MiB)", "used of asked (%)", "ran in"]  # fmt: skip


def write_report(path: Path, rows: list[TraceRow], summary: RunSummary) -> None:
    attempts = [r for r in rows if r.start and r.complete]
    roots = root_failures(rows, summary.failures)
    requested = sum((r.realtime_s or 0) * r.vcpus for r in attempts)
    cpu = sum(r.cpu_s or 0 for r in attempts)
    by_step: dict[str, list[TraceRow]] = defaultdict(list)
    for row in attempts:
        by_step[row.step].append(row)
    order = [s for s in summary.steps if s in by_step] + [s for s in by_step if s not in summary.steps]
    shown = shown_rows(rows)
    page = (
        Environment(autoescape=True)
        .from_string(TEMPLATE)
        .stream(
            s=summary,
            started=time.strftime("%F %T", time.localtime(summary.started)),
            finished=time.strftime("%F %T", time.localtime(summary.finished)),
            wall=summary.finished - summary.started,
            ran=sum(1 for r in rows if r.status in RAN),
            cached=sum(1 for r in rows if r.status == "CACHED"),
            roots=roots,
            not_run=[name for name in summary.failures if name not in roots],
            cpu=cpu,
            requested=requested,
            utilisation=100 * cpu / requested if requested else 0,
            legend=legend(order, summary.colours),
            timeline=timeline(shown, summary.colours),
            box_time=boxplots({s: [r.realtime_s or 0 for r in by_step[s]] for s in order}, "s"),
            box_cpu=boxplots({s: [r.pct_cpu for r in by_step[s] if r.pct_cpu is not None] for s in order}, "%"),
            box_memory=boxplots({s: [r.peak_rss_mib for r in by_step[s] if r.peak_rss_mib] for s in order}, "MiB"),
            box_share=boxplots({s: [_share(r) for r in by_step[s] if r.peak_rss_mib] for s in order}, "%"),
            per_step=[_step_row(step, by_step[step]) for step in order],
            headers=HEADERS,
            tasks=map(_task_row, shown),
            shown=len(shown),
            total=len(rows),
            cap=REPORT_MAX_TASKS,
        )
    )
    page.enable_buffering(200)  # write in pieces of 200 template events, not one per value
    temporary = path.with_name(f".{path.name}.partial")
    page.dump(str(temporary), encoding="utf-8")
    temporary.replace(path)


def shown_rows(rows: list[TraceRow], cap: int = REPORT_MAX_TASKS) -> list[TraceRow]:
    """The rows the timeline and the task table show: all when at most ``cap``; else the ones that did not
    complete (failed, aborted) first, then the others, in the trace's order."""
    if len(rows) <= cap:
        return rows
    unusual = [i for i, r in enumerate(rows) if r.status not in OK_STATUSES][:cap]
    chosen = set(unusual)
    for i in range(len(rows)):
        if len(chosen) >= cap:
            break
        chosen.add(i)
    return [rows[i] for i in sorted(chosen)]


def _share(row: TraceRow) -> float:
    return round(100 * (row.peak_rss_mib or 0) / row.memory_mib, 1) if row.memory_mib else 0.0


def _step_row(step: str, items: list[TraceRow]) -> dict[str, Any]:
    realtime = sum(r.realtime_s or 0 for r in items)
    peaks = [r.peak_rss_mib for r in items if r.peak_rss_mib]
    memory = max(r.memory_mib for r in items)
    measured_cpu = [r for r in items if r.cpu_s is not None]
    cpu_time = sum(r.realtime_s or 0 for r in measured_cpu)
    return {
        "step": step,
        "ran_in": ", ".join(sorted({f"{r.runtime} {r.image}".strip() for r in items})),
        "attempts": len(items),
        "vcpus": max(r.vcpus for r in items),
        "cpu_used": f"{sum(r.cpu_s or 0 for r in measured_cpu) / cpu_time:.2f}" if cpu_time else "not measured",
        "memory": memory,
        "rss": f"{max(peaks):.1f}" if peaks else "not measured",  # never a 0 for what was not measured
        "share": f"{100 * max(peaks) / memory:.0f}%" if peaks else "-",
        "realtime": realtime,
    }


def _task_row(row: TraceRow) -> list[tuple[str, str]]:
    """(shown, sort key) per column."""

    def number(value: float | None, digits: int = 1) -> tuple[str, str]:
        return ("-", "-1") if value is None else (f"{value:.{digits}f}", str(value))

    share = _share(row) if row.peak_rss_mib else None
    return [
        (row.name, row.name),
        (row.step, row.step),
        (row.sample or "-", row.sample),
        (row.status, row.status),
        (str(row.attempt or "-"), str(row.attempt or 0)),
        ("-" if row.exit is None else str(row.exit), str(row.exit if row.exit is not None else -1)),
        (row.exit_reason or "-", row.exit_reason),
        number(row.realtime_s),
        number(row.pct_cpu),
        number(row.peak_rss_mib),
        (str(row.memory_mib), str(row.memory_mib)),
        number(share, 0),
        (f"{row.runtime} {row.image}".strip() or "-", row.runtime),
    ]
