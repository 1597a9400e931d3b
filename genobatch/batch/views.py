"""describe-jobs and list-jobs: job rows rendered as AWS Batch's JobDetail and JobSummary shapes.

genobatch's additions live under a ``genobatch`` key (attempt usage, log paths) so that AWS-shaped
consumers can ignore them.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from . import faultinject
from .admission import Pool, why_waiting
from .errors import ClientException
from .jobs import active_attempts, child_status_counts
from .model import (
    OPEN_SQL,
    JobQueue,
    JobStatus,
    Resources,
    arn,
    name_from_arn,
)
from .registry import all_compute_environments, get_job_queue
from .store import Store

MAX_DESCRIBE = 100  # AWS's DescribeJobs limit
NO_ENGINE = (
    "Waiting: no genobatch engine is running on this state directory; "
    "start one with `genobatch engine start` (submit-job starts one unless --no-engine)"
)


def current_pools(conn: sqlite3.Connection) -> dict[str, Pool]:
    """Each compute environment's capacity and what STARTING/RUNNING attempts hold of it now."""
    pools = {env.name: Pool(env.name, env.capacity, env.state == "ENABLED") for env in all_compute_environments(conn)}
    for row in active_attempts(conn):
        if row["compute_environment"] in pools:
            pools[row["compute_environment"]].take(Resources(row["vcpus"], row["memory_mib"]))
    return pools


class Capacity:
    """The pools and queues that RUNNABLE jobs' reasons read, read once per describe-jobs call (up to 100 jobs)
    instead of once per job: each read of the pools lists every running attempt."""

    def __init__(self) -> None:
        self.pools: dict[str, Pool] | None = None
        self.queues: dict[str, JobQueue] = {}

    def own_pools(self, conn: sqlite3.Connection, queue_name: str) -> list[Pool]:
        if self.pools is None:
            self.pools = current_pools(conn)
        if queue_name not in self.queues:
            self.queues[queue_name] = get_job_queue(conn, queue_name)
        pools = self.pools
        return [pools[name] for name in self.queues[queue_name].compute_environments if name in pools]


def _waiting_reason(
    conn: sqlite3.Connection, row: sqlite3.Row, engine_alive: bool, capacity: Capacity | None = None
) -> str | None:
    status = JobStatus(row["status"])
    if status is JobStatus.PENDING and row["array_size"] is None:
        waiting = [
            r[0]
            for r in conn.execute(
                """SELECT d.depends_on FROM deps d JOIN jobs p ON p.id = d.depends_on
               WHERE d.job_id=? AND p.status != 'SUCCEEDED' LIMIT 4""",
                (row["id"],),
            )
        ]
        if waiting:
            more = "..." if len(waiting) > 3 else ""
            return f"Waiting for dependencies: {', '.join(waiting[:3])}{more}"
    if status in (JobStatus.SUBMITTED, JobStatus.PENDING) and not engine_alive:
        return NO_ENGINE
    if status is not JobStatus.RUNNABLE:
        reason: str | None = row["status_reason"]
        return reason
    if not engine_alive:
        return NO_ENGINE
    if stuck := faultinject.waiting_reason(row["container"]):
        return stuck
    own = (capacity or Capacity()).own_pools(conn, row["queue"])
    ahead = conn.execute(
        "SELECT count(*) FROM jobs WHERE status='RUNNABLE' AND queue=? AND seq < ?", (row["queue"], row["seq"])
    ).fetchone()[0]
    return why_waiting(Resources(row["vcpus"], row["memory_mib"]), own, ahead)


def has_open_jobs(conn: sqlite3.Connection) -> bool:
    """Whether any job has not yet ended: the engine's and the endpoint's idle checks ask the same question."""
    return conn.execute(f"SELECT 1 FROM jobs WHERE status IN {OPEN_SQL} LIMIT 1").fetchone() is not None


def last_change(conn: sqlite3.Connection) -> int:
    """Where the change log (``events``, one row per status change, never deleted) ends now."""
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])


