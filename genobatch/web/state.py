"""The engine's database of a work directory (``<work>/engine/state.db``), opened read-only.

A dashboard must never change what it watches: SQLite's ``mode=ro`` guarantees it (no schema set-up, no
repair, no default queue created, unlike ``Store``), and WAL mode lets it read while the engine writes.
The JSON shapes of jobs come from the engine's own ``views`` (``job_detail``: attempts, why a job waits).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genobatch.batch.admission import Pool
from genobatch.batch.daemon import engine_pid
from genobatch.batch.model import ACTIVE_STATUSES, JobStatus
from genobatch.batch.registry import all_job_queues
from genobatch.batch.views import current_pools, job_detail

QUEUED = ("SUBMITTED", "PENDING", "RUNNABLE")
ACTIVE = tuple(s.value for s in ACTIVE_STATUSES)
WAIT_REASONS_MAX = 200  # why-it-waits is worked out for at most this many jobs per request (each is a few queries)


def state_dir(work: Path) -> Path:
    return work / "engine"


@contextmanager
def reading(work: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to the work directory's engine database in one snapshot, or None if there is none
    (no local run yet, or runs on AWS Batch or Slurm only)."""
    path = state_dir(work) / "state.db"
    if not path.is_file():
        yield None
        return
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("BEGIN")
        yield conn
    finally:
        conn.close()


def database_id(work: Path) -> tuple[int, int] | None:
    """The (device, inode) of the engine's database: a damaged one set aside is made anew as another file."""
    try:
        found = (state_dir(work) / "state.db").stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def engine_alive(work: Path) -> bool:
    return engine_pid(state_dir(work)) is not None


def run_jobs(conn: sqlite3.Connection, run_id: str) -> list[sqlite3.Row]:
    """The run's jobs that are tasks: single jobs and array children, not array parents (nor barrier jobs,
    which carry no run tag), in submission order."""
    return conn.execute(
        """SELECT j.* FROM jobs j
           WHERE j.array_size IS NULL AND (
             json_extract(j.request, '$.tags.run') = :run
             OR j.parent_id IN (SELECT id FROM jobs WHERE json_extract(request, '$.tags.run') = :run))
           ORDER BY j.seq""",
        {"run": run_id},
    ).fetchall()


def parents(conn: sqlite3.Connection, run_id: str) -> dict[str, sqlite3.Row]:
    rows = conn.execute(
        "SELECT * FROM jobs WHERE array_size IS NOT NULL AND json_extract(request, '$.tags.run') = ?", (run_id,)
    )
    return {row["id"]: row for row in rows}


def jobs(conn: sqlite3.Connection, job_ids: list[str]) -> list[sqlite3.Row]:
    """These jobs' rows (those that exist), in submission order."""
    return sorted(_rows_of(conn, "SELECT * FROM jobs WHERE id IN ({})", job_ids), key=lambda row: int(row["seq"]))


def attempts(conn: sqlite3.Connection, job_ids: list[str]) -> dict[str, list[sqlite3.Row]]:
    """Every attempt (the running one too) of these jobs, in order."""
    out: dict[str, list[sqlite3.Row]] = {}
    for row in _rows_of(conn, "SELECT * FROM attempts WHERE job_id IN ({}) ORDER BY number", job_ids):
        out.setdefault(row["job_id"], []).append(row)
    return out


def _rows_of(conn: sqlite3.Connection, query: str, job_ids: list[str]) -> Iterator[sqlite3.Row]:
    """``query``'s rows for these jobs (its ``{}`` their placeholders), 500 ids a statement: SQLite's limit on
    variables is not to be reached by a run's thousands of jobs."""
    for i in range(0, len(job_ids), 500):
        part = job_ids[i : i + 500]
        yield from conn.execute(query.format(",".join("?" * len(part))), part)


def waiting_reasons(conn: sqlite3.Connection, rows: list[sqlite3.Row], alive: bool) -> dict[str, str]:
    """Why each queued job waits, as ``describe-jobs`` says it (dependencies, capacity, no engine)."""
    reasons = {}
    for row in [r for r in rows if r["status"] in QUEUED][:WAIT_REASONS_MAX]:
        reason = job_detail(conn, row, alive).get("statusReason")
        if reason:
            reasons[row["id"]] = str(reason)
    return reasons


def job(conn: sqlite3.Connection, job_id: str, alive: bool) -> tuple[sqlite3.Row, dict[str, Any]] | None:
    row = conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        return None
    return row, job_detail(conn, row, alive)


def job_run(conn: sqlite3.Connection, row: sqlite3.Row) -> str | None:
    """The run a job belongs to (an array child: its parent's)."""
    source = row
    if row["parent_id"] is not None:
        source = conn.execute("SELECT request FROM jobs WHERE id=?", (row["parent_id"],)).fetchone() or row
    return run_tag(source)


def run_tag(row: sqlite3.Row) -> str | None:
    """The run a job's own tags name (an array child carries none: its parent's do)."""
    run = (json.loads(row["request"]).get("tags") or {}).get("run")
    return str(run) if run else None


def queues(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each queue with its jobs per state (tasks: array parents are not counted) and its environments' use."""
    counts: dict[str, dict[str, int]] = {}
    for row in conn.execute("SELECT queue, status, count(*) FROM jobs WHERE array_size IS NULL GROUP BY queue, status"):
        counts.setdefault(row[0], {})[row[1]] = row[2]
    pools = current_pools(conn)
    out = []
    for queue in all_job_queues(conn):
        environments = []
        for name in queue.compute_environments:
            pool = pools.get(name)
            if pool is not None:
                environments.append(_pool_json(name, pool))
        states = counts.get(queue.name, {})
        out.append({
            "name": queue.name,
            "state": queue.state,
            "priority": queue.priority,
            "jobs": {status.value: states.get(status.value, 0) for status in JobStatus},
            "environments": environments,
        })  # fmt: skip
    return out


def _pool_json(name: str, pool: Pool) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": pool.enabled,
        "vcpus": pool.capacity.vcpus,
        "memoryMiB": pool.capacity.memory_mib,
        "vcpusUsed": pool.used_vcpus,
        "memoryMiBUsed": pool.used_memory_mib,
    }
