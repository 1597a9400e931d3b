"""Fault injection: make the local engine fail jobs the way AWS Batch fails them, to test Batch clients.

A client's retry rules (a spot reclaim retried then moved on-demand, an out-of-memory job resubmitted with more
memory, a job stuck in RUNNABLE detected) can only be tested if those failures happen on demand. The tag
``genobatch:fault`` asks for one, on a submit-job request, on its job definition or on its job queue (the first
found in that order wins)::

    genobatch batch submit-job ... --tags genobatch:fault=spot-reclaim:1

Its value is ``FAULT[:N][@SECONDS]``: ``N`` limits the fault to the first N attempts (later attempts run
normally; default: every attempt), ``SECONDS`` is how long an attempt runs before the fault fires (default
``DEFAULT_DELAY_SECONDS``; an attempt whose command ends sooner gets the fault when it ends). ``FAULTS`` is the
one table of faults. The fault is resolved once, at submission, and kept with the job (its ``container``
record), so a later change of tags does not change jobs already submitted.
"""

from __future__ import annotations

import re
import secrets
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import ClientException
from .lifecycle import AttemptOutcome, outcome_for
from .model import ExitReason
from .runtime import LaunchError, LaunchSpec, ProcessExit, RunningProcess, Runtime

TAG = "genobatch:fault"
DEFAULT_DELAY_SECONDS = 1.0
STUCK_REASON = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is higher than "
    "that can be met by the CE(s) attached to the job queue. (injected by the genobatch:fault tag)"
)
CANNOT_START_DETAIL = "failed to create shim task: injected by the genobatch:fault tag"


@dataclass(frozen=True)
class FaultKind:
    """One injectable fault: what it does, and when."""

    name: str
    what: str  # as AWS Batch reports it (for docs and help)
    timed: bool  # the attempt runs, then the fault fires after its delay
    counted: bool = True  # may be limited to the first N attempts


FAULTS = {
    kind.name: kind
    for kind in (
        FaultKind(
            "spot-reclaim",
            "the attempt is killed; FAILED with statusReason 'Host EC2 (instance i-...) terminated.', "
            "container without exitCode",
            timed=True,
        ),
        FaultKind(
            "oom",
            "the attempt is killed; exitCode 137, container.reason "
            "'OutOfMemoryError: Container killed due to memory usage'",
            timed=True,
        ),
        FaultKind(
            "cannot-start",
            "the attempt fails without running its command; container.reason 'CannotStartContainerError: ...', "
            "statusReason 'Task failed to start'",
            timed=False,
        ),
        FaultKind(
            "stuck-runnable",
            "the job stays RUNNABLE with statusReason 'MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - ...' until "
            "cancelled or terminated",
            timed=False,
            counted=False,
        ),
    )
}
_SPEC = re.compile(r"^(?P<name>[a-z-]+)(?::(?P<attempts>[0-9]+))?(?:@(?P<delay>[0-9]+(?:\.[0-9]*)?)s?)?$")
# What admission must skip: a job whose stored container record asks to stay RUNNABLE (jobs.runnable_candidates).
STUCK_SQL = """(container IS NULL OR container NOT LIKE '%"fault": "stuck-runnable%')"""


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    attempts: int | None = None  # the first N attempts only (None: all)
    delay: float = DEFAULT_DELAY_SECONDS

    def applies_to(self, attempt: int) -> bool:
        return self.attempts is None or attempt <= self.attempts


