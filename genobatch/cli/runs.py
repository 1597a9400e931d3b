"""``genobatch runs``: the runs of a work directory, as ``nextflow log`` lists them, and one run's tasks."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from genobatch.pipeline.runinfo import RunRecord, load_runs
from genobatch.report.trace import read_trace


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    runs = subparsers.add_parser(
        "runs",
        parents=[common],
        help="list the runs of a work directory, or one run's tasks",
        description="Without RUN: every run of the work directory, its start, duration, status, task counts and "
        "command. With RUN (a run's name, or `last`): its tasks, with their state, job id and log.",
    )
    runs.add_argument("run", nargs="?", metavar="RUN", help="a run's name (as listed), or last")
    runs.add_argument("--work-dir", type=Path, default=Path("work"), help="the runs' work directory (default ./work)")


def run(args: argparse.Namespace) -> int:
    records = load_runs(args.work_dir)
    if not records:
        print(f"genobatch: no runs in {args.work_dir}", file=sys.stderr)
        return 1
    if args.run is None:
        _table(
            ["RUN", "STARTED", "DURATION", "STATUS", "RAN", "CACHED", "FAILED", "COMMAND"],
            [_summary(r) for r in records],
        )
        return 0
    chosen = records[-1] if args.run == "last" else next((r for r in records if r.run_id == args.run), None)
    if chosen is None:
        print(f"genobatch: no run {args.run!r} in {args.work_dir}: `genobatch runs` lists them", file=sys.stderr)
        return 1
    if not chosen.trace.is_file():
        print(f"genobatch: run {chosen.run_id} left no trace ({chosen.trace})", file=sys.stderr)
        return 1
    rows = read_trace(chosen.trace)
    _table(["TASK", "STEP", "STATUS", "EXIT", "JOB ID", "LOG"], [
        [r["name"], r["step"], r["status"], r["exit"], r["native_id"], r["log"]] for r in rows
    ])  # fmt: skip
    return 0


def _summary(record: RunRecord) -> list[str]:
    end = record.finished or time.time()
    seconds = int(end - record.started)
    duration = f"{seconds // 3600}h {seconds % 3600 // 60}m {seconds % 60}s" if seconds >= 3600 else (
        f"{seconds // 60}m {seconds % 60}s" if seconds >= 60 else f"{seconds}s"
    )  # fmt: skip
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started))
    counts = [str(record.ran), str(record.cached), str(record.failed)]
    return [record.run_id, started, duration, record.shown_status(), *counts, record.command]


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())
