"""The backend contract: what the pipeline layer needs from any batch system, and the local implementation.

A backend is three operations (``submit``, ``poll``, ``cancel``) plus ``Capabilities`` declared as data
(after Snakemake's executor interface). Every backend answers in the same ``JobStatus`` / ``ExitReason``
vocabulary, and ``tests/test_backend_conformance.py`` runs one test class against each of them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .client import BatchClient
from .engine import Engine, Settings
from .errors import EngineLockedError
from .model import MAX_ARRAY_SIZE, MAX_DEPENDS_ON, ExitReason, JobStatus, Mount
from .registry import DEFAULT_JOB_QUEUE
from .runtime import Runtime
from .views import MAX_DESCRIBE


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
class JobSpec:
    """One job (or array job) as the pipeline asks for it, independent of any backend."""

    name: str
    command: list[str]
    vcpus: float = 1.0
    memory_mib: int = 1024
    image: str | None = None
    mounts: list[Mount] = field(default_factory=list)  # what a containerised job may see (local backend)
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
    capabilities: ClassVar[Capabilities]

    @abstractmethod
    def submit(self, spec: JobSpec) -> str:
        """Submit one job (or array job); returns its id. Raises ClientException for a job that can never run."""

    @abstractmethod
    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        """The current state of these jobs (array children are ``<id>:<index>``)."""

    @abstractmethod
    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        """Stop these jobs whatever their state: queued ones are cancelled, running ones terminated."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (threads, connections)."""

    def stuck(self, seconds: float) -> list[str]:
        """Jobs waiting for capacity longer than ``seconds``, each with the batch system's reason."""
        return []

    def retries(self) -> dict[str, int]:
        """What the backend did on its own to recover jobs (e.g. spot reclaims moved on-demand), by kind."""
        return {}


def state_from_detail(detail: dict[str, Any]) -> JobState:
    """Translate an AWS Batch JobDetail (local or remote) into the backend-neutral ``JobState``."""
    attempts = []
    for number, attempt in enumerate(detail.get("attempts") or [], start=1):
        extra = attempt.get("genobatch") or {}
        attempts.append(
            AttemptState(
                number=extra.get("attempt", number),
                exit_reason=ExitReason(extra["exitReason"]) if extra.get("exitReason") else None,
                exit_code=(attempt.get("container") or {}).get("exitCode"),
                status_reason=attempt.get("statusReason"),
                started_at_ms=attempt.get("startedAt"),
                stopped_at_ms=attempt.get("stoppedAt"),
                cpu_seconds=extra.get("cpuSeconds"),
                max_rss_kib=extra.get("maxRssKiB"),
                log=extra.get("stderr"),
                container_reason=(attempt.get("container") or {}).get("reason"),
                runtime=extra.get("runtime"),
                image=(attempt.get("container") or {}).get("image"),
            )
        )
    return JobState(
        detail["jobId"],
        JobStatus(detail["status"]),
        detail.get("statusReason"),
        (detail.get("container") or {}).get("exitCode"),
        attempts,
        detail.get("createdAt"),
    )


def definition_request(spec: JobSpec) -> dict[str, Any]:
    """A job definition for this spec's image and resources, named by content hash so it is reused."""
    properties = {"image": spec.image, "command": ["true"], "vcpus": spec.vcpus, "memory": spec.memory_mib}
    digest = hashlib.sha256(json.dumps(properties, sort_keys=True).encode()).hexdigest()[:12]
    return {"jobDefinitionName": f"genobatch-{digest}", "type": "container", "containerProperties": properties}


def submit_request(spec: JobSpec, queue: str, definition: str) -> dict[str, Any]:
    depends: list[dict[str, str]] = [{"jobId": job_id} for job_id in spec.depends_on]
    if spec.n_to_n_with:
        depends.append({"jobId": spec.n_to_n_with, "type": "N_TO_N"})
    if spec.sequential:
        depends.append({"type": "SEQUENTIAL"})
    request: dict[str, Any] = {
        "jobName": spec.name,
        "jobQueue": queue,
        "jobDefinition": definition,
        "containerOverrides": {
            "command": spec.command,
            "environment": [{"name": k, "value": v} for k, v in spec.environment.items()],
            "resourceRequirements": [
                {"type": "VCPU", "value": f"{spec.vcpus:g}"},
                {"type": "MEMORY", "value": str(spec.memory_mib)},
            ],
        },
        "dependsOn": depends,
        "retryStrategy": {"attempts": spec.retry_attempts},
        "tags": spec.tags,
    }
    if spec.mounts:  # a local extension: each job mounts its own inputs (see model.parse_mounts)
        request["containerOverrides"]["mountPoints"] = [
            {"sourcePath": m.source, "containerPath": m.target, "readOnly": m.read_only} for m in spec.mounts
        ]
    if spec.array_size is not None:
        request["arrayProperties"] = {"size": spec.array_size}
    if spec.timeout_seconds is not None:
        request["timeout"] = {"attemptDurationSeconds": spec.timeout_seconds}
    return request


class LocalBackend(Backend):
    """The embedded engine. ``engine``: "thread" runs it in this process, "background" starts (or reuses) a
    detached engine process, "none" leaves running it to someone else."""

    capabilities = Capabilities(name="local")

    def __init__(
        self,
        state_dir: str | Path | None = None,
        queue: str = DEFAULT_JOB_QUEUE,
        engine: str = "thread",
        settings: Settings | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.client = BatchClient(state_dir, autostart_engine=engine == "background")
        self.queue = queue
        self._definitions: dict[str, str] = {}
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        if engine == "thread":
            holder = self.client.engine_pid()
            if holder is not None:
                raise EngineLockedError(
                    f"an engine (pid {holder}) already runs {self.client.state_dir}; use engine='none'"
                )
            self._engine = Engine(self.client.state_dir, runtime=runtime, settings=settings)
            self._thread = threading.Thread(target=self._engine.run, name="genobatch-engine", daemon=True)
            self._thread.start()

    def submit(self, spec: JobSpec) -> str:
        definition = definition_request(spec)
        name = definition["jobDefinitionName"]
        if name not in self._definitions:
            existing = self.client.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
            if existing:
                self._definitions[name] = f"{name}:{existing[-1]['revision']}"
            else:
                self._definitions[name] = f"{name}:{self.client.register_job_definition(**definition)['revision']}"
        job_id: str = self.client.submit_job(**submit_request(spec, self.queue, self._definitions[name]))["jobId"]
        if self._engine is not None:
            self._engine.wake()
        return job_id

    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        states: list[JobState] = []
        for start in range(0, len(job_ids), MAX_DESCRIBE):
            details = self.client.describe_jobs(list(job_ids[start : start + MAX_DESCRIBE]))["jobs"]
            states.extend(state_from_detail(detail) for detail in details)
        return states

    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        for job_id in job_ids:
            self.client.terminate_job(jobId=job_id, reason=reason)
        if self._engine is not None:
            self._engine.wake()

    def close(self) -> None:
        if self._engine is not None and self._thread is not None:
            self._engine.request_stop(drain=False)
            self._thread.join(timeout=30)
        self.client.close()