def changed_jobs(store: Store, after: int) -> tuple[list[sqlite3.Row], int]:
    """The jobs whose status changed after change ``after`` (their id, status, statusReason and exit code), and
    where the change log ends: an incremental read, costing what changed, not what exists."""
    with store.read() as conn:
        changes = conn.execute("SELECT rowid, job_id FROM events WHERE rowid > ? ORDER BY rowid", (after,)).fetchall()
        rows = [
            row
            for job_id in dict.fromkeys(change[1] for change in changes)
            if (
                row := conn.execute(
                    "SELECT id, status, status_reason, exit_code, created_at FROM jobs WHERE id=?", (job_id,)
                ).fetchone()
            )
            is not None
        ]
    return rows, changes[-1][0] if changes else after


def _attempt_json(row: sqlite3.Row, log_stream: str) -> dict[str, Any]:
    return {
        "container": {
            "exitCode": row["exit_code"],
            "reason": row["container_reason"],
            "logStreamName": log_stream,
            "image": row["image"],
        },
        "startedAt": row["started_at"],
        "stoppedAt": row["stopped_at"],
        "statusReason": row["status_reason"],
        "genobatch": {
            "attempt": row["number"],
            "exitReason": row["exit_reason"],
            "computeEnvironment": row["compute_environment"],
            "runtime": row["runtime"],
            "cpuSeconds": row["cpu_seconds"],
            "maxRssKiB": row["max_rss_kib"],
            "pid": row["pid"],
            "stdout": f"{row['log_dir']}/stdout.log",
            "stderr": f"{row['log_dir']}/stderr.log",
            "workingDirectory": f"{row['log_dir']}/work",
        },
    }


def log_stream_name(row: sqlite3.Row, attempt: int) -> str:
    return f"{row['definition'].split(':')[0]}/default/{row['id']}/{attempt}"


def job_detail(
    conn: sqlite3.Connection, row: sqlite3.Row, engine_alive: bool, capacity: Capacity | None = None
) -> dict[str, Any]:
    request = json.loads(row["request"])
    attempts = conn.execute("SELECT * FROM attempts WHERE job_id=? ORDER BY number", (row["id"],)).fetchall()
    finished = [a for a in attempts if a["stopped_at"] is not None]
    is_parent = row["array_size"] is not None and row["parent_id"] is None
    environment = json.loads(row["environment"])
    detail: dict[str, Any] = {
        "jobArn": arn("job", row["id"]),
        "jobName": row["name"],
        "jobId": row["id"],
        "jobQueue": arn("job-queue", row["queue"]),
        "status": row["status"],
        "statusReason": _waiting_reason(conn, row, engine_alive, capacity),
        "createdAt": row["created_at"],
        "jobDefinition": arn("job-definition", row["definition"]),
        "parameters": request.get("parameters", {}),
        "tags": request.get("tags", {}),
        "retryStrategy": json.loads(row["retry"]),
        "dependsOn": [
            {"jobId": d[0], **({"type": d[1]} if d[1] else {})}
            for d in conn.execute("SELECT depends_on, type FROM deps WHERE job_id=?", (row["id"],))
        ],
        "attempts": [_attempt_json(a, log_stream_name(row, a["number"])) for a in finished],
        "container": {
            "command": json.loads(row["command"]),
            "vcpus": row["vcpus"],
            "memory": row["memory_mib"],
            "resourceRequirements": [
                {"type": "VCPU", "value": f"{row['vcpus']:g}"},
                {"type": "MEMORY", "value": str(row["memory_mib"])},
            ],
            "environment": [{"name": k, "value": v} for k, v in environment.items()],
            "exitCode": row["exit_code"],
            "reason": finished[-1]["container_reason"] if finished else None,
        },
    }
    if row["started_at"] is not None:
        detail["startedAt"] = row["started_at"]
    if row["stopped_at"] is not None:
        detail["stoppedAt"] = row["stopped_at"]
    if row["timeout_s"] is not None:
        detail["timeout"] = {"attemptDurationSeconds": row["timeout_s"]}
    if attempts:
        detail["container"]["logStreamName"] = log_stream_name(row, attempts[-1]["number"])
    if is_parent:
        detail["arrayProperties"] = {
            "size": row["array_size"],
            "statusSummary": {status.value: count for status, count in child_status_counts(conn, row["id"]).items()},
        }
        del detail["container"]["exitCode"]
    elif row["parent_id"] is not None:
        detail["arrayProperties"] = {"index": row["array_index"]}
    return detail


