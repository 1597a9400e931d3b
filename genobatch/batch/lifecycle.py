"""Pure decisions of the job lifecycle: no I/O, no clock, so every rule is testable on its own.

The engine (the driver) asks these functions what to do and then does it against the store.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .model import (
    STATUS_REASON_CANNOT_START,
    STATUS_REASON_EXITED,
    STATUS_REASON_HOST_LOST,
    STATUS_REASON_OOM,
    STATUS_REASON_TIMEOUT,
    ExitReason,
    JobStatus,
    RetryStrategy,
)

if TYPE_CHECKING:  # a record of what a runtime observed; this module does no I/O
    from .runtime import ProcessExit


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt ended, as the runtime observed it."""

    reason: ExitReason
    exit_code: int | None
    status_reason: str  # AWS's statusReason of the attempt
    container_reason: str | None = None  # AWS's container.reason (e.g. the OOM message)


def outcome_for(reason: ExitReason, exit_code: int | None, detail: str | None = None) -> AttemptOutcome:
    """Word an exit the way AWS Batch words it, so evaluateOnExit rules written for AWS match here too."""
    if reason is ExitReason.TIMEOUT:
        return AttemptOutcome(reason, exit_code, STATUS_REASON_TIMEOUT)
    if reason is ExitReason.MEMLIMIT:
        return AttemptOutcome(
            reason, exit_code, STATUS_REASON_OOM, STATUS_REASON_OOM + (f" ({detail})" if detail else "")
        )
    if reason is ExitReason.LOST:
        return AttemptOutcome(reason, exit_code, STATUS_REASON_HOST_LOST + (f" ({detail})" if detail else ""))
    if reason is ExitReason.CANNOT_START:
        return AttemptOutcome(reason, exit_code, STATUS_REASON_CANNOT_START, f"CannotStartContainerError: {detail}")
    if reason is ExitReason.TERMINATED:
        return AttemptOutcome(reason, exit_code, detail or "Terminated by user")
    if reason is ExitReason.KILLED:
        return AttemptOutcome(reason, exit_code, STATUS_REASON_EXITED, f"Killed by signal {detail}")
    return AttemptOutcome(reason, exit_code, STATUS_REASON_EXITED)


def exit_outcome(result: ProcessExit, memory_mib: int) -> AttemptOutcome:
    """How an attempt ended that the engine did not kill (observed by the engine, or recorded by its wrapper)."""
    if result.cannot_start is not None:
        return outcome_for(ExitReason.CANNOT_START, None, result.cannot_start)
    if result.oom_killed:
        detail = f"the container exceeded its memory limit of {memory_mib} MiB"
        return outcome_for(ExitReason.MEMLIMIT, result.exit_code, detail)
    if result.exit_code == 0:
        return outcome_for(ExitReason.FINISHED, 0)
    if result.signal is not None:
        return outcome_for(ExitReason.KILLED, result.exit_code, signal.Signals(result.signal).name)
    return outcome_for(ExitReason.FAILED, result.exit_code)


def should_retry(strategy: RetryStrategy, attempts_made: int, outcome: AttemptOutcome) -> bool:
    """AWS Batch's rule: retry while attempts remain, unless the first matching rule says EXIT.

    As on AWS Batch, a job stopped by terminate-job or by its timeout is not retried.
    """
    if outcome.reason in (ExitReason.FINISHED, ExitReason.TERMINATED, ExitReason.TIMEOUT):
        return False
    if attempts_made >= strategy.attempts:
        return False
    for rule in strategy.rules:
        if rule.matches(outcome.exit_code, outcome.container_reason, outcome.status_reason):
            return rule.action == "RETRY"
    return True  # no rule matched: AWS retries


def status_after_attempt(strategy: RetryStrategy, attempts_made: int, outcome: AttemptOutcome) -> JobStatus:
    if outcome.reason is ExitReason.FINISHED:
        return JobStatus.SUCCEEDED
    return JobStatus.RUNNABLE if should_retry(strategy, attempts_made, outcome) else JobStatus.FAILED


@dataclass(frozen=True)
class DependencyVerdict:
    status: JobStatus  # PENDING (still waiting), RUNNABLE or FAILED
    reason: str | None = None


def resolve_dependencies(dependency_states: list[tuple[str, JobStatus]]) -> DependencyVerdict:
    """A job may run once every dependency SUCCEEDED; it fails as soon as one FAILED."""
    for dep_id, status in dependency_states:
        if status is JobStatus.FAILED:
            return DependencyVerdict(JobStatus.FAILED, f"Dependent job {dep_id} failed")
    if all(status is JobStatus.SUCCEEDED for _, status in dependency_states):
        return DependencyVerdict(JobStatus.RUNNABLE)
    return DependencyVerdict(JobStatus.PENDING)


def array_parent_status(counts: dict[JobStatus, int], size: int) -> JobStatus | None:
    """An array parent ends when all its children have: SUCCEEDED only if every child did."""
    done = counts.get(JobStatus.SUCCEEDED, 0) + counts.get(JobStatus.FAILED, 0)
    if done < size:
        return None
    return JobStatus.SUCCEEDED if counts.get(JobStatus.FAILED, 0) == 0 else JobStatus.FAILED
