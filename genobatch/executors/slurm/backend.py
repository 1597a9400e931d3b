"""The Slurm backend: the ``Backend`` contract on a Slurm cluster, through its commands (``cluster.Cluster``).

- Every job of a run has one job name, so that one ``sacct`` call per poll (``squeue`` where accounting is
  off) reads them all; polls are at most every ``poll_seconds``.
- A job is a batch script in the work directory (shared with the nodes): ``sbatch --parsable`` with
  ``--cpus-per-task``, ``--mem``, ``--time``, the partition, account and QOS, a step's extra arguments, and
  ``--kill-on-invalid-dep=yes``. Arrays are ``--array=0-N%T``; dependencies ``afterok`` (``aftercorr`` for
  N_TO_N). A job in an image runs ``podman run`` with the same isolation as the local engine's.
- A job no node of the partition could ever hold is refused at submit, with the reason.
- Slurm's states are read through one table (``states``). Out of memory: resubmitted with twice the memory,
  up to the largest node's; timeout: with twice the time; preempted or node failure: as it was; application
  errors only when asked. A resubmitted job keeps its id for the caller, and its dependents that had not run
  are resubmitted to wait for the new one (``--kill-on-invalid-dep`` had cancelled them).
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from genobatch.batch.errors import ClientException
from genobatch.batch.model import ExitReason, JobStatus
from genobatch.batch.runtime import LaunchSpec

from ..contract import AttemptState, Backend, Capabilities, JobSpec, JobState, Recoveries, Stuck
from .cluster import Cluster, Record
from .states import meaning

if TYPE_CHECKING:
    from genobatch.batch.container import ContainerRuntime

    from . import Settings

QUEUED_REASONS_NOT_STUCK = ("Dependency", "None", "BeginTime", "")


@dataclass
class _Tracked:
    """One job as the caller knows it, the Slurm job that now stands for it, and the attempts of those before."""

    spec: JobSpec
    native: str
    attempt: int = 1
    earlier: dict[int | None, list[AttemptState]] = field(default_factory=dict)  # by array index (None: plain)
    terminated: bool = False
    resubmissions: Counter[str] = field(default_factory=Counter)


class SlurmBackend(Backend):
    capabilities = Capabilities(
        name="slurm",
        max_array_size=1001,  # Slurm's default MaxArraySize; each cluster's own is read when it starts
        max_depends_on=1000,
        sequential_dependencies=True,
        min_timeout_seconds=60,  # --time counts whole minutes
    )

    def __init__(
        self,
        settings: Settings,
        folder: Path,
        container: ContainerRuntime | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.settings, self.container = settings, container
        self.cluster = cluster or Cluster()
        self.name = f"genobatch-{uuid.uuid4().hex[:12]}"  # every job of this backend (squeue finds them by it)
        self.folder = folder / self.name  # the jobs' scripts and logs, on the file system the nodes share
        config = self.cluster.config()
        self.capabilities = replace(self.capabilities, max_array_size=int(config.get("MaxArraySize", 1001)))
        self.accounting = "none" not in config.get("AccountingStorageType", "none")
        self.limits = self._partition_limits()
        self.jobs: dict[str, _Tracked] = {}  # logical id -> tracked, in submission order
        self.records: dict[str, Record] = {}
        self.states: dict[str, JobState] = {}
        self.recovered = Recoveries()
        self.opened = time.monotonic()
        self._next_poll = 0.0
        for part in ("scripts", "logs", "containers"):
            (self.folder / part).mkdir(parents=True, exist_ok=True)

    # --- submit -------------------------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        self._check_fits(spec)
        native = self._sbatch(spec, 1)
        self.jobs[native] = _Tracked(spec, native)
        self._next_poll = 0.0
        return native

    def _sbatch(self, spec: JobSpec, attempt: int) -> str:
        script = self.folder / "scripts" / f"{spec.name}-{uuid.uuid4().hex[:8]}.sh"
        script.write_text(self._script(spec, attempt))
        return self.cluster.sbatch(self._options(spec), script)

    def _options(self, spec: JobSpec) -> list[str]:
        s = self.settings
        logs = self.folder / "logs" / (f"{spec.name}-%A_%a" if spec.array_size else f"{spec.name}-%j")
        options = [
            f"--job-name={self.name}",
            f"--comment={spec.name}",
            "--nodes=1",
            f"--cpus-per-task={max(1, round(spec.vcpus))}",
            f"--mem={spec.memory_mib}M",
            f"--output={logs}.out",
            f"--error={logs}.err",
            "--kill-on-invalid-dep=yes",
            *([f"--partition={s.partition}"] if s.partition else []),
            *([f"--account={s.account}"] if s.account else []),
            *([f"--qos={s.qos}"] if s.qos else []),
        ]
        if spec.timeout_seconds:
            options.append(f"--time={max(1, -(-spec.timeout_seconds // 60))}")
        if spec.array_size:
            throttle = 1 if spec.sequential else s.array_parallelism
            options.append(f"--array=0-{spec.array_size - 1}" + (f"%{throttle}" if throttle else ""))
        after = [self._native(d) for d in spec.depends_on]
        dependency = [f"afterok:{':'.join(after)}"] if after else []
        if spec.n_to_n_with:
            dependency.append(f"aftercorr:{self._native(spec.n_to_n_with)}")
        if dependency:
            options.append("--dependency=" + ",".join(dependency))
        return options + spec.extra_arguments

    def _script(self, spec: JobSpec, attempt: int) -> str:
        """The batch script: AWS Batch's variables (the job runner reads them), then the command."""
        exports = {
            "AWS_BATCH_JOB_ID": '"$SLURM_JOB_ID"',
            "AWS_BATCH_JOB_ATTEMPT": str(attempt),
            "AWS_BATCH_JOB_ARRAY_INDEX": '"${SLURM_ARRAY_TASK_ID:-0}"',
            **{k: shlex.quote(v) for k, v in spec.environment.items()},
        }
        lines = ["#!/bin/bash", f"# genobatch job {spec.name}, attempt {attempt}"]
        lines += [f"export {key}={value}" for key, value in exports.items()]
        if spec.image is None:
            return "\n".join([*lines, "exec " + shlex.join(spec.command), ""])
        if self.container is None:
            raise ClientException(f"job {spec.name} needs image {spec.image}, but the run uses the host's tools")
        launch = LaunchSpec(
            spec.name, 1, spec.command, {}, self.folder / "containers", spec.vcpus, spec.memory_mib, spec.image,
            tuple(spec.mounts),
        )  # fmt: skip
        writable = [launch.work_dir, *(m.source for m in spec.mounts if not m.read_only)]
        if not self.container.rootless:  # the container's user writes there, and only there
            owner = f"-o {self.container.uid} -g {self.container.gid}"
            lines.append(f"install -d {owner} {' '.join(shlex.quote(str(p)) for p in writable)}")
        argv = self.container.run_argv(launch, None, list(exports))
        return "\n".join([*lines, "exec " + shlex.join(argv), ""])

    def _check_fits(self, spec: JobSpec) -> None:
        """Refuse a job no node of the partition could ever hold (it would pend forever)."""
        cpus, memory, seconds, partition = self.limits
        timeout = spec.timeout_seconds or 0
        if spec.vcpus > cpus or spec.memory_mib > memory or (seconds and timeout > seconds):
            raise ClientException(
                f"Job {spec.name} needs {spec.vcpus:g} CPUs, {spec.memory_mib} MiB and {timeout or 'no'} s limit: "
                f"more than any node of partition {partition} can ever provide ({cpus:g} CPUs, {memory} MiB, "
                f"{seconds or 'no'} s); on Slurm it would pend forever. Ask for less, or choose --partition"
            )

    def _partition_limits(self) -> tuple[float, int, int, str]:
        """(CPUs, MiB, seconds) of the largest node of the partition jobs go to (its MaxTime; 0: none)."""
        partitions = self.cluster.partitions()
        chosen = next(
            (p for p in partitions if p.get("PartitionName") == self.settings.partition)
            if self.settings.partition
            else (p for p in partitions if p.get("Default") == "YES"),
            None,
        )
        if chosen is None:
            known = ", ".join(p.get("PartitionName", "?") for p in partitions)
            raise ClientException(f"Slurm has no partition {self.settings.partition or '(default)'}: it has {known}")
        name = chosen["PartitionName"]
        nodes = [n for n in self.cluster.nodes() if name in n.get("Partitions", "").split(",")]
        cap = int(chosen.get("MaxMemPerNode", "UNLIMITED")) if chosen.get("MaxMemPerNode", "").isdigit() else 1 << 40
        cpus = max((float(n.get("CPUTot", 0)) for n in nodes), default=0.0)
        memory = max((min(int(n.get("RealMemory", 0)), cap) for n in nodes), default=0)
        return cpus, memory, _seconds(chosen.get("MaxTime", "UNLIMITED")), name

    # --- poll ---------------------------------------------------------------------------------------------
    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        if time.monotonic() >= self._next_poll:
            self._refresh()
            self._next_poll = time.monotonic() + self.settings.poll_seconds
        return [self.states.get(j) or self._submitted(j) for j in job_ids]

    def _refresh(self) -> None:
        """One call for the whole run, then each job's state, resubmitting what deserves another try."""
        open_jobs = [t.native for logical, t in self.jobs.items() if not self._ended(logical)]
        read = self.cluster.sacct if self.accounting else self.cluster.squeue
        self.records.update(read(open_jobs, self.name))
        for logical, tracked in list(self.jobs.items()):  # submission order: a job before its dependents
            if tracked.spec.array_size:
                children = [self._state(f"{logical}:{i}", tracked, i) for i in range(tracked.spec.array_size)]
                self.states.update((c.job_id, c) for c in children)
                self.states[logical] = self._array_state(logical, tracked, children)
            else:
                self.states[logical] = self._state(logical, tracked, None)

    def _state(self, logical: str, tracked: _Tracked, index: int | None) -> JobState:
        native = tracked.native if index is None else f"{tracked.native}_{index}"
        record = self.records.get(native)
        if record is None:
            return self._submitted(logical)
        means = meaning(record.state)
        attempts = list(tracked.earlier.get(index, []))
        if record.ran:  # a job cancelled while it waited (its dependency failed) made no attempt
            attempts.append(self._attempt(record, tracked, len(attempts) + 1))
        status = means.status
        if status is JobStatus.FAILED and self._resubmitted(logical, tracked, record, attempts):
            status = JobStatus.RUNNABLE
        reason = None if status is not JobStatus.FAILED else f"{record.state}: {record.reason}".rstrip(": ")
        return JobState(logical, status, reason, record.exit_code, attempts, record.submitted_ms)

    def _attempt(self, record: Record, tracked: _Tracked, number: int) -> AttemptState:
        means = meaning(record.state)
        reason = means.reason
        if tracked.terminated and reason is ExitReason.FAILED:
            reason = ExitReason.TERMINATED
        ended = means.status.is_terminal
        code = record.exit_code
        if reason is ExitReason.MEMLIMIT:
            code, detail = 137, f"{record.state}: killed at its memory limit (--mem={tracked.spec.memory_mib}M)"
        else:
            code = 128 + record.signal if record.signal and record.signal < 65 else code
            detail = f"{record.state}: {record.reason}"
        log = self.folder / "logs" / f"{tracked.spec.name}-{record.native_id}.err"
        return AttemptState(
            number=number,
            exit_reason=reason if ended else None,
            exit_code=code if ended else None,
            status_reason=detail if ended else None,
            started_at_ms=record.started_ms,
            stopped_at_ms=record.ended_ms if ended else None,
            cpu_seconds=record.cpu_seconds,
            max_rss_kib=record.max_rss_kib,
            log=str(log),
            container_reason=detail if ended and reason is not ExitReason.FINISHED else None,
            runtime="slurm",
            image=tracked.spec.image,
        )

    def _array_state(self, logical: str, tracked: _Tracked, children: list[JobState]) -> JobState:
        if any(c.status is JobStatus.FAILED for c in children) and all(c.done for c in children):
            status = JobStatus.FAILED
        elif all(c.status is JobStatus.SUCCEEDED for c in children):
            status = JobStatus.SUCCEEDED
        elif any(c.status in (JobStatus.RUNNING, JobStatus.STARTING) for c in children):
            status = JobStatus.RUNNING
        else:
            status = JobStatus.PENDING
        reason = next((c.status_reason for c in children if c.status is JobStatus.FAILED), None)
        return JobState(logical, status, reason, None, [], children[0].created_at_ms if children else None)

    def _ended(self, logical: str) -> bool:
        state = self.states.get(logical)
        return state is not None and state.done

    def _submitted(self, logical: str) -> JobState:
        """Not (yet) in Slurm's answer: just submitted, or resubmitted."""
        return JobState(logical, JobStatus.SUBMITTED, None, None, [], None)

    # --- retries ------------------------------------------------------------------------------------------
    def _resubmitted(self, logical: str, tracked: _Tracked, record: Record, attempts: list[AttemptState]) -> bool:
        """Start a new Slurm job for a failure worth another try (the whole array, for an array task's: its
        finished tasks find their outputs done); True if one was started."""
        if tracked.terminated or not attempts:
            return False
        means, spec, s = meaning(record.state), tracked.spec, self.settings
        if means.retry == "more_memory" and spec.memory_mib < self._memory_cap():
            spec = replace(spec, memory_mib=min(self._memory_cap(), spec.memory_mib * 2))
            self.recovered.more_memory += 1
        elif means.retry == "again" and tracked.resubmissions["again"] < s.retries:
            tracked.resubmissions["again"] += 1
            if means.reason is ExitReason.TIMEOUT and spec.timeout_seconds:
                spec = replace(spec, timeout_seconds=spec.timeout_seconds * 2)
                self.recovered.more_time += 1
            else:
                self.recovered.reclaims += 1
        elif means.retry == "if_asked" and tracked.attempt < max(spec.retry_attempts, 1 + s.retry_failures):
            self.recovered.retried_failures += 1
        else:
            return False
        for i, child in enumerate(self._attempts_of(logical, tracked)):
            tracked.earlier[i if tracked.spec.array_size else None] = child
        tracked.spec, tracked.attempt = spec, tracked.attempt + 1
        tracked.native = self._sbatch(spec, tracked.attempt)
        self._resubmit_dependents(logical)
        return True

    def _attempts_of(self, logical: str, tracked: _Tracked) -> list[list[AttemptState]]:
        """Every attempt so far, per array task (one list for a plain job)."""
        out = []
        for index in range(tracked.spec.array_size or 1):
            key = index if tracked.spec.array_size else None
            native = f"{tracked.native}_{index}" if tracked.spec.array_size else tracked.native
            attempts = list(tracked.earlier.get(key, []))
            record = self.records.get(native)
            if record is not None and record.ran:
                attempts.append(self._attempt(record, tracked, len(attempts) + 1))
            out.append(attempts)
        return out

    def _resubmit_dependents(self, logical: str) -> None:
        """Dependents that had not run wait for a job that will never succeed: submit them again."""
        replaced = [logical]
        for job_id, tracked in self.jobs.items():
            waits = set(tracked.spec.depends_on) | {tracked.spec.n_to_n_with}
            if job_id == logical or not waits & set(replaced):
                continue
            state = self.states.get(job_id)
            if state is not None and state.status in (JobStatus.SUCCEEDED, JobStatus.RUNNING):
                continue
            self.cluster.scancel([tracked.native])
            tracked.native = self._sbatch(tracked.spec, tracked.attempt)
            replaced.append(job_id)

    def _memory_cap(self) -> int:
        return min(self.settings.memory_cap_mib or 1 << 40, self.limits[1])

    def _native(self, logical: str) -> str:
        parent, _, index = logical.partition(":")
        native = self.jobs[parent].native if parent in self.jobs else parent
        return f"{native}_{index}" if index else native

    # --- the rest of the contract -------------------------------------------------------------------------
    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        for job_id in job_ids:
            tracked = self.jobs.get(job_id.partition(":")[0])
            if tracked is not None:
                tracked.terminated = True
        self.cluster.scancel([self._native(j) for j in job_ids])
        self._next_poll = 0.0

    def stuck(self, seconds: float) -> list[Stuck]:
        """Jobs pending for long, with Slurm's reason (Resources, Priority, ReqNodeNotAvail...): asked of the
        controller only when some job has waited that long, in one call."""
        now = time.time() * 1000
        waiting = {
            logical: (now - state.created_at_ms) / 1000
            for logical, state in self.states.items()
            if state.status is JobStatus.RUNNABLE and state.created_at_ms and now - state.created_at_ms > seconds * 1000
        }
        reasons = self.cluster.pending_reasons([self._native(logical) for logical in waiting])
        return [
            Stuck(logical, age, f"PENDING ({reasons[self._native(logical)]})")
            for logical, age in waiting.items()
            if reasons.get(self._native(logical), "") not in QUEUED_REASONS_NOT_STUCK
        ]

    def recoveries(self) -> Recoveries:
        return self.recovered

    def close(self) -> None:
        """Keep how often the controller was asked (``calls.json``): sites watch that genobatch spares it."""
        minutes = max((time.monotonic() - self.opened) / 60, 1 / 60)
        calls = dict(self.cluster.calls)
        summary = {
            "minutes": round(minutes, 2),
            "calls": calls,
            "per_minute": {k: round(n / minutes, 1) for k, n in calls.items()},
        }
        (self.folder / "calls.json").write_text(json.dumps(summary, indent=1) + "\n")


def _seconds(text: str) -> int:
    """Slurm's time limit (``1-02:03:04``, ``01:00:00``, ``30`` minutes, ``UNLIMITED``) in seconds; 0: none."""
    if not text or not text[0].isdigit():
        return 0
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    seconds = parts[0] * 60 if len(parts) == 1 else 0
    for part in parts if len(parts) > 1 else []:
        seconds = seconds * 60 + part
    return seconds + (int(days) * 86400 if days else 0)
