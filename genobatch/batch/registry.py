"""Compute environments, job queues and job definitions: create, describe and resolve (AWS request shapes)."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from typing import Any

from . import faultinject
from .errors import ClientException
from .model import (
    ACCOUNT,
    REGION,
    ComputeEnvironment,
    JobDefinition,
    JobQueue,
    Resources,
    check_name,
    name_from_arn,
)
from .store import Store, now_ms

DEFAULT_COMPUTE_ENVIRONMENT = "local"
DEFAULT_JOB_QUEUE = "default"
MAX_QUEUE_ENVIRONMENTS = 3  # AWS Batch's limit


def host_resources() -> Resources:
    """This machine's usable CPUs (affinity-aware) and total memory."""
    with open("/proc/meminfo") as meminfo:
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return Resources(float(len(os.sched_getaffinity(0))), kib // 1024)


def _state(raw: Any, what: str) -> str:
    state = str(raw or "ENABLED").upper()
    if state not in ("ENABLED", "DISABLED"):
        raise ClientException(f"{what} state must be ENABLED or DISABLED, got {raw!r}")
    return state


# --- compute environments ---------------------------------------------------------------------------------
# What describe says of an UNMANAGED environment: on AWS its capacity is the instances you register yourself.
UNMANAGED_REASON = (
    "genobatch: an UNMANAGED compute environment has no capacity on the local engine (on AWS Batch you would add "
    "your own instances to its ECS cluster); jobs run in the other environments of their queue. To run jobs on "
    "this machine use type MANAGED, with computeResources type LOCAL (or EC2, SPOT, FARGATE...) and maxvCpus"
)
HEALTHY = "ComputeEnvironment Healthy"
SERVICE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"
VCPU_KEYS = ("minvCpus", "maxvCpus", "desiredvCpus")


def _local_capacity(resources: dict[str, Any], host: Resources) -> Resources:
    """type LOCAL: this machine, capped by maxvCpus (may be fractional) and maxMemoryMiB, never beyond it."""
    vcpus = resources.get("maxvCpus", host.vcpus)
    if not isinstance(vcpus, (int, float)) or not 0.25 <= vcpus <= host.vcpus:
        raise ClientException(f"maxvCpus must be between 0.25 and this machine's {host.vcpus:g} vCPUs, got {vcpus!r}")
    return Resources(float(vcpus), _memory_cap(resources, host))


def _memory_cap(resources: dict[str, Any], host: Resources) -> int:
    memory = resources.get("maxMemoryMiB", host.memory_mib)
    if not isinstance(memory, int) or not 4 <= memory <= host.memory_mib:
        raise ClientException(
            f"maxMemoryMiB must be between 4 and this machine's {host.memory_mib} MiB, got {memory!r}"
        )
    return memory


def _aws_capacity(resources: dict[str, Any], host: Resources) -> Resources:
    """An AWS type (EC2, SPOT, FARGATE...): what AWS would check of its vCPUs, then this machine capped by
    maxvCpus (a maxvCpus above this machine's is accepted: the machine is the limit) and maxMemoryMiB."""
    kind = resources["type"]
    if "maxvCpus" not in resources:
        raise ClientException(f'computeResources.maxvCpus is required for type {kind} (e.g. "maxvCpus": 16)')
    counts = {key: resources[key] for key in VCPU_KEYS if key in resources}
    for key, value in counts.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value < 0
            or (isinstance(value, float) and not value.is_integer())
        ):
            raise ClientException(
                f"computeResources.{key} must be a whole number of vCPUs for type {kind}, got {value!r} "
                "(fractional vCPUs are for type LOCAL)"
            )
    low, high = counts.get("minvCpus", 0), counts["maxvCpus"]
    if not low <= counts.get("desiredvCpus", low) <= high:
        raise ClientException(f"computeResources needs minvCpus <= desiredvCpus <= maxvCpus, got {counts}")
    return Resources(min(float(high), host.vcpus), _memory_cap(resources, host))


def _capacity(request: dict[str, Any]) -> Resources:
    """What of this machine the environment may use."""
    resources = request.get("computeResources")
    if str(request.get("type", "MANAGED")) == "UNMANAGED":
        if resources is not None:
            raise ClientException(
                "an UNMANAGED compute environment takes no computeResources (AWS Batch refuses them too): "
                "leave them out, or use type MANAGED"
            )
        return Resources(0.0, 0)
    resources = resources or {}
    if str(resources.get("type", "LOCAL")) == "LOCAL":
        return _local_capacity(resources, host_resources())
    return _aws_capacity(resources, host_resources())


