"""The executor contract: what the pipeline needs from any batch system (after Snakemake's executor interface).

A ``Backend`` is three operations (``submit``, ``poll``, ``cancel``) plus ``Capabilities`` declared as data,
which the pipeline reads and adapts to (array size, dependencies per job, minimum timeout, shared file
system). Every backend answers in the same ``JobStatus`` / ``ExitReason`` vocabulary, and reports jobs stuck
waiting (``Stuck``) and what it recovered on its own (``Recoveries``) as data.
``tests/test_backend_conformance.py`` runs one test class against each of them.

This module imports nothing heavy (no engine, no boto3): executors are loaded only when a run asks for one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields

from genobatch.batch.model import MAX_ARRAY_SIZE, MAX_DEPENDS_ON, ExitReason, JobStatus, Mount


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; callers adapt (e.g. chunk arrays, group dependencies) instead of guessing."""

    name: str
    max_array_size: int = MAX_ARRAY_SIZE
    max_depends_on: int = MAX_DEPENDS_ON
    n_to_n_dependencies: bool = True
    sequential_dependencies: bool = True
    min_timeout_seconds: int = 1
    shared_filesystem: bool = True  # jobs see the submitter's files (local yes; AWS Batch no: stage via S3)
    terminates_running_jobs: bool = True


@dataclass(frozen=True)
class Stuck:
    """A job waiting for capacity for long, with the batch system's own reason (Resources, a
    MISCONFIGURATION..., ReqNodeNotAvail...)."""

    job_id: str
    seconds: float
    reason: str

    def __str__(self) -> str:
        return f"{self.job_id} waiting for {self.seconds:.0f} s: {self.reason}"


@dataclass
class Recoveries:
    """What a backend did on its own to get jobs through, by kind: counted, printed after a run and kept in
    its params.json."""

    reclaims: int = 0  # spot reclaims, preemptions, node failures (retried in place)
    moved_to_on_demand: int = 0
    more_memory: int = 0  # resubmitted with more memory after an out-of-memory kill
    more_time: int = 0  # resubmitted with a longer time limit after a timeout
    retried_failures: int = 0  # resubmitted after an application error, as asked

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        return ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in self.as_dict().items() if n)


@dataclass(frozen=True)
class JobSpec:
    """One job (or array job) as the pipeline asks for it, independent of any backend."""

    name: str
    command: list[str]
    vcpus: float = 1.0
    memory_mib: int = 1024
    image: str | None = None
    mounts: list[Mount] = field(default_factory=list)  # what a containerised job may see (local backend)
    extra_arguments: list[str] = field(default_factory=list)  # the executor's own, per step (sbatch's)
    environment: dict[str, str] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)  # job ids; waits for all to succeed
    array_size: int | None = None
    n_to_n_with: str | None = None  # array job id whose child i this job's child i waits for
    sequential: bool = False  # array children run one after another
    retry_attempts: int = 1
    timeout_seconds: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptState:
    number: int
    exit_reason: ExitReason | None
    exit_code: int | None
    status_reason: str | None
    started_at_ms: int | None
    stopped_at_ms: int | None
    cpu_seconds: float | None = None
    max_rss_kib: int | None = None
    log: str | None = None  # where the attempt's stderr is, if the backend keeps it locally
    container_reason: str | None = None  # the detail, e.g. "OutOfMemoryError: ..." or why it could not start
    runtime: str | None = None  # what ran it: "host", "podman", "docker", "awsbatch"
    image: str | None = None


@dataclass(frozen=True)
class JobState:
    job_id: str
    status: JobStatus
    status_reason: str | None
    exit_code: int | None
    attempts: list[AttemptState]
    created_at_ms: int | None = None

    @property
    def done(self) -> bool:
        return self.status.is_terminal


class Backend(ABC):
    capabilities: Capabilities  # a class's own by default; an instance may read its batch system's (Slurm)

    @abstractmethod
    def submit(self, spec: JobSpec) -> str:
        """Submit one job (or array job); returns its id. Raises ClientException for a job that can never run."""

    @abstractmethod
    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        """The current state of these jobs (array children are ``<id>:<index>``)."""

    def poll_changed(self, job_ids: Collection[str]) -> list[JobState]:
        """The states of those of these jobs that may have changed since this backend last reported them (each
        job at least once): the driver's per-poll work then follows the changes, not the jobs. By default, all."""
        return self.poll(list(job_ids))

    @abstractmethod
    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        """Stop these jobs whatever their state: queued ones are cancelled, running ones terminated."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (threads, connections)."""

    def stuck(self, seconds: float) -> list[Stuck]:
        """Jobs waiting for capacity longer than ``seconds``, each with the batch system's reason."""
        return []

    def recoveries(self) -> Recoveries:
        """What the backend did on its own to recover jobs (e.g. spot reclaims moved on-demand)."""
        return Recoveries()
