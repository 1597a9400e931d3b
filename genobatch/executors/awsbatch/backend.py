"""The AWS Batch backend: the engine's ``Backend`` contract on AWS Batch (boto3).

- SubmitJob goes through a shared token bucket (50/s is AWS's account limit); throttling and 5xx are retried
  by botocore's adaptive retry mode. DescribeJobs is called with at most 100 ids, and no more often than the
  adaptive poll interval (1 s, doubling to 30 s while nothing changes).
- One job definition per image and resources, named by content hash and reused (never one per job).
- A job that can never run (more vCPUs or memory than the queue's compute environments can ever offer) is
  refused at submit with the reason, instead of sitting in RUNNABLE forever.
- Retries by kind. A spot reclaim (status reason ``Host EC2*``) is retried by Batch itself in the same job;
  after ``spot_attempts`` reclaims the job is resubmitted to the on-demand queue. An out-of-memory kill is
  resubmitted with twice the memory, up to ``memory_cap_mib``. Application errors are not retried unless
  ``retry_failures`` says so. A resubmitted job keeps its id for the caller; its dependents still waiting are
  resubmitted to wait for the new job. Counts of each are in ``counters`` (``recoveries()``).
- At most 20 ``dependsOn`` per job (AWS's limit, declared in ``capabilities``: the pipeline's driver waits
  for more through barrier jobs).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from genobatch.batch.errors import ClientException
from genobatch.batch.model import MAX_ARRAY_SIZE, MAX_DEPENDS_ON, ExitReason, JobStatus
from genobatch.executors.contract import AttemptState, Backend, Capabilities, JobSpec, JobState, Recoveries, Stuck

from .clients import Aws

DESCRIBE_BATCH = 100
SPOT_RECLAIM = "Host EC2"  # status reason prefix of a reclaimed spot instance
OOM_REASON = "OutOfMemoryError"
# The largest instance of each family: (vCPUs, MiB). "optimal" means c4/m4/r4 (AWS's definition).
LARGEST_INSTANCE = {
    "c6i": (128, 256 * 1024),
    "m6i": (128, 512 * 1024),
    "r6i": (128, 1024 * 1024),
    "c5": (96, 192 * 1024),
    "m5": (96, 384 * 1024),
    "r5": (96, 768 * 1024),
    "optimal": (64, 488 * 1024),
}
ECS_RESERVED_MIB = 1024  # the ECS agent and OS keep some memory back on every instance


class TokenBucket:
    """At most ``rate`` calls per second on average, in bursts of up to ``burst``; shared by threads."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                time.sleep((1 - self.tokens) / self.rate)


SUBMIT_BUCKET = TokenBucket(rate=50.0, burst=50)  # one per process: the limit is per account


@dataclass
class AwsBatchSettings:
    queue: str
    on_demand_queue: str | None = None  # where jobs go after spot_attempts reclaims
    spot_attempts: int = 2
    memory_cap_mib: int = 256 * 1024
    retry_failures: int = 0  # extra attempts for application errors (exit code != 0)
    job_role_arn: str | None = None
    bucket: str | None = None  # the stack's bucket: task files and staged data live there
    definition_prefix: str = "genobatch"
    default_image: str = "public.ecr.aws/docker/library/debian:bookworm-slim"
    poll_min_seconds: float = 1.0
    poll_max_seconds: float = 30.0


@dataclass
class _Tracked:
    """One logical job: its spec, the AWS job that now stands for it, and the attempts of earlier ones."""

    spec: JobSpec
    aws_id: str
    earlier: list[AttemptState] = field(default_factory=list)
    children_earlier: dict[str, list[AttemptState]] = field(default_factory=dict)  # of resubmitted arrays
    terminated: bool = False


def exit_reason(status: str, attempt: dict[str, Any]) -> ExitReason:
    """AWS's words for an attempt's end, translated into the engine's taxonomy (after Parsl's tables)."""
    container = attempt.get("container") or {}
    reason, status_reason = container.get("reason") or "", attempt.get("statusReason") or ""
    if reason.startswith(OOM_REASON):
        return ExitReason.MEMLIMIT
    if status_reason.startswith(SPOT_RECLAIM):
        return ExitReason.LOST
    if "timeout" in status_reason.lower():
        return ExitReason.TIMEOUT
    if reason.startswith(("CannotPullContainerError", "CannotStartContainerError", "CannotCreateContainerError")):
        return ExitReason.CANNOT_START
    code = container.get("exitCode")
    if code == 0 or (code is None and status == "SUCCEEDED"):
        return ExitReason.FINISHED
    return ExitReason.FAILED