def create_compute_environment(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    name = check_name(request.get("computeEnvironmentName"), "computeEnvironmentName")
    capacity = _capacity(request)
    state = _state(request.get("state"), "compute environment")
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM compute_environments WHERE name=?", (name,)).fetchone():
            raise ClientException(f"Compute environment {name} already exists")
        conn.execute(
            "INSERT INTO compute_environments VALUES (?,?,?,?,?,?)",
            (name, state, capacity.vcpus, capacity.memory_mib, json.dumps(request), now_ms()),
        )
    env = get_compute_environment(store.conn, name)
    return {"computeEnvironmentName": name, "computeEnvironmentArn": env.arn}


def get_compute_environment(conn: sqlite3.Connection, ref: str) -> ComputeEnvironment:
    row = conn.execute("SELECT * FROM compute_environments WHERE name=?", (name_from_arn(ref),)).fetchone()
    if row is None:
        raise ClientException(f"Compute environment {ref} does not exist (see describe-compute-environments)")
    return ComputeEnvironment(
        row["name"], row["state"], Resources(row["vcpus"], row["memory_mib"]), json.loads(row["spec"])
    )


def all_compute_environments(conn: sqlite3.Connection) -> list[ComputeEnvironment]:
    names = [r[0] for r in conn.execute("SELECT name FROM compute_environments ORDER BY created_at, name")]
    return [get_compute_environment(conn, name) for name in names]


def _resources_detail(env: ComputeEnvironment) -> dict[str, Any]:
    """computeResources as given (AWS's integer vCPUs as integers), with AWS's defaults."""
    given = dict(env.spec.get("computeResources") or {})
    if given.get("type", "LOCAL") == "LOCAL":
        return {"type": "LOCAL", "minvCpus": 0, "maxvCpus": env.capacity.vcpus, "maxMemoryMiB": env.capacity.memory_mib}
    for key in VCPU_KEYS:
        if key in given:
            given[key] = int(given[key])
    if not str(given["type"]).startswith("FARGATE"):  # Fargate environments have no minimum or desired vCPUs
        given.setdefault("minvCpus", 0)
        given.setdefault("desiredvCpus", given["minvCpus"])
    return given


def compute_environment_detail(env: ComputeEnvironment) -> dict[str, Any]:
    """describe-compute-environments' ComputeEnvironmentDetail; the capacity the engine uses under ``genobatch``."""
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, env.arn))
    kind = str(env.spec.get("type", "MANAGED"))
    detail: dict[str, Any] = {
        "computeEnvironmentName": env.name,
        "computeEnvironmentArn": env.arn,
        "ecsClusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{env.name}_Batch_{uid}",
        "tags": env.spec.get("tags", {}),
        "type": kind,
        "state": env.state,
        "status": "VALID",
        "statusReason": UNMANAGED_REASON if kind == "UNMANAGED" else HEALTHY,
        "serviceRole": env.spec.get("serviceRole", SERVICE_ROLE),
        "containerOrchestrationType": "ECS",
        "uuid": uid,
    }
    if kind == "UNMANAGED":
        detail["unmanagedvCpus"] = env.spec.get("unmanagedvCpus", 0)
    else:
        detail["computeResources"] = _resources_detail(env)
    for key in ("eksConfiguration", "context", "ecsSettings"):
        if key in env.spec:
            detail[key] = env.spec[key]
    detail["genobatch"] = {"capacity": {"vcpus": env.capacity.vcpus, "memoryMiB": env.capacity.memory_mib}}
    return detail


