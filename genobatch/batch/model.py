"""The batch model: AWS Batch's resources and states, parsed from AWS Batch's JSON request shapes.

This module is the single source of truth for job states, exit reasons, resource defaults and the limits
that AWS Batch documents. Every other layer (store, engine, CLI, backends) imports them from here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ClientException

# --- Limits (AWS Batch's documented values; the local engine keeps them so definitions carry over) ---------
MAX_ARRAY_SIZE = 10_000
MIN_ARRAY_SIZE = 2
MAX_ATTEMPTS = 10
MAX_EVALUATE_ON_EXIT_RULES = 5
MAX_DEPENDS_ON = 20
AWS_MIN_TIMEOUT_SECONDS = 60  # AWS refuses shorter timeouts; the local engine accepts >= 1 for tests
DEFAULT_VCPUS = 1.0
MIN_VCPUS = 0.25  # the smallest job the engine accepts
MIN_MEMORY_MIB = 4
DEFAULT_MEMORY_MIB = 2048
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
ACCOUNT = "000000000000"
REGION = "local"


class JobStatus(enum.StrEnum):
    """AWS Batch job states, in lifecycle order."""

    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED)
TERMINAL_NAMES = tuple(s.value for s in TERMINAL_STATUSES)  # as describe-jobs spells them
ACTIVE_STATUSES = (JobStatus.STARTING, JobStatus.RUNNING)
QUEUED_STATUSES = (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE)


def sql_list(statuses: tuple[JobStatus, ...]) -> str:
    """``('A','B')`` for SQL ``IN`` clauses, so queries never spell states out by hand."""
    return "(" + ",".join(f"'{status.value}'" for status in statuses) + ")"


ACTIVE_SQL = sql_list(ACTIVE_STATUSES)  # holding resources
OPEN_SQL = sql_list(QUEUED_STATUSES + ACTIVE_STATUSES)  # not yet ended


class ExitReason(enum.StrEnum):
    """Why an attempt ended (Toil's taxonomy). Retry rules, the trace and reports read it."""

    FINISHED = "FINISHED"  # exit code 0
    FAILED = "FAILED"  # exited non-zero
    KILLED = "KILLED"  # killed by a signal nobody in genobatch sent
    TIMEOUT = "TIMEOUT"  # ran past timeout.attemptDurationSeconds
    MEMLIMIT = "MEMLIMIT"  # used more memory than it asked for
    LOST = "LOST"  # the engine running it died; the attempt's processes were killed on restart
    TERMINATED = "TERMINATED"  # terminate-job
    CANNOT_START = "CANNOT_START"  # the command could not be executed at all


# Status reasons worded as AWS Batch words them, so that evaluateOnExit rules written for AWS match locally.
STATUS_REASON_EXITED = "Essential container in task exited"
STATUS_REASON_TIMEOUT = "Job attempt duration exceeded timeout"
STATUS_REASON_OOM = "OutOfMemoryError: Container killed due to memory usage"
STATUS_REASON_CANNOT_START = "Task failed to start"
STATUS_REASON_HOST_LOST = "Host lost: the genobatch engine running this attempt stopped"


def arn(kind: str, name: str) -> str:
    """An ARN in AWS Batch's format for a local resource (``kind`` is e.g. ``job-queue``)."""
    return f"arn:aws:batch:{REGION}:{ACCOUNT}:{kind}/{name}"


def name_from_arn(value: str) -> str:
    """Accept a resource given by name or by ARN, as AWS does."""
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ClientException(
            f"{what} {value!r} is invalid: use 1-128 letters, digits, hyphens and underscores, "
            "starting with a letter or digit"
        )
    return value


# --- Retry strategy ---------------------------------------------------------------------------------------
_GLOB = re.compile(r"^[A-Za-z0-9.:\s_()/,-]*\*?$")


@dataclass(frozen=True)
class RetryRule:
    """One ``evaluateOnExit`` entry. Patterns may end in ``*`` (AWS allows no other wildcard)."""

    action: str  # "RETRY" or "EXIT"
    on_exit_code: str | None = None
    on_reason: str | None = None
    on_status_reason: str | None = None

    def matches(self, exit_code: int | None, reason: str | None, status_reason: str | None) -> bool:
        pairs = (
            (self.on_exit_code, None if exit_code is None else str(exit_code)),
            (self.on_reason, reason),
            (self.on_status_reason, status_reason),
        )
        return all(_glob_match(pattern, value) for pattern, value in pairs if pattern is not None)


def _glob_match(pattern: str, value: str | None) -> bool:
    if pattern == "*":
        return True
    if value is None:
        return False
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


@dataclass(frozen=True)
class RetryStrategy:
    attempts: int = 1
    rules: tuple[RetryRule, ...] = ()

    @classmethod
    def parse(cls, raw: Any) -> RetryStrategy:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ClientException('retryStrategy must be an object like {"attempts": 3}')
        attempts = raw.get("attempts", 1)
        if not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
            raise ClientException(
                f"retryStrategy.attempts must be an integer from 1 to {MAX_ATTEMPTS}, got {attempts!r}"
            )
        raw_rules = raw.get("evaluateOnExit") or []
        if not isinstance(raw_rules, list) or len(raw_rules) > MAX_EVALUATE_ON_EXIT_RULES:
            raise ClientException(
                f"retryStrategy.evaluateOnExit must be a list of at most {MAX_EVALUATE_ON_EXIT_RULES} rules"
            )
        rules = []
        for i, rule in enumerate(raw_rules):
            where = f"retryStrategy.evaluateOnExit[{i}]"
            if not isinstance(rule, dict):
                raise ClientException(f"{where} must be an object")
            action = str(rule.get("action", "")).upper()
            if action not in ("RETRY", "EXIT"):
                raise ClientException(f"{where}.action must be RETRY or EXIT, got {rule.get('action')!r}")
            patterns = {key: rule.get(key) for key in ("onExitCode", "onReason", "onStatusReason")}
            for key, pattern in patterns.items():
                if pattern is not None and (
                    not isinstance(pattern, str) or not _GLOB.match(pattern) or len(pattern) > 512
                ):
                    raise ClientException(
                        f"{where}.{key} {pattern!r} is invalid: a wildcard '*' may only end the pattern"
                    )
            if patterns["onExitCode"] is not None and not re.match(r"^[0-9]*\*?$", patterns["onExitCode"]):
                raise ClientException(
                    f"{where}.onExitCode {patterns['onExitCode']!r} may contain only digits and a final '*'"
                )
            if all(p is None for p in patterns.values()):
                raise ClientException(f"{where} needs at least one of onExitCode, onReason, onStatusReason")
            rules.append(RetryRule(action, patterns["onExitCode"], patterns["onReason"], patterns["onStatusReason"]))
        return cls(attempts, tuple(rules))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attempts": self.attempts}
        if self.rules:
            out["evaluateOnExit"] = [
                {
                    k: v
                    for k, v in (
                        ("action", r.action),
                        ("onExitCode", r.on_exit_code),
                        ("onReason", r.on_reason),
                        ("onStatusReason", r.on_status_reason),
                    )
                    if v is not None
                }
                for r in self.rules
            ]
        return out


# --- Container properties ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resources:
    vcpus: float
    memory_mib: int

    def describe(self) -> str:
        return f"{self.vcpus:g} vCPU and {self.memory_mib} MiB"


def parse_resources(props: dict[str, Any], base: Resources | None, where: str) -> Resources:
    """Read vCPUs/memory from ``resourceRequirements`` or the legacy ``vcpus``/``memory`` keys."""
    vcpus: Any = props.get("vcpus", base.vcpus if base else DEFAULT_VCPUS)
    memory: Any = props.get("memory", base.memory_mib if base else DEFAULT_MEMORY_MIB)
    for req in props.get("resourceRequirements") or []:
        kind = str(req.get("type", "")).upper()
        if kind == "VCPU":
            vcpus = req.get("value")
        elif kind == "MEMORY":
            memory = req.get("value")
        elif kind == "GPU":
            raise ClientException(f"{where}: GPU resource requirements are not supported by the local engine")
        else:
            raise ClientException(
                f"{where}.resourceRequirements: unknown type {req.get('type')!r} (use VCPU or MEMORY)"
            )
    try:
        vcpus_f, memory_i = float(vcpus), int(memory)
    except (TypeError, ValueError):
        raise ClientException(
            f"{where}: vCPUs {vcpus!r} and memory {memory!r} must be numbers (memory in MiB)"
        ) from None
    if vcpus_f < MIN_VCPUS or memory_i < MIN_MEMORY_MIB:
        raise ClientException(
            f"{where}: needs at least {MIN_VCPUS:g} vCPU and {MIN_MEMORY_MIB} MiB of memory, "
            f"got {vcpus_f:g} vCPU, {memory_i} MiB"
        )
    return Resources(vcpus_f, memory_i)


def parse_environment(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in raw):
        raise ClientException(f'{where}.environment must be a list of {{"name": ..., "value": ...}} objects')
    for entry in raw:
        if entry["name"].startswith("AWS_BATCH"):
            raise ClientException(f"{where}.environment: names starting with AWS_BATCH are reserved ({entry['name']})")
    return {e["name"]: str(e.get("value", "")) for e in raw}


@dataclass(frozen=True)
class Mount:
    """A host path a containerised job sees (at ``target``); writable only when not ``read_only``."""

    source: str
    target: str
    read_only: bool = True

    def to_json(self) -> list[Any]:
        return [self.source, self.target, self.read_only]


def parse_mounts(props: dict[str, Any], where: str) -> list[Mount]:
    """AWS's ``volumes`` (``host.sourcePath``) + ``mountPoints`` (``sourceVolume``), as in a job definition.

    Local extension, also accepted in ``containerOverrides``: a mount point may give ``sourcePath`` itself, so
    that each job can mount its own inputs without a job definition per job.
    """
    volumes: dict[str, str] = {}
    for volume in props.get("volumes") or []:
        source = (volume.get("host") or {}).get("sourcePath") if isinstance(volume, dict) else None
        if not isinstance(source, str) or not source.startswith("/") or not isinstance(volume.get("name"), str):
            raise ClientException(f'{where}.volumes entries must be {{"name": N, "host": {{"sourcePath": "/abs"}}}}')
        volumes[volume["name"]] = source
    mounts = []
    for i, point in enumerate(props.get("mountPoints") or []):
        if not isinstance(point, dict):
            raise ClientException(f"{where}.mountPoints[{i}] must be an object")
        source = point.get("sourcePath") or volumes.get(str(point.get("sourceVolume")))
        target = point.get("containerPath") or source
        if not isinstance(source, str) or not source.startswith("/") or not str(target).startswith("/"):
            raise ClientException(
                f"{where}.mountPoints[{i}] needs a sourceVolume named in volumes (or an absolute sourcePath) "
                "and an absolute containerPath"
            )
        mounts.append(Mount(source, str(target), bool(point.get("readOnly", False))))
    return mounts


def parse_command(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
        raise ClientException(f'{where}.command must be a non-empty list of strings, e.g. ["echo", "hello"]')
    return list(raw)


def parse_timeout(raw: Any, min_seconds: int) -> int | None:
    if raw is None:
        return None
    seconds = raw.get("attemptDurationSeconds") if isinstance(raw, dict) else None
    if not isinstance(seconds, int) or seconds < min_seconds:
        raise ClientException(f"timeout.attemptDurationSeconds must be an integer >= {min_seconds}, got {seconds!r}")
    return seconds


_REF = re.compile(r"Ref::([A-Za-z0-9_]+)")


def substitute_parameters(command: list[str], parameters: dict[str, str]) -> list[str]:
    """Fill ``Ref::name`` placeholders; unknown names stay as written, as AWS Batch leaves them."""
    return [_REF.sub(lambda m: parameters.get(m.group(1), m.group(0)), arg) for arg in command]


@dataclass(frozen=True)
class JobDefinition:
    name: str
    revision: int
    image: str | None
    command: list[str]
    resources: Resources
    mounts: list[Mount]
    environment: dict[str, str]
    parameters: dict[str, str]
    retry: RetryStrategy
    timeout_seconds: int | None
    spec: dict[str, Any] = field(repr=False)  # the registered request, echoed by describe-job-definitions

    @property
    def arn(self) -> str:
        return arn("job-definition", f"{self.name}:{self.revision}")

    @classmethod
    def parse(cls, spec: dict[str, Any], revision: int, min_timeout: int = 1) -> JobDefinition:
        name = check_name(spec.get("jobDefinitionName"), "jobDefinitionName")
        kind = spec.get("type", "container")
        if kind != "container":
            raise ClientException(f'job definition type {kind!r} is not supported: use "container"')
        props = spec.get("containerProperties")
        if not isinstance(props, dict):
            raise ClientException(
                'containerProperties is required, e.g. {"command": ["echo", "hi"], "vcpus": 1, "memory": 512}'
            )
        params = spec.get("parameters") or {}
        if not isinstance(params, dict):
            raise ClientException("parameters must be an object of string values")
        return cls(
            name=name,
            revision=revision,
            image=props.get("image"),
            command=parse_command(props.get("command"), "containerProperties"),
            resources=parse_resources(props, None, "containerProperties"),
            mounts=parse_mounts(props, "containerProperties"),
            environment=parse_environment(props.get("environment"), "containerProperties"),
            parameters={str(k): str(v) for k, v in params.items()},
            retry=RetryStrategy.parse(spec.get("retryStrategy")),
            timeout_seconds=parse_timeout(spec.get("timeout"), min_timeout),
            spec=spec,
        )


# --- Compute environments and queues ----------------------------------------------------------------------
@dataclass(frozen=True)
class ComputeEnvironment:
    """A pool of capacity. The local kind is this machine, optionally capped."""

    name: str
    state: str
    capacity: Resources
    spec: dict[str, Any] = field(repr=False)

    @property
    def arn(self) -> str:
        return arn("compute-environment", self.name)


@dataclass(frozen=True)
class JobQueue:
    name: str
    state: str
    priority: int
    compute_environments: tuple[str, ...]  # names, in the order jobs are placed
    spec: dict[str, Any] = field(repr=False)

    @property
    def arn(self) -> str:
        return arn("job-queue", self.name)