def describe_jobs(store: Store, job_ids: list[str], engine_alive: bool) -> dict[str, Any]:
    if not isinstance(job_ids, list) or len(job_ids) > MAX_DESCRIBE:
        raise ClientException(f"jobs must be a list of at most {MAX_DESCRIBE} job ids")
    out = []
    capacity = Capacity()
    with store.read() as conn:
        for job_id in job_ids:
            row = conn.execute("SELECT * FROM jobs WHERE id=?", (name_from_arn(job_id),)).fetchone()
            if row is not None:  # AWS silently leaves unknown ids out
                out.append(job_detail(conn, row, engine_alive, capacity))
    return {"jobs": out}


def _summary(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "jobArn": arn("job", row["id"]),
        "jobId": row["id"],
        "jobName": row["name"],
        "createdAt": row["created_at"],
        "status": row["status"],
        "statusReason": row["status_reason"],
        "jobDefinition": arn("job-definition", row["definition"]),
    }
    for key, column in (("startedAt", "started_at"), ("stoppedAt", "stopped_at")):
        if row[column] is not None:
            summary[key] = row[column]
    if row["array_size"] is not None and row["parent_id"] is None:
        summary["arrayProperties"] = {"size": row["array_size"]}
    else:
        summary["container"] = {"exitCode": row["exit_code"]}
        if row["parent_id"] is not None:
            summary["arrayProperties"] = {"index": row["array_index"]}
    return summary


def list_jobs(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    """AWS's rules: by queue (default status RUNNING) or by array parent; JOB_NAME filters may end in '*'."""
    clauses, args = [], []
    if request.get("arrayJobId"):
        clauses.append("parent_id=?")
        args.append(name_from_arn(request["arrayJobId"]))
    elif request.get("jobQueue"):
        get_job_queue(store.conn, request["jobQueue"])
        clauses.append("queue=? AND parent_id IS NULL")
        args.append(name_from_arn(request["jobQueue"]))
    else:
        raise ClientException("list-jobs needs --job-queue or --array-job-id")
    filters = request.get("filters") or []
    status = request.get("jobStatus")
    if status is None and not filters:
        status = "RUNNING"
    if status is not None:
        if status not in JobStatus.__members__:
            raise ClientException(f"jobStatus must be one of {', '.join(JobStatus.__members__)}, got {status!r}")
        clauses.append("status=?")
        args.append(status)
    for flt in filters:
        if flt.get("name") != "JOB_NAME":
            raise ClientException(f"unsupported filter {flt.get('name')!r}: the local engine supports JOB_NAME")
        values = flt.get("values") or [""]
        value = values if isinstance(values, str) else values[0]  # the CLI's shorthand gives a plain string
        clauses.append("name LIKE ? ESCAPE '\\'" if value.endswith("*") else "name=?")
        args.append(value[:-1].replace("_", "\\_").replace("%", "\\%") + "%" if value.endswith("*") else value)
    start = int(request.get("nextToken") or 0)
    limit = int(request.get("maxResults") or 1_000_000)
    rows = store.conn.execute(
        f"SELECT * FROM jobs WHERE {' AND '.join(clauses)} AND seq > ? ORDER BY seq LIMIT ?", (*args, start, limit + 1)
    ).fetchall()
    response: dict[str, Any] = {"jobSummaryList": [_summary(store.conn, row) for row in rows[:limit]]}
    if len(rows) > limit:
        response["nextToken"] = str(rows[limit - 1]["seq"])
    return response
