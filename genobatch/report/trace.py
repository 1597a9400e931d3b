"""The execution trace: one TSV row per job attempt (and per cached task), after Nextflow's trace file."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from genobatch.batch.model import ExitReason

if TYPE_CHECKING:
    from genobatch.executors.contract import AttemptState, JobState


class Task(Protocol):
    """What a row needs of a pipeline task (the pipeline's ``Task`` has it)."""

    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def sample(self) -> str | None: ...
    @property
    def vcpus(self) -> float: ...
    @property
    def memory_mib(self) -> int: ...


@dataclass(kw_only=True)
class TraceRow:
    """One row; the field order is the column order. Columns a row has no value for stay empty."""

    task_id: str = ""
    hash: str
    name: str
    step: str
    sample: str
    status: str  # COMPLETED, FAILED, CACHED, or the job's state for attempts that never ran
    exit: str = ""
    attempt: str = ""
    exit_reason: str = ""
    submit: int | None = None  # epoch ms
    start: int | None = None
    complete: int | None = None
    duration_s: float | None = None  # submit -> complete
    realtime_s: float | None = None  # start -> complete
    cpu_s: float | None = None
    pct_cpu: float | None = None
    peak_rss_mib: float | None = None
    vcpus: float
    memory_mib: int
    runtime: str = ""  # host, podman, docker...
    image: str = ""

    @staticmethod
    def _task(task: Task) -> dict[str, Any]:
        """The columns every row of a task shares."""
        return {
            "hash": task.key[:12],
            "name": task.name,
            "step": task.step,
            "sample": task.sample or "",
            "vcpus": task.vcpus,
            "memory_mib": task.memory_mib,
        }

    @classmethod
    def from_attempt(cls, task: Task, job: JobState, attempt: AttemptState) -> TraceRow:
        start, stop = attempt.started_at_ms, attempt.stopped_at_ms
        realtime = (stop - start) / 1000 if stop and start else None
        ok = attempt.exit_reason is ExitReason.FINISHED
        return cls(
            **cls._task(task),
            task_id=job.job_id,
            status="COMPLETED" if ok else "FAILED",
            exit="" if attempt.exit_code is None else str(attempt.exit_code),
            attempt=str(attempt.number),
            exit_reason=attempt.exit_reason.value if attempt.exit_reason else "",
            submit=job.created_at_ms,
            start=start,
            complete=stop,
            duration_s=(stop - job.created_at_ms) / 1000 if stop and job.created_at_ms else None,
            realtime_s=realtime,
            cpu_s=attempt.cpu_seconds,
            pct_cpu=round(100 * attempt.cpu_seconds / realtime, 1)
            if attempt.cpu_seconds is not None and realtime
            else None,
            peak_rss_mib=round(attempt.max_rss_kib / 1024, 1) if attempt.max_rss_kib else None,
            runtime=attempt.runtime or "",
            image=attempt.image or "",
        )

    @classmethod
    def not_run(cls, task: Task, job: JobState) -> TraceRow:
        return cls(
            **cls._task(task),
            task_id=job.job_id,
            status=job.status.value,
            exit_reason=job.status_reason or "",
            submit=job.created_at_ms,
        )

    @classmethod
    def cached(cls, task: Task) -> TraceRow:
        return cls(**cls._task(task), status="CACHED")


def write_trace(rows: list[TraceRow], path: Path) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow([f.name for f in fields(TraceRow)])
        for row in rows:
            writer.writerow(["" if value is None else value for value in asdict(row).values()])
    temporary.replace(path)
