"""Job rows: submission (validated in full before anything is written), status changes, cancel, terminate.

``set_status`` is the one place a job's status changes, so the event log, timestamps and the
engine's change cursor (``done_seq``) can never disagree.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any

from . import faultinject
from .admission import Candidate
from .errors import ClientException
from .lifecycle import AttemptOutcome, status_after_attempt
from .model import (
    ACTIVE_SQL,
    MAX_ARRAY_SIZE,
    MAX_DEPENDS_ON,
    MIN_ARRAY_SIZE,
    OPEN_SQL,
    QUEUED_STATUSES,
    JobDefinition,
    JobStatus,
    Resources,
    RetryStrategy,
    arn,
    check_name,
    parse_command,
    parse_environment,
    parse_mounts,
    parse_resources,
    parse_timeout,
    substitute_parameters,
)
from .registry import get_compute_environment, get_job_definition, get_job_queue
from .store import Store, now_ms

DEPENDENCY_TYPES = (None, "N_TO_N", "SEQUENTIAL")


def set_status(
    conn: sqlite3.Connection, job_id: str, status: JobStatus, reason: str | None = None, at: int | None = None
) -> None:
    """Move a job to ``status``, stamping times, the event log and, for terminal states, ``done_seq``."""
    at = at or now_ms()
    terminal = status.is_terminal
    done_seq = None
    if terminal:  # a counter row, not MAX(done_seq): this runs for every job and must not grow with the table
        done_seq = conn.execute("UPDATE meta SET value = value + 1 WHERE key='done_seq' RETURNING value").fetchone()[0]
    conn.execute(
        """UPDATE jobs SET status=?, status_reason=?,
               started_at=CASE WHEN ?='RUNNING' AND started_at IS NULL THEN ? ELSE started_at END,
               runnable_at=CASE WHEN ?='RUNNABLE' THEN ? ELSE runnable_at END,
               stopped_at=CASE WHEN ? THEN ? ELSE stopped_at END,
               done_seq=?
           WHERE id=?""",
        (status.value, reason, status.value, at, status.value, at, terminal, at, done_seq, job_id),
    )
    conn.execute("INSERT INTO events VALUES (?,?,?,?)", (job_id, at, status.value, reason))


def finish_attempt(
    conn: sqlite3.Connection,
    job_id: str,
    number: int,
    retry: RetryStrategy,
    outcome: AttemptOutcome,
    cpu_seconds: float | None,
    max_rss_kib: int | None,
) -> None:
    """Record how an attempt ended, and the job's next status by its retry strategy (retry, or end)."""
    at = now_ms()
    conn.execute(
        """UPDATE attempts SET stopped_at=?, exit_code=?, exit_reason=?, status_reason=?, container_reason=?,
               cpu_seconds=?, max_rss_kib=? WHERE job_id=? AND number=?""",
        (
            at,
            outcome.exit_code,
            outcome.reason.value,
            outcome.status_reason,
            outcome.container_reason,
            cpu_seconds,
            max_rss_kib,
            job_id,
            number,
        ),
    )
    status = status_after_attempt(retry, number, outcome)
    conn.execute("UPDATE jobs SET exit_code=?, stop_requested=NULL WHERE id=?", (outcome.exit_code, job_id))
    reason = outcome.status_reason
    if status is JobStatus.RUNNABLE:
        reason = f"Attempt {number} of {retry.attempts} failed ({outcome.status_reason}); retrying"
    set_status(conn, job_id, status, reason, at)


def child_status_counts(conn: sqlite3.Connection, parent_id: str) -> dict[JobStatus, int]:
    """How many children of an array job are in each state (AWS's ``statusSummary``)."""
    counts = dict.fromkeys(JobStatus, 0)
    for status, count in conn.execute(
        "SELECT status, count(*) FROM jobs WHERE parent_id=? GROUP BY status", (parent_id,)
    ):
        counts[JobStatus(status)] = count
    return counts


