"""The run report at scale: the timeline and the task table show at most ``REPORT_MAX_TASKS`` tasks (failures
always among them) and say so; the figures count every task; box plots draw at most ``MAX_DOTS`` dots a row."""

from __future__ import annotations

import re
from pathlib import Path

from genobatch.report.charts import MAX_DOTS, dots, timeline
from genobatch.report.html import REPORT_MAX_TASKS, RunSummary, shown_rows, write_report
from genobatch.report.trace import TraceRow

STEPS = ("align", "call")


def rows(count: int, failed_at: tuple[int, ...] = ()) -> list[TraceRow]:
    made = []
    for i in range(count):
        failed = i in failed_at
        made.append(
            TraceRow(
                key=f"k{i}",
                name=f"{STEPS[i % 2]}-S{i}",
                step=STEPS[i % 2],
                sample=f"S{i}",
                status="FAILED" if failed else "COMPLETED",
                vcpus=1,
                memory_mib=100,
                exit=1 if failed else 0,
                attempt=1,
                submit=1_000_000 + i,
                start=1_000_000 + i,
                complete=1_000_500 + i + i % 7,
                cpu_s=0.4,
                peak_rss_mib=10 + i % 50,
                runtime="host",
            )
        )
    return made


def summary(failures: dict[str, str]) -> RunSummary:
    return RunSummary(
        run_id="r1",
        status="failed" if failures else "succeeded",
        started=1_000.0,
        finished=1_100.0,
        command="genobatch run",
        work_dir="/w",
        outdir="/o",
        version="0",
        executor="local",
        runtime="host",
        steps=list(STEPS),
        colours={"align": "#112233", "call": "#445566"},
        versions={},
        params={},
        failures=failures,
    )


def task_table(page: str) -> list[str]:
    body = page.split('<table id="tasks">', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return re.findall(r"<tr>.*?</tr>", body, re.S)


def test_a_report_of_more_tasks_than_its_cap_shows_failures_first_and_counts_every_task(tmp_path: Path) -> None:
    total = REPORT_MAX_TASKS + 2_000
    late_failure = total - 3
    made = rows(total, failed_at=(late_failure,))
    report = tmp_path / "report.html"
    write_report(report, made, summary({made[late_failure].name: "exit 1"}))
    page = report.read_text()
    table = task_table(page)
    assert len(table) == REPORT_MAX_TASKS
    assert any(f">{made[late_failure].name}<" in row and 'class="FAILED"' in row for row in table), "the failure"
    assert f"show {REPORT_MAX_TASKS:,} of\n{total:,} tasks" in page, "the page says what it left out"
    bars = re.findall(r'<rect class="(?:ran|failed)"', page)
    assert len(bars) == REPORT_MAX_TASKS, "the timeline shows the same tasks"
    assert f"{total} attempt(s) ran" in page, "the banner counts every task"
    assert len(re.findall(r"<circle ", page)) <= 4 * len(STEPS) * MAX_DOTS, "four box plots, a row per step"
    assert not list(tmp_path.glob(".*partial")), "written to a temporary name, then renamed"


def test_a_report_under_its_cap_shows_every_task_and_no_note(tmp_path: Path) -> None:
    made = rows(50)
    report = tmp_path / "report.html"
    write_report(report, made, summary({}))
    page = report.read_text()
    assert len(task_table(page)) == 50
    assert 'class="capped"' not in page


def test_shown_rows_keep_the_trace_order_and_every_failure_when_there_are_fewer_than_the_cap() -> None:
    made = rows(30, failed_at=(25, 29))
    shown = shown_rows(made, cap=10)
    assert [r.name for r in shown] == [r.name for r in made[:8]] + [made[25].name, made[29].name]


def test_dots_keep_the_extremes_and_an_even_spread() -> None:
    values = [float(v) for v in range(10_001)]
    kept = dots(values, most=11)
    assert kept == [float(v) for v in range(0, 10_001, 1_000)]
    assert dots([3.0, 1.0], most=11) == [3.0, 1.0], "few values: all, as they are"


def test_timeline_ticks_are_clock_steps() -> None:
    made = rows(2)
    made[1].complete = (made[1].start or 0) + 100_000  # the run spans 100 s
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', timeline(made, {}))
    assert ticks == ["0 s", "15 s", "30 s", "45 s", "1 min", "1 min 15 s", "1 min 30 s"]
