"""The execution trace: one row per job attempt (and per cached task), in Nextflow's trace format.

``TraceFile`` writes ``execution_trace_<run>.txt`` as a run goes, a row as each attempt ends (``tail -f``
follows a run), with Nextflow's field names and formats first (``task_id hash native_id name status exit
submit duration realtime %cpu peak_rss peak_vmem rchar wchar workdir container``; ``-`` where there is no
value) and genobatch's own columns after them. ``TraceRow`` keeps the values as numbers for the report and
the estimates.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from genobatch.batch.model import ExitReason

if TYPE_CHECKING:
    from genobatch.executors.contract import AttemptState, JobState

NEXTFLOW_FIELDS = (
    "task_id", "hash", "native_id", "name", "status", "exit", "submit", "duration", "realtime", "%cpu", "peak_rss",
    "peak_vmem", "rchar", "wchar", "workdir", "container",
)  # fmt: skip
GENOBATCH_FIELDS = ("step", "sample", "attempt", "exit_reason", "cpus", "memory", "cpu_seconds", "runtime", "log")
FIELDS = NEXTFLOW_FIELDS + GENOBATCH_FIELDS


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
    """One attempt (or cached task), values as numbers; ``None`` where nothing was measured."""

    key: str
    name: str
    step: str
    sample: str
    status: str  # COMPLETED, FAILED, CACHED, or ABORTED: never ran (a task it needs failed, or the run stopped)
    vcpus: float
    memory_mib: int
    native_id: str = ""
    exit: int | None = None
    attempt: int | None = None
    exit_reason: str = ""
    submit: int | None = None  # epoch ms
    start: int | None = None
    complete: int | None = None
    cpu_s: float | None = None
    peak_rss_mib: float | None = None
    runtime: str = ""  # host, podman, docker, awsbatch, slurm
    image: str = ""
    log: str = ""
    why: str = ""  # a failure's reason, as the batch system gives it

    @property
    def realtime_s(self) -> float | None:
        return (self.complete - self.start) / 1000 if self.complete and self.start else None

    @property
    def duration_s(self) -> float | None:
        return (self.complete - self.submit) / 1000 if self.complete and self.submit else None

    @property
    def pct_cpu(self) -> float | None:
        realtime = self.realtime_s
        return round(100 * self.cpu_s / realtime, 1) if self.cpu_s is not None and realtime else None

    @staticmethod
    def _task(task: Task) -> dict[str, Any]:
        sample = task.sample or ""
        return {"key": task.key, "name": task.name, "step": task.step, "sample": sample, "vcpus": task.vcpus}

    @classmethod
    def from_attempt(cls, task: Task, job: JobState, attempt: AttemptState) -> TraceRow:
        ok = attempt.exit_reason is ExitReason.FINISHED
        return cls(
            **cls._task(task),
            memory_mib=task.memory_mib,
            status="COMPLETED" if ok else "FAILED",
            native_id=job.job_id,
            exit=attempt.exit_code,
            attempt=attempt.number,
            exit_reason=attempt.exit_reason.value if attempt.exit_reason else "",
            submit=job.created_at_ms,
            start=attempt.started_at_ms,
            complete=attempt.stopped_at_ms,
            cpu_s=attempt.cpu_seconds,
            peak_rss_mib=round(attempt.max_rss_kib / 1024, 1) if attempt.max_rss_kib else None,
            runtime=attempt.runtime or "",
            image=attempt.image or "",
            log=attempt.log or "",
            why="" if ok else attempt.container_reason or attempt.status_reason or "",
        )

    @classmethod
    def not_run(cls, task: Task, job: JobState) -> TraceRow:
        return cls(
            **cls._task(task),
            memory_mib=task.memory_mib,
            status="ABORTED",
            native_id=job.job_id,
            exit_reason=job.status_reason or "",
            submit=job.created_at_ms,
            why=job.status_reason or "",
        )

    @classmethod
    def cached(cls, task: Task) -> TraceRow:
        return cls(**cls._task(task), memory_mib=task.memory_mib, status="CACHED")


RAN = ("COMPLETED", "FAILED")  # the statuses of attempts that ran


def root_failures(rows: list[TraceRow], failures: dict[str, str]) -> dict[str, str]:
    """The failed tasks that ran and failed (not those that never ran because a task they need failed)."""
    ran_and_failed = {row.name for row in rows if row.status == "FAILED"}
    return {name: why for name, why in failures.items() if name in ran_and_failed}


class TraceFile:
    """``execution_trace_<run>.txt``, written as rows come (flushed at once, for ``tail -f``)."""

    def __init__(self, path: Path, workdir: Any = None) -> None:
        """``workdir(key)``: a task's directory, for the ``workdir`` column."""
        self.path, self.workdir = path, workdir
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "w", newline="")  # noqa: SIM115 - closed by close()
        self._writer = csv.writer(self._file, delimiter="\t", lineterminator="\n")
        self._writer.writerow(FIELDS)
        self._file.flush()

    def add(self, row: TraceRow) -> None:
        self.rows += 1
        workdir = str(self.workdir(row.key)) if self.workdir and row.key else "-"
        self._writer.writerow(nextflow_values(row, self.rows, workdir))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def nextflow_values(row: TraceRow, task_id: int, workdir: str) -> list[str]:
    """A row as Nextflow writes its trace (human-readable units), then genobatch's columns."""
    return [
        str(task_id),
        f"{row.key[:2]}/{row.key[2:8]}" if row.key else "-",
        row.native_id or "-",
        row.name,
        row.status,
        "-" if row.exit is None else str(row.exit),
        _timestamp(row.submit),
        _duration(row.duration_s),
        _duration(row.realtime_s),
        "-" if row.pct_cpu is None else f"{row.pct_cpu:.1f}%",
        "-" if row.peak_rss_mib is None else _memory(row.peak_rss_mib),
        "-",  # peak_vmem, rchar, wchar: not measured
        "-",
        "-",
        workdir,
        row.image or "-",
        row.step,
        row.sample or "-",
        "-" if row.attempt is None else str(row.attempt),
        row.exit_reason or "-",
        f"{row.vcpus:g}",
        _memory(row.memory_mib),
        "-" if row.cpu_s is None else f"{row.cpu_s:.3f}",
        row.runtime or "-",
        row.log or "-",
    ]


def read_trace(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _timestamp(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


def _duration(seconds: float | None) -> str:
    """As Nextflow prints a duration: ``850ms``, ``3.2s``, ``1m 5s``, ``2h 3m 4s``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, minutes, secs = whole // 3600, whole % 3600 // 60, whole % 60
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def _memory(mib: float) -> str:
    """As Nextflow prints memory: ``512 KB``, ``12.3 MB``, ``2 GB``."""
    if mib < 1:
        return f"{mib * 1024:.0f} KB"
    if mib < 1024:
        return f"{mib:.1f} MB"
    return f"{mib / 1024:.1f} GB"