def runnable_candidates(conn: sqlite3.Connection, queue: str) -> Iterator[Candidate]:
    """A queue's RUNNABLE jobs in submission order, read lazily: most engine passes free one or two slots,
    so the first read is small and later ones grow."""
    last, chunk = 0, 8
    while True:
        rows = conn.execute(
            "SELECT seq, id, vcpus, memory_mib, runnable_at FROM jobs WHERE status='RUNNABLE' AND queue=? "
            f"AND seq > ? AND {faultinject.STUCK_SQL} ORDER BY seq LIMIT ?",
            (queue, last, chunk),
        ).fetchall()
        for row in rows:
            yield Candidate(row["id"], row["seq"], Resources(row["vcpus"], row["memory_mib"]), row["runnable_at"] or 0)
        if len(rows) < chunk:
            return
        last, chunk = rows[-1]["seq"], min(chunk * 4, 1024)


# --- submission -------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    """A validated submission, ready to insert."""

    request: dict[str, Any]
    job_id: str
    queue: str
    definition: JobDefinition
    command: list[str]
    environment: dict[str, str]
    vcpus: float
    memory_mib: int
    container: dict[str, Any]  # {"image", "mounts"}: what a container runtime needs
    retry: RetryStrategy
    timeout: int | None
    array_size: int | None
    depends_on: list[tuple[str, str | None]]  # (job id, type)


def _plan(conn: sqlite3.Connection, request: dict[str, Any], known_ids: dict[str, int | None]) -> _Plan:
    """Validate one submit request. ``known_ids`` maps ids submitted earlier in this batch to array sizes."""
    check_name(request.get("jobName"), "jobName")
    queue = get_job_queue(conn, str(request.get("jobQueue") or ""))
    if queue.state != "ENABLED":
        raise ClientException(f"Job queue {queue.name} is DISABLED and accepts no new jobs")
    definition = get_job_definition(conn, str(request.get("jobDefinition") or ""))
    overrides = request.get("containerOverrides") or {}
    if not isinstance(overrides, dict):
        raise ClientException("containerOverrides must be an object")
    resources = parse_resources(overrides, definition.resources, "containerOverrides")
    command = (
        parse_command(overrides["command"], "containerOverrides") if "command" in overrides else definition.command
    )
    parameters = {**definition.parameters, **{str(k): str(v) for k, v in (request.get("parameters") or {}).items()}}
    environment = {**definition.environment, **parse_environment(overrides.get("environment"), "containerOverrides")}
    mounts = definition.mounts + parse_mounts(overrides, "containerOverrides")
    container = {"image": definition.image, "mounts": [m.to_json() for m in mounts]}
    container.update(faultinject.for_job(request, definition.spec, queue.spec))
    retry = RetryStrategy.parse(request["retryStrategy"]) if "retryStrategy" in request else definition.retry
    timeout = parse_timeout(request["timeout"], 1) if "timeout" in request else definition.timeout_seconds

    array_size = (request.get("arrayProperties") or {}).get("size")
    if array_size is not None and (
        not isinstance(array_size, int) or not MIN_ARRAY_SIZE <= array_size <= MAX_ARRAY_SIZE
    ):
        raise ClientException(
            f"arrayProperties.size must be an integer from {MIN_ARRAY_SIZE} to {MAX_ARRAY_SIZE}, got {array_size!r}"
        )

    environments = [get_compute_environment(conn, name) for name in queue.compute_environments]
    if not any(
        env.capacity.vcpus >= resources.vcpus and env.capacity.memory_mib >= resources.memory_mib
        for env in environments
    ):
        largest = ", ".join(f"{env.name}: {env.capacity.describe()}" for env in environments)
        raise ClientException(
            f"Job {request['jobName']} needs {resources.describe()}, more than any compute environment of job queue "
            f"{queue.name} can ever provide ({largest}); it would wait forever. Ask for less in the job definition "
            "or containerOverrides, or use a queue with a larger compute environment"
        )

    depends_on = _dependencies(conn, request.get("dependsOn") or [], array_size, known_ids)
    return _Plan(
        request,
        str(uuid.uuid4()),
        queue.name,
        definition,
        substitute_parameters(command, parameters),
        environment,
        resources.vcpus,
        resources.memory_mib,
        container,
        retry,
        timeout,
        array_size,
        depends_on,
    )


