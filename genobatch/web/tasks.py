"""A run's tasks as the dashboard shows them: the engine's jobs of the run (live states, attempts, why they
wait) joined with its trace (cached tasks, and every task of runs on AWS Batch or Slurm, which leave no engine
database here), grouped as the terminal's progress table groups them (``progress.STATES``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shlex
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genobatch.pipeline.progress import STATES

from . import state
from .files import inside

ENGINE_GROUP = {"SUCCEEDED": "done", "FAILED": "failed", "STARTING": "running", "RUNNING": "running"}
JOB_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?::\d+)?")
TRACE_GROUP = {"COMPLETED": "done", "CACHED": "cached", "FAILED": "failed", "ABORTED": "failed"}
TASK_PAGE = 1000  # rows of the run's task table sent at a time (the page pages through the rest)
TASK_PAGE_MAX = 5000
TIMELINE_BARS = 400  # attempts drawn on the run's timeline: the earliest (the page says how many there are)


@dataclass
class Bar:
    """One attempt on the timeline (epoch ms; ``stop`` None while it runs)."""

    task: str
    step: str
    attempt: int
    submit: int | None
    start: int | None
    stop: int | None
    ok: bool | None  # None: still running

    def json(self) -> dict[str, Any]:
        return dict(vars(self))  # dataclasses.asdict deep-copies: half of a 10,000-task run's answer time


@dataclass
class TaskView:
    name: str
    step: str
    sample: str
    status: str  # the engine's job status, or the trace's (CACHED, ABORTED...)
    group: str  # one of progress.STATES
    job_id: str = ""
    attempts: int = 0
    exit: int | None = None
    reason: str = ""  # why it waits, or why it failed
    submit: int | None = None
    start: int | None = None
    stop: int | None = None
    bars: list[Bar] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if name != "bars"}


class TaskFiles:
    """The task specs a job runs (``<work>/tasks/<name>.json``, named in its command), read once each."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def specs(self, command_json: str) -> list[dict[str, Any]]:
        try:
            words = json.loads(command_json)
        except ValueError:
            return []
        names = [Path(w).name for w in words if isinstance(w, str) and w.endswith(".json")]
        if not names:
            return []
        name = names[-1]  # a basename only: the folder is always the work directory's own
        if name not in self._cache:
            path = inside(self.work / "tasks" / name, self.work)
            try:
                loaded = json.loads(path.read_text()) if path is not None else []
            except (OSError, ValueError):
                loaded = []
            self._cache[name] = loaded if isinstance(loaded, list) else []
        return self._cache[name]

    def spec(self, row: sqlite3.Row, parent: sqlite3.Row | None) -> dict[str, Any]:
        return pick(self.specs((parent or row)["command"]), row["array_index"])


def pick(specs: list[dict[str, Any]], index: int | None) -> dict[str, Any]:
    """The spec that a job (``index`` None) or an array's child ``index`` runs, of its task file's."""
    index = index or 0
    return specs[index] if 0 <= index < len(specs) and isinstance(specs[index], dict) else {}


def command_text(spec: dict[str, Any]) -> str:
    """The task's command as a shell would read it (as the run report shows a failure's)."""
    lines = []
    for pipe in spec.get("pipes") or []:
        line = " | ".join(shlex.join(argv) for argv in pipe.get("argv") or [])
        if pipe.get("stdout"):
            line += f" > {shlex.quote(pipe['stdout'])}"
        lines.append(line)
    if not lines and spec.get("builtin"):
        lines.append(f"(genobatch's own step: {json.dumps(spec['builtin'])})")
    return "\n".join(lines)


def engine_views(
    conn: sqlite3.Connection,
    rows: list[sqlite3.Row],
    parents: dict[str, sqlite3.Row],
    files: TaskFiles,
) -> list[TaskView]:
    """Job rows (single jobs and array children of ``parents``) as tasks, their attempts as bars (why queued ones
    wait is the follower's to say: ``follow.EngineFollower``)."""
    tried = state.attempts(conn, [r["id"] for r in rows])
    out = []
    shared: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}  # an array's: read once, not per child
    for row in rows:
        parent = parents.get(row["parent_id"]) if row["parent_id"] else None
        source = parent or row
        if (known := shared.get(source["id"])) is None:
            request = json.loads(source["request"])
            known = files.specs(source["command"]), request.get("tags") or {}
            if parent is not None:
                shared[source["id"]] = known
        specs, tags = known
        spec = pick(specs, row["array_index"])
        task = TaskView(
            name=str(spec.get("name") or _job_name(row)),
            step=str(spec.get("step") or tags.get("step") or row["name"]),
            sample=str(spec.get("sample") or tags.get("sample") or ""),
            status=row["status"],
            group=ENGINE_GROUP.get(row["status"], "waiting"),
            job_id=row["id"],
            attempts=len(tried.get(row["id"], [])),
            exit=row["exit_code"],
            reason=(row["status_reason"] if row["status"] == "FAILED" else "") or "",
            submit=row["created_at"],
            start=row["started_at"],
            stop=row["stopped_at"],
        )
        for a in tried.get(row["id"], []):
            ok = None if a["stopped_at"] is None else a["exit_reason"] == "FINISHED"
            task.bars.append(
                Bar(task.name, task.step, a["number"], row["created_at"], a["started_at"], a["stopped_at"], ok)
            )
        if row["status"] == "FAILED" and tried.get(row["id"]):
            last = tried[row["id"]][-1]
            task.reason = last["container_reason"] or last["status_reason"] or task.reason
        elif row["status"] == "FAILED":  # never ran: a job it needs failed, or it was cancelled (the trace's word)
            task.status = "ABORTED"
        out.append(task)
    return out


