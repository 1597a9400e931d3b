"""A running run's tasks, kept between the page's asks and brought up to date with what changed since the last:
the engine's jobs that have events since (every submission and status change writes one: ``jobs.submit``,
``jobs.set_status``) and the trace's rows appended since (it is only appended to). Read whole at every ask,
a running run of 70,000 tasks took 1.1-1.5 s, while the page asks every few seconds.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
from pathlib import Path

from . import state
from .tasks import TaskFiles, TaskView, apply_trace_rows, engine_views


class TraceFollower:
    """A run's trace, read from where the last ask stopped (whole rows only: a row being written waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tasks: dict[str, TaskView] = {}
        self.fields: list[str] | None = None  # the header, once read
        self.offset = 0
        self.inode: int | None = None

    def read(self) -> list[TaskView]:
        try:
            with open(self.path, "rb") as handle:
                found = os.fstat(handle.fileno())
                if found.st_ino != self.inode or found.st_size < self.offset:  # a new trace: start again
                    self.tasks, self.fields, self.offset, self.inode = {}, None, 0, found.st_ino
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return list(self.tasks.values())
        whole = data[: whole_rows(data)]
        self.offset += len(whole)
        text = io.StringIO(whole.decode(errors="replace"), newline="")
        if self.fields is None:
            self.fields = next(csv.reader(text, delimiter="\t"), None)
        if self.fields is not None:
            apply_trace_rows(csv.DictReader(text, fieldnames=self.fields, delimiter="\t"), self.tasks)
        return list(self.tasks.values())


def whole_rows(data: bytes) -> int:
    """How many bytes of ``data`` are whole rows: up to the last newline outside a quoted field (a cancel's
    reason may hold one). The csv writer quotes any field with a quote in it and doubles the quotes inside, so
    the quotes before a row's end are even in number."""
    end = len(data)
    while (cut := data.rfind(b"\n", 0, end)) >= 0:
        if data.count(b'"', 0, cut) % 2 == 0:
            return cut + 1
        end = cut
    return 0


class EngineFollower:
    """A run's jobs in the engine's database: read whole once, then only the jobs with events since."""

    def __init__(self, run_id: str, files: TaskFiles) -> None:
        self.run_id, self.files = run_id, files
        self.views: dict[str, TaskView] = {}  # by job id, in submission order
        self.parents: dict[str, sqlite3.Row] = {}  # the run's array jobs
        self.last_event = 0
        self.database: tuple[int, int] | None = None  # the (device, inode) of the database read
        self.explained: list[TaskView] = []  # the queued tasks given a reason at the last ask

    def read(self, conn: sqlite3.Connection, database: tuple[int, int] | None, alive: bool) -> list[TaskView]:
        top = conn.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
        if database != self.database or top < self.last_event:  # a database set aside and made anew
            self.views, self.parents = {}, state.parents(conn, self.run_id)
            rows = state.run_jobs(conn, self.run_id)
        else:
            rows = self._changed(conn) if top > self.last_event else []
        self.database, self.last_event = database, top
        for view in engine_views(conn, rows, self.parents, self.files):
            self.views[view.job_id] = view  # a job seen before keeps its place: new ones come after, by seq
        self._explain_waiting(conn, alive)
        return list(self.views.values())

    def _changed(self, conn: sqlite3.Connection) -> list[sqlite3.Row]:
        """The run's jobs with events after ``last_event`` (new array jobs of the run join ``parents``)."""
        ids = [r[0] for r in conn.execute("SELECT DISTINCT job_id FROM events WHERE rowid > ?", (self.last_event,))]
        rows = state.jobs(conn, ids)
        for row in rows:
            if row["array_size"] is not None and row["parent_id"] is None and state.run_tag(row) == self.run_id:
                self.parents[row["id"]] = row
        return [
            row
            for row in rows
            if row["array_size"] is None
            and (row["parent_id"] in self.parents if row["parent_id"] else state.run_tag(row) == self.run_id)
        ]

    def _explain_waiting(self, conn: sqlite3.Connection, alive: bool) -> None:
        """Why the first queued jobs wait (as ``describe-jobs`` says it): capacity and the engine change without
        an event, so these are worked out at every ask (at most ``state.WAIT_REASONS_MAX``)."""
        queued = []
        for view in self.views.values():
            if view.status in state.QUEUED:
                queued.append(view)
                if len(queued) == state.WAIT_REASONS_MAX:
                    break
        reasons = state.waiting_reasons(conn, state.jobs(conn, [v.job_id for v in queued]), alive)
        for view in self.explained:  # a retry queued before them may have pushed some out of the first ones
            if view.status in state.QUEUED:
                view.reason = ""
        for view in queued:
            view.reason = reasons.get(view.job_id, "")
        self.explained = queued


class RunFollower:
    """A running run's tasks: the engine's (live) and the trace's (cached, and other backends'), as
    ``tasks.merged`` joins them."""

    def __init__(self, run_id: str, trace: Path, files: TaskFiles) -> None:
        self.engine = EngineFollower(run_id, files)
        self.trace = TraceFollower(trace)

    def read(self, work: Path) -> tuple[list[TaskView], list[TaskView]]:
        """(the engine's tasks, the trace's)."""
        database = state.database_id(work)  # before it is opened: one made anew meanwhile is read whole next time
        with state.reading(work) as conn:
            engine = [] if conn is None else self.engine.read(conn, database, state.engine_alive(work))
        return engine, self.trace.read()