def parse(value: Any, where: str) -> Fault:
    """A tag value, or a ClientException naming what is wrong and the valid values."""
    match = _SPEC.match(value) if isinstance(value, str) else None
    kind = FAULTS.get(match["name"]) if match else None
    if match is None or kind is None:
        raise ClientException(
            f"{where} {TAG}={value!r} is not a fault: use FAULT[:N][@SECONDS] with FAULT one of "
            f"{', '.join(FAULTS)} (e.g. spot-reclaim:1 reclaims the first attempt only)"
        )
    if match["attempts"] is not None and not kind.counted:
        raise ClientException(f"{where} {TAG}={value!r}: {kind.name} holds the whole job and takes no :N")
    if match["attempts"] is not None and int(match["attempts"]) < 1:
        raise ClientException(f"{where} {TAG}={value!r}: N counts attempts from 1 (spot-reclaim:1: the first)")
    if match["delay"] is not None and not kind.timed:
        raise ClientException(f"{where} {TAG}={value!r}: {kind.name} fires at once and takes no @SECONDS")
    attempts = int(match["attempts"]) if match["attempts"] else None
    return Fault(kind, attempts, float(match["delay"]) if match["delay"] else DEFAULT_DELAY_SECONDS)


def check_tags(tags: Any, where: str) -> None:
    """Refuse a bad fault tag when a job definition or job queue is created, not when its first job runs."""
    if isinstance(tags, Mapping) and TAG in tags:
        parse(tags[TAG], where)


def for_job(request: Mapping[str, Any], definition: Mapping[str, Any], queue: Mapping[str, Any]) -> dict[str, str]:
    """The fault a submitted job carries (``{"fault": value}`` for its container record), or ``{}``: the first
    ``genobatch:fault`` tag of the request, its job definition, its job queue."""
    for where, spec in (("tags", request), ("the job definition's tags", definition), ("the job queue's tags", queue)):
        tags = spec.get("tags")
        if isinstance(tags, Mapping) and TAG in tags:
            parse(tags[TAG], where)
            return {"fault": str(tags[TAG])}
    return {}


def waiting_reason(container_json: str | None) -> str | None:
    """describe-jobs' statusReason for a RUNNABLE job held by ``stuck-runnable``, else None."""
    if container_json and '"fault": "stuck-runnable' in container_json:
        return STUCK_REASON
    return None


def spot_reclaim_reason() -> str:
    """AWS's words for a reclaimed spot instance, with an instance id in AWS's format."""
    return f"Host EC2 (instance i-{secrets.token_hex(9)[:17]}) terminated."


def _outcome(kind: FaultKind) -> AttemptOutcome:
    if kind.name == "spot-reclaim":
        return AttemptOutcome(ExitReason.LOST, None, spot_reclaim_reason())
    return outcome_for(ExitReason.MEMLIMIT, 137)


class FaultInjection:
    """A ``Runtime`` around another: attempts of a job with a fault fail as the fault says, the others pass
    through unchanged. Timed faults kill the attempt's process group from a timer thread after their delay."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.name = inner.name
        self._timers: dict[int, tuple[threading.Timer, FaultKind]] = {}  # pid -> timer, fault
        self._lock = threading.Lock()

    def launch(self, spec: LaunchSpec) -> RunningProcess:
        fault = parse(spec.fault, "the job's") if spec.fault else None
        if fault is None or not fault.applies_to(spec.attempt):
            return self.inner.launch(spec)
        if fault.kind.name == "cannot-start":
            raise LaunchError(CANNOT_START_DETAIL)
        proc = self.inner.launch(replace(spec, fault=None))
        timer = threading.Timer(fault.delay, self._fire, (proc,))
        timer.daemon = True
        with self._lock:
            self._timers[proc.pid] = (timer, fault.kind)
        timer.start()
        return proc

    def _fire(self, proc: RunningProcess) -> None:
        with self._lock:
            if proc.pid in self._timers:  # not reaped yet: the pid still names this attempt
                self.inner.signal(proc, signal.SIGKILL)

    def signal(self, proc: RunningProcess, signum: int) -> None:
        self.inner.signal(proc, signum)

    def reap(self, proc: RunningProcess) -> ProcessExit | None:
        with self._lock:  # no timer may signal the pid once it is reaped (and free for reuse)
            result = self.inner.reap(proc)
            timed = None if result is None else self._timers.pop(proc.pid, None)
        if result is None or timed is None:
            return result
        timed[0].cancel()
        return replace(result, injected=_outcome(timed[1]))

    def recover(self, state_dir: Path, recorded: list[tuple[int, str | None]]) -> None:
        self.inner.recover(state_dir, recorded)