def _dependencies(
    conn: sqlite3.Connection, raw_deps: Any, array_size: int | None, known_ids: dict[str, int | None]
) -> list[tuple[str, str | None]]:
    """A submit request's ``dependsOn``, checked: (job id, type) pairs ("" for SEQUENTIAL)."""
    if not isinstance(raw_deps, list) or len(raw_deps) > MAX_DEPENDS_ON:
        raise ClientException(f"dependsOn must be a list of at most {MAX_DEPENDS_ON} entries")
    depends_on: list[tuple[str, str | None]] = []
    for i, dep in enumerate(raw_deps):
        kind = dep.get("type") if isinstance(dep, dict) else None
        if not isinstance(dep, dict) or kind not in DEPENDENCY_TYPES:
            raise ClientException(f'dependsOn[{i}] must be {{"jobId": ID}} with optional type N_TO_N or SEQUENTIAL')
        if kind is not None and array_size is None:
            raise ClientException(
                f"dependsOn[{i}]: type {kind} is only valid for array jobs (set arrayProperties.size)"
            )
        if kind == "SEQUENTIAL":
            if dep.get("jobId"):
                raise ClientException(
                    f"dependsOn[{i}]: a SEQUENTIAL dependency takes no jobId (it chains this array's children)"
                )
            depends_on.append(("", kind))
            continue
        dep_id = dep.get("jobId")
        if not isinstance(dep_id, str):
            raise ClientException(f"dependsOn[{i}].jobId is required")
        dep_size = _known_array_size(conn, dep_id, known_ids)
        if dep_size is False:
            raise ClientException(
                f"dependsOn[{i}].jobId {dep_id!r} does not exist: a job can only depend on jobs "
                "already submitted (use the jobId that submit-job returned)"
            )
        if kind == "N_TO_N" and dep_size != array_size:
            raise ClientException(
                f"dependsOn[{i}]: N_TO_N needs an array job of the same size ({array_size}); "
                f"{dep_id} has size {dep_size}"
            )
        depends_on.append((dep_id, kind))
    return depends_on


