"""Moving jobs along their graph, inside the engine's write transaction: new jobs go SUBMITTED -> PENDING ->
RUNNABLE, an ended job releases (or fails) the jobs that wait for it, an array parent ends with its last child.

Every read here is incremental or bounded: ended jobs are read from the ``done_seq`` change cursor, and work over
many jobs (a 10,000-child array submitted, an engine's start) goes in chunks of ``CHUNK`` rows, so the engine's
memory does not grow with the number of jobs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from .jobs import child_status_counts, set_status
from .lifecycle import array_parent_status, resolve_dependencies
from .model import OPEN_SQL, JobStatus

CHUNK = 1000  # rows read at once


class Graph:
    """The engine's view of the job graph: how far it has followed ended jobs (``done_seq``)."""

    def __init__(self) -> None:
        self.done_cursor = 0

    def start(self, conn: sqlite3.Connection) -> None:
        """At the engine's start. Jobs may have ended while no engine ran (cancel-job), before the change cursor
        starts: move new jobs to PENDING, then re-check everything that waits on others; ``advance`` goes on."""
        self.done_cursor = conn.execute("SELECT value FROM meta WHERE key='done_seq'").fetchone()[0]
        self.advance(conn)
        for ids in _chunks(conn, "status='PENDING'"):
            self.resolve(conn, ids)
        for ids in _chunks(conn, "status='PENDING' AND array_size IS NOT NULL AND parent_id IS NULL"):
            for parent_id in ids:
                self.finish_array_parent(conn, parent_id)
        self.advance(conn)

    def advance(self, conn: sqlite3.Connection) -> None:
        """New jobs go SUBMITTED -> PENDING -> RUNNABLE; ended jobs release or fail their dependents."""
        while True:  # in the index's order; each chunk leaves SUBMITTED, so the next query starts past it
            submitted = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM jobs WHERE status='SUBMITTED' ORDER BY queue, seq LIMIT ?", (CHUNK,)
                )
            ]
            for job_id in submitted:
                set_status(conn, job_id, JobStatus.PENDING)
            self.resolve(conn, submitted)
            if len(submitted) < CHUNK:
                break
        while True:
            done = conn.execute(
                "SELECT id, parent_id, done_seq FROM jobs WHERE done_seq > ? ORDER BY done_seq LIMIT ?",
                (self.done_cursor, CHUNK),
            ).fetchall()
            if not done:
                return
            self.done_cursor = done[-1]["done_seq"]
            dependents = [
                r[0] for d in done for r in conn.execute("SELECT job_id FROM deps WHERE depends_on=?", (d["id"],))
            ]
            self.resolve(conn, dependents)
            for parent_id in dict.fromkeys(d["parent_id"] for d in done if d["parent_id"]):
                self.finish_array_parent(conn, parent_id)

    def resolve(self, conn: sqlite3.Connection, job_ids: list[str]) -> None:
        """Move PENDING jobs whose dependencies have all ended (array parents wait for their children)."""
        for job_id in dict.fromkeys(job_ids):
            row = conn.execute("SELECT status, array_size, parent_id FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None or row["status"] != "PENDING" or (row["array_size"] and row["parent_id"] is None):
                continue
            states = [
                (r[0], JobStatus(r[1]))
                for r in conn.execute(
                    "SELECT d.depends_on, p.status FROM deps d JOIN jobs p ON p.id = d.depends_on WHERE d.job_id=?",
                    (job_id,),
                )
            ]
            verdict = resolve_dependencies(states)
            if verdict.status is not JobStatus.PENDING:
                set_status(conn, job_id, verdict.status, verdict.reason)

    def finish_array_parent(self, conn: sqlite3.Connection, parent_id: str) -> None:
        row = conn.execute("SELECT status, array_size FROM jobs WHERE id=?", (parent_id,)).fetchone()
        if row is None or JobStatus(row["status"]).is_terminal:
            return
        open_child = conn.execute(  # an indexed probe: this runs after every child, so it must not count them all
            f"SELECT 1 FROM jobs WHERE parent_id=? AND status IN {OPEN_SQL} LIMIT 1",
            (parent_id,),
        ).fetchone()
        if open_child:
            return
        counts = child_status_counts(conn, parent_id)
        status = array_parent_status(counts, row["array_size"])
        if status is None:
            return
        failed = counts[JobStatus.FAILED]
        set_status(conn, parent_id, status, f"{failed} of {row['array_size']} child jobs failed" if failed else None)


def _chunks(conn: sqlite3.Connection, where: str) -> Iterator[list[str]]:
    """The ids of the jobs matching ``where``, in submission order, ``CHUNK`` at a time."""
    last = 0
    while True:
        rows = conn.execute(f"SELECT seq, id FROM jobs WHERE seq > ? AND {where} ORDER BY seq LIMIT ?", (last, CHUNK))
        chunk = rows.fetchall()
        if not chunk:
            return
        yield [row[1] for row in chunk]
        last = chunk[-1][0]