def describe_compute_environments(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    wanted = {name_from_arn(n) for n in request.get("computeEnvironments") or []}
    return {
        "computeEnvironments": [
            compute_environment_detail(env)
            for env in all_compute_environments(store.conn)
            if not wanted or env.name in wanted
        ]
    }


# --- job queues -------------------------------------------------------------------------------------------
def create_job_queue(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    name = check_name(request.get("jobQueueName"), "jobQueueName")
    priority = request.get("priority", 1)
    if not isinstance(priority, int) or not 0 <= priority <= 1000:
        raise ClientException(f"priority must be an integer from 0 to 1000 (higher runs first), got {priority!r}")
    order = request.get("computeEnvironmentOrder")
    if not isinstance(order, list) or not 1 <= len(order) <= MAX_QUEUE_ENVIRONMENTS:
        raise ClientException(
            "computeEnvironmentOrder must list 1 to 3 entries like "
            f'[{{"order": 1, "computeEnvironment": "{DEFAULT_COMPUTE_ENVIRONMENT}"}}]'
        )
    try:
        ordered = sorted(order, key=lambda entry: int(entry["order"]))
        names = tuple(name_from_arn(str(entry["computeEnvironment"])) for entry in ordered)
    except (KeyError, TypeError, ValueError):
        raise ClientException(
            "each computeEnvironmentOrder entry needs an integer order and a computeEnvironment"
        ) from None
    state = _state(request.get("state"), "job queue")
    faultinject.check_tags(request.get("tags"), "tags")
    with store.write() as conn:
        for env_name in names:
            get_compute_environment(conn, env_name)
        if conn.execute("SELECT 1 FROM job_queues WHERE name=?", (name,)).fetchone():
            raise ClientException(f"Job queue {name} already exists")
        conn.execute(
            "INSERT INTO job_queues VALUES (?,?,?,?,?,?)",
            (name, state, priority, json.dumps(names), json.dumps(request), now_ms()),
        )
    return {"jobQueueName": name, "jobQueueArn": get_job_queue(store.conn, name).arn}


def get_job_queue(conn: sqlite3.Connection, ref: str) -> JobQueue:
    row = conn.execute("SELECT * FROM job_queues WHERE name=?", (name_from_arn(ref),)).fetchone()
    if row is None:
        raise ClientException(f"Job queue {ref} does not exist (see describe-job-queues)")
    return JobQueue(
        row["name"],
        row["state"],
        row["priority"],
        tuple(json.loads(row["compute_environments"])),
        json.loads(row["spec"]),
    )


def all_job_queues(conn: sqlite3.Connection) -> list[JobQueue]:
    names = [r[0] for r in conn.execute("SELECT name FROM job_queues ORDER BY priority DESC, created_at")]
    return [get_job_queue(conn, name) for name in names]


def describe_job_queues(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    wanted = {name_from_arn(n) for n in request.get("jobQueues") or []}
    out = []
    for queue in all_job_queues(store.conn):
        if wanted and queue.name not in wanted:
            continue
        out.append(
            {
                "jobQueueName": queue.name,
                "jobQueueArn": queue.arn,
                "state": queue.state,
                "status": "VALID",
                "priority": queue.priority,
                "tags": queue.spec.get("tags", {}),
                "computeEnvironmentOrder": [
                    {"order": i + 1, "computeEnvironment": get_compute_environment(store.conn, env).arn}
                    for i, env in enumerate(queue.compute_environments)
                ],
            }
        )
    return {"jobQueues": out}


# --- job definitions --------------------------------------------------------------------------------------
def register_job_definition(store: Store, request: dict[str, Any], min_timeout: int = 1) -> dict[str, Any]:
    JobDefinition.parse(request, 1, min_timeout)  # validate before taking the write lock
    faultinject.check_tags(request.get("tags"), "tags")
    name = request["jobDefinitionName"]
    with store.write() as conn:
        row = conn.execute("SELECT max(revision) FROM job_definitions WHERE name=?", (name,)).fetchone()
        revision = (row[0] or 0) + 1
        conn.execute(
            "INSERT INTO job_definitions VALUES (?,?,?,?,?)", (name, revision, "ACTIVE", json.dumps(request), now_ms())
        )
    definition = JobDefinition.parse(request, revision, min_timeout)
    return {"jobDefinitionName": name, "jobDefinitionArn": definition.arn, "revision": revision}


def get_job_definition(conn: sqlite3.Connection, ref: str) -> JobDefinition:
    """Resolve ``name`` (latest ACTIVE revision), ``name:revision`` or an ARN."""
    name, _, revision = name_from_arn(ref).partition(":")
    if revision:
        row = conn.execute(
            "SELECT revision, spec FROM job_definitions WHERE name=? AND revision=?", (name, revision)
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT revision, spec FROM job_definitions WHERE name=? AND status='ACTIVE' "
            "ORDER BY revision DESC LIMIT 1",
            (name,),
        ).fetchone()
    if row is None:
        raise ClientException(
            f"Job definition {ref} does not exist: register it with register-job-definition "
            "(see describe-job-definitions for what is registered)"
        )
    return JobDefinition.parse(json.loads(row["spec"]), row["revision"])


def describe_job_definitions(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    refs = request.get("jobDefinitions") or []
    rows = store.conn.execute(
        "SELECT name, revision, status, spec FROM job_definitions ORDER BY name, revision"
    ).fetchall()
    out = []
    for row in rows:
        name_rev = f"{row['name']}:{row['revision']}"
        if refs and not any(name_from_arn(r) in (row["name"], name_rev) for r in refs):
            continue
        if request.get("jobDefinitionName") and row["name"] != request["jobDefinitionName"]:
            continue
        if request.get("status") and row["status"] != request["status"]:
            continue
        spec = json.loads(row["spec"])
        definition = JobDefinition.parse(spec, row["revision"])
        out.append(
            {
                **spec,
                "jobDefinitionArn": definition.arn,
                "revision": row["revision"],
                "status": row["status"],
                "type": spec.get("type", "container"),
            }
        )
    return {"jobDefinitions": out}


def ensure_defaults(store: Store) -> None:
    """On first use, a ``local`` environment (the whole machine) behind a ``default`` queue."""
    if store.conn.execute("SELECT 1 FROM compute_environments LIMIT 1").fetchone():
        return
    try:
        create_compute_environment(store, {"computeEnvironmentName": DEFAULT_COMPUTE_ENVIRONMENT})
        create_job_queue(
            store,
            {
                "jobQueueName": DEFAULT_JOB_QUEUE,
                "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": DEFAULT_COMPUTE_ENVIRONMENT}],
            },
        )
    except ClientException:
        pass  # another process created them at the same moment