def _known_array_size(conn: sqlite3.Connection, job_id: str, known_ids: dict[str, int | None]) -> int | bool | None:
    """The array size of an existing job (None if not an array), or False if there is no such job."""
    if job_id in known_ids:
        return known_ids[job_id]
    row = conn.execute("SELECT array_size, parent_id FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        return False
    return row["array_size"] if row["parent_id"] is None else None


def _insert(conn: sqlite3.Connection, plan: _Plan, at: int) -> None:
    request_json = json.dumps(plan.request)
    retry_json = json.dumps(plan.retry.to_json())
    definition = f"{plan.definition.name}:{plan.definition.revision}"
    container_json = json.dumps(plan.container)

    def row(job_id: str, parent: str | None, index: int | None, environment: dict[str, str]) -> tuple[Any, ...]:
        return (
            job_id,
            plan.request["jobName"],
            plan.queue,
            definition,
            JobStatus.SUBMITTED.value,
            at,
            plan.vcpus,
            plan.memory_mib,
            json.dumps(plan.command),
            json.dumps(environment),
            plan.timeout,
            retry_json,
            parent,
            index,
            plan.array_size if index is None else None,
            request_json,
            container_json,
        )

    rows = [row(plan.job_id, None, None, plan.environment)]
    deps: list[tuple[str, str, str | None]] = []
    if plan.array_size is None:
        deps = [(plan.job_id, dep_id, kind) for dep_id, kind in plan.depends_on]
    else:
        for i in range(plan.array_size):
            child = f"{plan.job_id}:{i}"
            rows.append(row(child, plan.job_id, i, {**plan.environment, "AWS_BATCH_JOB_ARRAY_INDEX": str(i)}))
            for dep_id, kind in plan.depends_on:
                if kind == "SEQUENTIAL":
                    if i > 0:
                        deps.append((child, f"{plan.job_id}:{i - 1}", kind))
                elif kind == "N_TO_N":
                    deps.append((child, f"{dep_id}:{i}", kind))
                else:
                    deps.append((child, dep_id, kind))
        # The parent records its own dependencies for describe-jobs; children carry the real edges.
        deps += [(plan.job_id, dep_id, kind) for dep_id, kind in plan.depends_on if dep_id]
    conn.executemany(
        """INSERT INTO jobs (id, name, queue, definition, status, created_at, vcpus, memory_mib, command,
               environment, timeout_s, retry, parent_id, array_index, array_size, request, container)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
        rows,
    )
    conn.executemany("INSERT INTO deps VALUES (?,?,?)", deps)
    conn.executemany("INSERT INTO events VALUES (?,?,?,NULL)", [(r[0], at, JobStatus.SUBMITTED.value) for r in rows])


def _response(plan: _Plan) -> dict[str, Any]:
    return {"jobArn": arn("job", plan.job_id), "jobName": plan.request["jobName"], "jobId": plan.job_id}


def submit_job(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    with store.write() as conn:
        plan = _plan(conn, request, {})
        _insert(conn, plan, now_ms())
    return _response(plan)


def submit_jobs(store: Store, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Submit a whole graph in one transaction (a genobatch extension of the AWS API).

    A ``dependsOn`` entry may name another job of the same batch with ``{"jobName": NAME}``; job names must
    then be unique in the batch. Nothing is submitted if any job is invalid or the names form a cycle.
    """
    by_name: dict[str, dict[str, Any]] = {}
    for i, request in enumerate(requests):
        if not isinstance(request, dict):
            raise ClientException(f"jobs[{i}] must be a submit-job request object")
        name = check_name(request.get("jobName"), f"jobs[{i}].jobName")
        if name in by_name:
            raise ClientException(f"jobs[{i}]: jobName {name} appears twice; names must be unique within submit-jobs")
        by_name[name] = request
    graph = {
        name: {d["jobName"] for d in (r.get("dependsOn") or []) if isinstance(d, dict) and "jobName" in d}
        for name, r in by_name.items()
    }
    for name, wanted in graph.items():
        unknown = wanted - by_name.keys()
        if unknown:
            raise ClientException(
                f"job {name} depends on jobName {sorted(unknown)[0]!r}, which is not in this submit-jobs batch"
            )
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        cycle = " -> ".join(err.args[1])
        raise ClientException(f"dependsOn forms a cycle: {cycle}; no job was submitted") from None
    responses: dict[str, dict[str, Any]] = {}
    with store.write() as conn:
        known: dict[str, int | None] = {}
        plans = []
        at = now_ms()
        for name in order:
            request = dict(by_name[name])
            request["dependsOn"] = [
                {"jobId": responses[d["jobName"]]["jobId"], **({"type": d["type"]} if d.get("type") else {})}
                if "jobName" in d
                else d
                for d in (request.get("dependsOn") or [])
            ]
            plan = _plan(conn, request, known)
            known[plan.job_id] = plan.array_size
            responses[name] = _response(plan)
            plans.append(plan)
        for plan in plans:
            _insert(conn, plan, at)
    return {"jobs": [responses[r["jobName"]] for r in requests]}


# --- cancel and terminate ---------------------------------------------------------------------------------
def stop_job(store: Store, job_id: str, reason: str, terminate: bool) -> dict[str, Any]:
    """cancel-job fails queued jobs; terminate-job also stops STARTING/RUNNING ones (the engine kills them)."""
    if not reason:
        raise ClientException("a reason is required (--reason)")
    with store.write() as conn:
        row = conn.execute("SELECT id, status, array_size, parent_id FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise ClientException(f"Job {job_id} does not exist")
        targets = [row]
        if row["array_size"] is not None and row["parent_id"] is None:
            targets = conn.execute(
                "SELECT id, status FROM jobs WHERE parent_id=? AND status IN " + OPEN_SQL, (job_id,)
            ).fetchall()
        for target in targets:
            status = JobStatus(target["status"])
            if status in QUEUED_STATUSES:
                set_status(conn, target["id"], JobStatus.FAILED, reason)
            elif terminate and not status.is_terminal:
                conn.execute("UPDATE jobs SET stop_requested=? WHERE id=?", (reason, target["id"]))
    return {}


def active_attempts(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """The current attempt of every STARTING/RUNNING job, with the job's retry strategy and resources."""
    return conn.execute(
        "SELECT a.*, j.retry, j.vcpus, j.memory_mib FROM attempts a "
        f"JOIN jobs j ON j.id = a.job_id AND a.number = j.attempts_made WHERE j.status IN {ACTIVE_SQL}"
    ).fetchall()


def abandon_open_jobs(store: Store, reason: str) -> list[tuple[int, str | None]]:
    """Fail every job that has not ended (their submitter is gone); returns the (pid, start) of attempts that
    were running, for the caller to kill. Only call this while no engine runs on the store."""
    with store.write() as conn:
        running = [(row["pid"], row["proc_start"]) for row in active_attempts(conn) if row["pid"]]
        for row in conn.execute(f"SELECT id FROM jobs WHERE status IN {OPEN_SQL}").fetchall():
            set_status(conn, row[0], JobStatus.FAILED, reason)
    return running