def apply_trace_rows(rows: Iterable[dict[str, str]], tasks: dict[str, TaskView]) -> None:
    """Bring ``tasks`` (by name) up to date with trace rows, in the trace's order: a task's last row is its
    state, each row of an attempt that ran is a bar."""
    for row in rows:
        name = row.get("name") or ""
        status = row.get("status") or ""
        task = tasks.setdefault(name, TaskView(name, row.get("step") or "", _dash(row.get("sample")), status, ""))
        task.status, task.group = status, TRACE_GROUP.get(status, "waiting")
        task.job_id = _dash(row.get("native_id"))
        task.exit = int(row["exit"]) if (row.get("exit") or "-").lstrip("-").isdigit() else None
        task.reason = "" if status in ("COMPLETED", "CACHED") else _dash(row.get("exit_reason"))
        if status in ("COMPLETED", "FAILED"):
            task.attempts += 1
            submit = _timestamp_ms(row.get("submit"))
            stop = submit + int(1000 * _seconds(row.get("duration"))) if submit is not None else None
            start = stop - int(1000 * _seconds(row.get("realtime"))) if stop is not None else None
            task.submit, task.start, task.stop = submit, start, stop
            task.bars.append(Bar(name, task.step, task.attempts, submit, start, stop, status == "COMPLETED"))


def with_task_names(tasks: list[TaskView]) -> list[TaskView]:
    """Reasons that name jobs by id (``Dependent job 92cf... failed``) name their tasks instead."""
    names = {t.job_id: t.name for t in tasks if t.job_id}
    for task in tasks:
        if task.reason:
            task.reason = JOB_ID.sub(lambda m: names.get(m.group(0), m.group(0)), task.reason)
    return tasks


def merged(engine: list[TaskView], trace: list[TaskView]) -> list[TaskView]:
    """The engine's tasks (live), then the trace's that the engine does not hold (cached, or another backend's)."""
    known = {t.name for t in engine}
    return [t for t in trace if t.name not in known] + engine


@dataclass(frozen=True)
class TaskQuery:
    """Which of a run's tasks the page's table shows: a state group (or all), a text to find in the task's name or
    sample, and one page of them. A run of 70,000 tasks is 28 MB of JSON; a page of them is 0.4 MB."""

    group: str = "all"
    search: str = ""
    offset: int = 0
    limit: int = TASK_PAGE

    def __post_init__(self) -> None:
        if self.group not in ("all", *STATES):
            raise ValueError(f"state={self.group[:40]!r} is not a state: give one of all, {', '.join(STATES)}")
        if not 1 <= self.limit <= TASK_PAGE_MAX:
            raise ValueError(f"limit={self.limit} is out of range: give 1 to {TASK_PAGE_MAX}")

    def page(self, tasks: list[TaskView]) -> tuple[list[TaskView], int]:
        """The page's tasks, in the run's order, and how many tasks match in all."""
        needle = self.search.lower()
        wanted = [t for t in tasks if self.group in ("all", t.group)]
        if needle:
            wanted = [t for t in wanted if needle in f"{t.name} {t.sample}".lower()]
        return wanted[self.offset : self.offset + self.limit], len(wanted)


def timeline(tasks: list[TaskView], most: int = TIMELINE_BARS) -> tuple[list[Bar], int]:
    """The run's first ``most`` attempts by when they started (or were queued), and how many there are in all."""
    bars = [b for t in tasks for b in t.bars if b.start or b.submit]
    bars.sort(key=lambda b: b.start or b.submit or 0)
    return bars[:most], len(bars)


def progress(tasks: list[TaskView], order: list[str]) -> list[dict[str, Any]]:
    """Per step (in pipeline order): its tasks per state, as the terminal's progress table counts them."""
    steps: dict[str, dict[str, int]] = {}
    for task in tasks:
        steps.setdefault(task.step, dict.fromkeys(STATES, 0))[task.group] += 1
    rank = {name: i for i, name in enumerate(order)}
    ordered = sorted(steps, key=lambda s: rank.get(s, len(rank)))
    return [{"step": s, "total": sum(steps[s].values()), **steps[s]} for s in ordered]


def _job_name(row: sqlite3.Row) -> str:
    """A job's own name when no task file names its task (an array child: with its index)."""
    return row["name"] if row["array_index"] is None else f"{row['name']}:{row['array_index']}"


def _dash(value: str | None) -> str:
    return "" if value in (None, "-") else str(value)


def _timestamp_ms(text: str | None) -> int | None:
    """The trace's ``2026-11-29 21:49:05.123`` (local time), as epoch ms."""
    if not text or text == "-":
        return None
    whole, _, fraction = text.partition(".")
    seconds, millis = _local_seconds(whole), (fraction or "0")[:3]
    if seconds is None or not millis.isdigit():
        return None
    return int(seconds * 1000) + int(millis.ljust(3, "0"))


@functools.lru_cache(maxsize=4096)
def _local_seconds(whole: str) -> float | None:
    """``2026-11-29 21:49:05`` (local time) as epoch seconds: rows of a run share their seconds, and strptime
    was a third of reading a 10,000-row trace."""
    try:
        return time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None


def _seconds(text: str | None) -> float:
    """A Nextflow duration (``850ms``, ``3.2s``, ``1m 5s``, ``2h 3m 4s``) in seconds; 0 if there is none."""
    total = 0.0
    for part in (text or "").split():
        for unit, factor in (("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
            if part.endswith(unit):
                with contextlib.suppress(ValueError):
                    total += float(part[: -len(unit)]) * factor
                break
    return total
