"""Slurm's job states in genobatch's words: one table (after Parsl's providers), read by the backend for the
state it reports, the attempt's exit reason, and whether the job deserves another try.

``retry``: ``more_memory`` (resubmit with twice the memory, up to the cap), ``again`` (resubmit as it was,
up to the retry count), ``if_asked`` (only when the user asked for retries of failures), ``never``.
"""

from __future__ import annotations

from dataclasses import dataclass

from genobatch.batch.model import ExitReason, JobStatus


@dataclass(frozen=True)
class Meaning:
    status: JobStatus
    reason: ExitReason | None = None  # how an attempt that ended in this state ended
    retry: str = "never"


QUEUED = Meaning(JobStatus.RUNNABLE)
RUNNING = Meaning(JobStatus.RUNNING)
STATES = {
    "PENDING": QUEUED,
    "REQUEUED": QUEUED,
    "REQUEUE_FED": QUEUED,
    "REQUEUE_HOLD": QUEUED,
    "RESV_DEL_HOLD": QUEUED,
    "SUSPENDED": QUEUED,
    "CONFIGURING": Meaning(JobStatus.STARTING),
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,
    "SIGNALING": RUNNING,
    "STAGE_OUT": RUNNING,
    "RESIZING": RUNNING,
    "COMPLETED": Meaning(JobStatus.SUCCEEDED, ExitReason.FINISHED),
    "FAILED": Meaning(JobStatus.FAILED, ExitReason.FAILED, "if_asked"),
    "OUT_OF_MEMORY": Meaning(JobStatus.FAILED, ExitReason.MEMLIMIT, "more_memory"),
    "TIMEOUT": Meaning(JobStatus.FAILED, ExitReason.TIMEOUT, "again"),
    "DEADLINE": Meaning(JobStatus.FAILED, ExitReason.TIMEOUT),
    "PREEMPTED": Meaning(JobStatus.FAILED, ExitReason.LOST, "again"),
    "NODE_FAIL": Meaning(JobStatus.FAILED, ExitReason.LOST, "again"),
    "BOOT_FAIL": Meaning(JobStatus.FAILED, ExitReason.CANNOT_START, "again"),
    "LAUNCH_FAILED": Meaning(JobStatus.FAILED, ExitReason.CANNOT_START, "again"),
    "CANCELLED": Meaning(JobStatus.FAILED, ExitReason.TERMINATED),
    "REVOKED": Meaning(JobStatus.FAILED, ExitReason.TERMINATED),
    "SPECIAL_EXIT": Meaning(JobStatus.FAILED, ExitReason.FAILED),
}
UNKNOWN = Meaning(JobStatus.FAILED, ExitReason.LOST)


def meaning(state: str) -> Meaning:
    """``CANCELLED by 0`` and other decorated states read by their first word."""
    return STATES.get(state.split()[0].rstrip("+") if state else "", UNKNOWN)