class AwsBatchBackend(Backend):
    capabilities = Capabilities(
        name="awsbatch",
        max_array_size=MAX_ARRAY_SIZE,
        max_depends_on=MAX_DEPENDS_ON,
        min_timeout_seconds=60,
        shared_filesystem=False,
    )

    def __init__(self, aws: Aws, settings: AwsBatchSettings) -> None:
        self.aws, self.settings = aws, settings
        self.batch = aws.client("batch")
        self.jobs: dict[str, _Tracked] = {}  # logical id -> tracked
        self.counters: Counter[str] = Counter()  # reclaims, moved_to_on_demand, more_memory..., retries per job
        self._definitions: dict[str, str] = {}
        self._limits: dict[str, tuple[float, int]] = {}
        self._cache: dict[str, JobState] = {}
        self._next_poll = 0.0
        self._interval = settings.poll_min_seconds
        self._lock = threading.Lock()
        self._runnable_since: dict[str, float] = {}

    # --- submit -------------------------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        queue = self.settings.queue
        self._check_fits(spec, queue)
        with self._lock:
            aws_id = self._submit(spec, queue)
            self.jobs[aws_id] = _Tracked(spec, aws_id)
        self._interval = self.settings.poll_min_seconds
        return aws_id

    def _submit(self, spec: JobSpec, queue: str) -> str:
        if spec.array_size is not None and spec.array_size > MAX_ARRAY_SIZE:
            raise ClientException(f"array size {spec.array_size} is above AWS Batch's {MAX_ARRAY_SIZE}: split it")
        depends = [self.jobs[d].aws_id if d in self.jobs else d for d in spec.depends_on]
        if len(depends) + bool(spec.n_to_n_with) + spec.sequential > MAX_DEPENDS_ON:
            raise ClientException(f"job {spec.name} depends on more than {MAX_DEPENDS_ON} jobs: AWS Batch's limit")
        request: dict[str, Any] = {
            "jobName": spec.name[:128],
            "jobQueue": queue,
            "jobDefinition": self._definition(spec),
            "containerOverrides": {
                "command": spec.command,
                "environment": [{"name": k, "value": v} for k, v in spec.environment.items()],
                "resourceRequirements": [
                    {"type": "VCPU", "value": f"{max(1, round(spec.vcpus))}"},
                    {"type": "MEMORY", "value": str(spec.memory_mib)},
                ],
            },
            "dependsOn": [{"jobId": d} for d in depends],
            "retryStrategy": self._retry_strategy(spec),
            "tags": {k: v for k, v in spec.tags.items() if v},
            "propagateTags": True,
        }
        if spec.n_to_n_with:
            n_to_n = self.jobs[spec.n_to_n_with].aws_id if spec.n_to_n_with in self.jobs else spec.n_to_n_with
            request["dependsOn"].append({"jobId": n_to_n, "type": "N_TO_N"})
        if spec.sequential:
            request["dependsOn"].append({"type": "SEQUENTIAL"})
        if spec.array_size is not None:
            request["arrayProperties"] = {"size": spec.array_size}
        if spec.timeout_seconds is not None:
            request["timeout"] = {"attemptDurationSeconds": max(60, spec.timeout_seconds)}
        SUBMIT_BUCKET.take()
        job_id: str = self.batch.submit_job(**request)["jobId"]
        return job_id

    def _retry_strategy(self, spec: JobSpec) -> dict[str, Any]:
        """Batch retries spot reclaims itself (same job, dependents undisturbed); other failures exit, and
        ``poll`` decides whether a new job is worth it (more memory, on-demand, or a user-asked retry)."""
        attempts = max(spec.retry_attempts, 1 + self.settings.spot_attempts)
        return {
            "attempts": min(10, attempts),
            "evaluateOnExit": [
                {"onStatusReason": f"{SPOT_RECLAIM}*", "action": "RETRY"},
                *([{"onExitCode": "*", "action": "RETRY"}] if spec.retry_attempts > 1 else []),
                {"onReason": "*", "action": "EXIT"},
            ],
        }

    def _definition(self, spec: JobSpec) -> str:
        """The job definition for this image (and role), registered once under a content-hash name."""
        image = spec.image or self.settings.default_image
        properties: dict[str, Any] = {
            "image": image,
            "command": ["true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "1024"}],
        }
        if self.settings.job_role_arn:
            properties["jobRoleArn"] = self.settings.job_role_arn
        digest = hashlib.sha256(json.dumps(properties, sort_keys=True).encode()).hexdigest()[:12]
        tool = image.rsplit("/", 1)[-1].split(":")[0]
        name = f"{self.settings.definition_prefix}-{tool}-{digest}"
        if name not in self._definitions:
            found = self.batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
            if found:
                revision = max(d["revision"] for d in found)
            else:
                revision = self.batch.register_job_definition(
                    jobDefinitionName=name, type="container", containerProperties=properties
                )["revision"]
            self._definitions[name] = f"{name}:{revision}"
        return self._definitions[name]

    def _check_fits(self, spec: JobSpec, queue: str) -> None:
        """Refuse a job no compute environment of the queue can ever run (it would wait in RUNNABLE forever)."""
        if queue not in self._limits:
            found = self.batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
            if not found:
                raise ClientException(f"job queue {queue} does not exist: run `genobatch aws up`")
            names = [e["computeEnvironment"] for e in found[0]["computeEnvironmentOrder"]]
            environments = self.batch.describe_compute_environments(computeEnvironments=names)["computeEnvironments"]
            best = (0.0, 0)
            for env in environments:
                resources = env.get("computeResources") or {}
                families = [t.split(".")[0] for t in resources.get("instanceTypes") or ["optimal"]]
                vcpus = max((LARGEST_INSTANCE.get(f, (0, 0))[0] for f in families), default=0)
                memory = max((LARGEST_INSTANCE.get(f, (0, 0))[1] for f in families), default=0)
                vcpus = min(vcpus, resources.get("maxvCpus", vcpus))
                best = (max(best[0], vcpus), max(best[1], memory - ECS_RESERVED_MIB))
            self._limits[queue] = best
        max_vcpus, max_memory = self._limits[queue]
        if spec.vcpus > max_vcpus or spec.memory_mib > max_memory:
            raise ClientException(
                f"Job {spec.name} needs {spec.vcpus:g} vCPU and {spec.memory_mib} MiB, more than any compute "
                f"environment of job queue {queue} can ever provide ({max_vcpus:g} vCPU, {max_memory} MiB); "
                "on AWS Batch it would wait in RUNNABLE forever. Ask for less or allow larger instances"
            )

    # --- poll ---------------------------------------------------------------------------------------------
    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        now = time.monotonic()
        missing = [j for j in job_ids if j not in self._cache]
        if now >= self._next_poll or missing:
            self._refresh(list(job_ids))
            self._next_poll = time.monotonic() + self._interval
        return [self._cache[j] for j in job_ids if j in self._cache]

    def _refresh(self, job_ids: list[str]) -> None:
        aws_ids = {self._aws_id(j): j for j in job_ids}
        changed = False
        for start in range(0, len(aws_ids), DESCRIBE_BATCH):
            details = self.batch.describe_jobs(jobs=list(aws_ids)[start : start + DESCRIBE_BATCH])["jobs"]
            for detail in details:
                logical = aws_ids[detail["jobId"]]
                state = self._state(logical, detail)
                stale = detail["jobId"].partition(":")[0] != self._aws_id(logical.partition(":")[0])
                if stale or (state.status is JobStatus.FAILED and self._resubmitted(logical, detail)):
                    # this array was resubmitted (by a sibling's failure in this very batch, or just now)
                    state = replace(state, status=JobStatus.RUNNABLE, status_reason="resubmitted")
                if state.status is JobStatus.RUNNABLE:
                    self._runnable_since.setdefault(logical, time.monotonic())
                else:
                    self._runnable_since.pop(logical, None)
                previous = self._cache.get(logical)
                changed |= previous is None or previous.status is not state.status
                self._cache[logical] = state
        self._interval = (
            self.settings.poll_min_seconds if changed else min(self.settings.poll_max_seconds, self._interval * 2)
        )

    def _aws_id(self, logical: str) -> str:
        """Array children are ``<parent>:<i>``; the parent may have been resubmitted under another id."""
        parent, _, index = logical.partition(":")
        tracked = self.jobs.get(parent)
        base = tracked.aws_id if tracked else parent
        return f"{base}:{index}" if index else base

    def _state(self, logical: str, detail: dict[str, Any]) -> JobState:
        tracked = self.jobs.get(logical.partition(":")[0])
        attempts: list[AttemptState] = []
        if tracked is not None:
            attempts = list(tracked.children_earlier.get(logical, []) if ":" in logical else tracked.earlier)
        for number, attempt in enumerate(detail.get("attempts") or [], start=len(attempts) + 1):
            container = attempt.get("container") or {}
            reason = exit_reason(detail["status"], attempt)
            if tracked and tracked.terminated and reason is ExitReason.FAILED:
                reason = ExitReason.TERMINATED
            attempts.append(
                AttemptState(
                    number=number,
                    exit_reason=reason,
                    exit_code=container.get("exitCode"),
                    status_reason=attempt.get("statusReason"),
                    started_at_ms=attempt.get("startedAt"),
                    stopped_at_ms=attempt.get("stoppedAt"),
                    container_reason=container.get("reason"),
                    runtime="awsbatch",
                    image=(detail.get("container") or {}).get("image"),
                    log=container.get("logStreamName"),
                )
            )
        return JobState(
            logical,
            JobStatus(detail["status"]),
            detail.get("statusReason"),
            (detail.get("container") or {}).get("exitCode"),
            attempts,
            detail.get("createdAt"),
        )

    def _resubmitted(self, logical: str, detail: dict[str, Any]) -> bool:
        """Start a new job for a failure worth another try; True if one was started. For an array child the
        whole array is resubmitted: its finished children find their outputs in S3 and end at once."""
        parent, _, index = logical.partition(":")
        tracked = self.jobs.get(parent)
        attempts = detail.get("attempts") or []
        if tracked is None or tracked.terminated or not attempts or (tracked.spec.array_size is None) == bool(index):
            return False
        last = attempts[-1]
        reason = exit_reason(detail["status"], last)
        spec, queue = tracked.spec, self.settings.queue
        self.counters["reclaims"] += sum(1 for a in attempts if (a.get("statusReason") or "").startswith(SPOT_RECLAIM))
        if reason is ExitReason.LOST and self.settings.on_demand_queue:
            queue = self.settings.on_demand_queue
            self.counters["moved_to_on_demand"] += 1
        elif reason is ExitReason.MEMLIMIT and spec.memory_mib < self.settings.memory_cap_mib:
            spec = replace(spec, memory_mib=min(self.settings.memory_cap_mib, spec.memory_mib * 2))
            self.counters["more_memory"] += 1
        elif reason is ExitReason.FAILED and self.counters[f"retries:{parent}"] < self.settings.retry_failures:
            self.counters[f"retries:{parent}"] += 1
            self.counters["retried_failures"] += 1
        else:
            return False
        state = self._state(logical, detail)
        with self._lock:
            if index:
                tracked.children_earlier[logical] = state.attempts
            else:
                tracked.earlier = state.attempts
            tracked.spec = spec
            tracked.aws_id = self._submit(spec, queue)
            self._resubmit_dependents(parent)
        return True

    def _resubmit_dependents(self, logical: str) -> None:
        """Dependents still waiting on the replaced job would fail with it: cancel them and submit them
        again, waiting on the new job (their logical ids do not change)."""
        waiting = [logical]
        for job_id, tracked in self.jobs.items():  # submission order is dependency order
            if set(tracked.spec.depends_on) & set(waiting) or tracked.spec.n_to_n_with in waiting:
                state = self._cache.get(job_id)
                if state is not None and state.status in (JobStatus.SUCCEEDED, JobStatus.RUNNING):
                    continue
                self.batch.terminate_job(jobId=tracked.aws_id, reason="genobatch: its dependency was resubmitted")
                tracked.aws_id = self._submit(tracked.spec, self.settings.queue)
                waiting.append(job_id)

    def recoveries(self) -> Recoveries:
        kinds = Recoveries().as_dict()
        return Recoveries(**{kind: n for kind, n in self.counters.items() if kind in kinds})

    def stuck(self, seconds: float) -> list[Stuck]:
        """RUNNABLE for longer than ``seconds``: AWS Batch's own status reason says why (capacity, limits,
        or a MISCONFIGURATION reason for a job that can never be placed)."""
        now = time.monotonic()
        return [
            Stuck(job_id, now - since, self._cache[job_id].status_reason or "RUNNABLE, no reason given yet")
            for job_id, since in self._runnable_since.items()
            if now - since > seconds and job_id in self._cache
        ]

    # --- cancel -------------------------------------------------------------------------------------------
    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        for job_id in job_ids:
            tracked = self.jobs.get(job_id)
            if tracked is not None:
                tracked.terminated = True
            self.batch.terminate_job(jobId=self._aws_id(job_id), reason=reason)
        self._next_poll = 0.0

    def log_text(self, stream: str, limit: int = 10_000) -> str:
        """An attempt's CloudWatch log (``AttemptState.log`` is its stream name)."""
        logs = self.aws.client("logs")
        events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=False)
        return "\n".join(e["message"] for e in events["events"][-limit:])
