"""The execution trace: one TSV row per job attempt (and per cached task), after Nextflow's trace file."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genobatch.batch.backend import AttemptState, JobState
    from genobatch.pipeline.tasks import Task


@dataclass
class TraceRow:
    task_id: str
    hash: str
    name: str
    step: str
    sample: str
    status: str  # COMPLETED, FAILED, CACHED, or the job's state for attempts that never ran
    exit: str
    attempt: str
    exit_reason: str
    submit: int | None  # epoch ms
    start: int | None
    complete: int | None
    duration_s: float | None  # submit -> complete
    realtime_s: float | None  # start -> complete
    cpu_s: float | None
    pct_cpu: float | None
    peak_rss_mib: float | None
    vcpus: float
    memory_mib: int
    runtime: str = "host"

    @classmethod
    def from_attempt(cls, task: Task, job: JobState, attempt: AttemptState, vcpus: float, memory: int) -> TraceRow:
        realtime = (
            (attempt.stopped_at_ms - attempt.started_at_ms) / 1000
            if attempt.stopped_at_ms and attempt.started_at_ms
            else None
        )
        ok = attempt.exit_reason is not None and attempt.exit_reason.value == "FINISHED"
        return cls(
            job.job_id,
            task.key[:12],
            task.name,
            task.step,
            task.sample or "",
            "COMPLETED" if ok else "FAILED",
            "" if attempt.exit_code is None else str(attempt.exit_code),
            str(attempt.number),
            attempt.exit_reason.value if attempt.exit_reason else "",
            job.created_at_ms,
            attempt.started_at_ms,
            attempt.stopped_at_ms,
            (attempt.stopped_at_ms - job.created_at_ms) / 1000 if attempt.stopped_at_ms and job.created_at_ms else None,
            realtime,
            attempt.cpu_seconds,
            round(100 * attempt.cpu_seconds / realtime, 1) if attempt.cpu_seconds is not None and realtime else None,
            round(attempt.max_rss_kib / 1024, 1) if attempt.max_rss_kib else None,
            vcpus,
            memory,
        )

    @classmethod
    def not_run(cls, task: Task, job: JobState, vcpus: float, memory: int) -> TraceRow:
        return cls(
            job.job_id,
            task.key[:12],
            task.name,
            task.step,
            task.sample or "",
            job.status.value,
            "",
            "",
            job.status_reason or "",
            job.created_at_ms,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            vcpus,
            memory,
        )

    @classmethod
    def cached(cls, task: Task, vcpus: float, memory: int) -> TraceRow:
        return cls(
            "",
            task.key[:12],
            task.name,
            task.step,
            task.sample or "",
            "CACHED",
            "",
            "",
            "",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            vcpus,
            memory,
        )


def write_trace(rows: list[TraceRow], path: Path) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow([f.name for f in fields(TraceRow)])
        for row in rows:
            writer.writerow(["" if value is None else value for value in asdict(row).values()])
    temporary.replace(path)
