"""What the dashboard's JSON endpoints answer: a work directory's runs, one run (progress per step, timeline,
tasks), one job (command, attempts, exit reason), a log from a byte offset, and the engine's queues.
Every file is found from the records (never from a URL) and proven inside its root (``files.inside``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from genobatch.batch import BatchClient
from genobatch.batch.model import TERMINAL_NAMES
from genobatch.pipeline.library import Library
from genobatch.pipeline.runinfo import RunRecord, load_runs

from . import state
from .files import inside, read_chunk, safe_name
from .follow import RunFollower
from .tasks import (
    TaskFiles,
    TaskQuery,
    TaskView,
    command_text,
    merged,
    progress,
    timeline,
    with_task_names,
)

MULTIQC_REPORT = Path("multiqc") / "multiqc_report.html"  # where the multiqc step publishes it (multiqc.yaml)
STREAMS = ("stderr", "stdout")
KEPT_RUNS = 4  # runs whose tasks are kept between asks, of those going on and of those that ended (each)


class NotFound(Exception):
    """A run, job, attempt or file the dashboard will not show: the message says which and why."""


def step_order() -> tuple[list[str], dict[str, str]]:
    """Every built-in step in the order a run takes them, and their colours (the report's)."""
    try:
        library = Library.load()
        steps = library.select([name for name, s in library.steps.items() if s.optional])
    except Exception:  # the order is cosmetic: a broken library must not break the dashboard
        return [], {}
    return [s.name for s in steps], {s.name: s.colour for s in steps if s.colour}


class Dashboard:
    def __init__(self, work: Path) -> None:
        self.work = work.resolve()
        self.files = TaskFiles(self.work)
        self.order, self.colours = step_order()
        self._ended: dict[tuple[str, float | None], dict[str, Any]] = {}  # counts of runs that ended
        self._worked: dict[tuple[str, float | None], tuple[list[TaskView], dict[str, Any]]] = {}  # (``_worked_out``)
        self._followers: dict[str, RunFollower] = {}  # runs' tasks kept between asks (``tasks``)
        # The server answers each request in its own thread, and a follower's tasks change in place as it reads:
        # an answer is worked out under this lock, so that it describes one moment.
        self._lock = threading.RLock()

    # --- runs ---------------------------------------------------------------------------------------------
    def record(self, run_id: str) -> RunRecord:
        if not safe_name(run_id):
            raise NotFound(f"{run_id!r} is not a run name")
        for record in load_runs(self.work):
            if record.run_id == run_id and safe_name(record.run_id):
                return record
        raise NotFound(f"no run {run_id} in {self.work} (yet)")

    def runs(self) -> dict[str, Any]:
        out = []
        for record in reversed(load_runs(self.work)):
            if not safe_name(record.run_id):
                continue
            key = (record.run_id, record.finished)
            with self._lock:
                counts = self._ended.get(key) or _counts(self.tasks(record))
                if _over(record):  # its counts no longer change: worked out once
                    self._ended[key] = counts
                    self._followers.pop(record.run_id, None)
            out.append({**self._summary(record), **counts})
        return {"workDir": str(self.work), "runs": out, "now": _now()}

    def _summary(self, record: RunRecord) -> dict[str, Any]:
        status = record.shown_status()
        end = record.finished or time.time()
        return {
            "id": record.run_id,
            "status": status,
            "command": record.command,
            "outdir": record.outdir,
            "started": int(record.started * 1000),
            "finished": int(record.finished * 1000) if record.finished else None,
            "seconds": round(end - record.started, 1),
            "report": self.report_file(record, "report") is not None,
            "multiqc": status != "running" and self.report_file(record, "multiqc") is not None,
        }

    def tasks(self, record: RunRecord) -> list[TaskView]:
        """The engine's view of the run's jobs joined with its trace (``tasks.merged``): kept between asks and
        brought up to date (``follow``) while the run goes on."""
        with self._lock:
            follower = self._followers.pop(record.run_id, None) or RunFollower(record.run_id, record.trace, self.files)
            self._followers[record.run_id] = follower  # the most recently asked last
            while len(self._followers) > KEPT_RUNS:
                del self._followers[next(iter(self._followers))]
            engine, trace = follower.read(self.work)
            return with_task_names(merged(engine, trace))

    def run(self, run_id: str, query: TaskQuery | None = None) -> dict[str, Any]:
        """The run's counts, progress per step and earliest attempts, with one page of its tasks (``query``)."""
        record = self.record(run_id)
        query = query or TaskQuery()
        with self._lock:
            tasks, answer = self._worked_out(record)
            page, matching = query.page(tasks)
            shown = {"tasks": [t.json() for t in page], "matching": matching}
        return {**self._summary(record), **answer, **shown, "offset": query.offset, "limit": query.limit, "now": _now()}

    def _worked_out(self, record: RunRecord) -> tuple[list[TaskView], dict[str, Any]]:
        """The run's tasks and what the page shows of all of them; a run that ended changes no more, so it is
        worked out once (the page asks every 5 s: 0.6 s each for 10,000 tasks)."""
        key = (record.run_id, record.finished)
        if key in self._worked:
            return self._worked[key]
        tasks = self.tasks(record)
        steps = progress(tasks, self.order)
        bars, all_bars = timeline(tasks)
        answer = {
            **_counts(tasks),
            "steps": steps,
            "colours": {s["step"]: self.colours.get(s["step"], "") for s in steps},
            "timeline": [b.json() for b in bars],
            "timelineTotal": all_bars,
        }
        if _over(record):
            self._worked[key] = (tasks, answer)
            while len(self._worked) > KEPT_RUNS:
                del self._worked[next(iter(self._worked))]
            self._followers.pop(record.run_id, None)
        return tasks, answer

    def report_file(self, record: RunRecord, which: str) -> Path | None:
        """The run's report or MultiQC report: known paths only, inside the run's outdir."""
        if record.outdir.startswith("s3://"):  # the report is kept in the work directory then
            return inside(record.report, self.work) if which == "report" else None
        if which == "report":
            return inside(record.report, record.outdir)
        if which == "multiqc":
            return inside(Path(record.outdir) / MULTIQC_REPORT, record.outdir)
        return None

    # --- jobs ---------------------------------------------------------------------------------------------
    def job(self, run_id: str, job_id: str) -> dict[str, Any]:
        record = self.record(run_id)
        if not safe_name(job_id):
            raise NotFound(f"{job_id!r} is not a job id")
        with state.reading(self.work) as conn:
            found = None if conn is None else state.job(conn, job_id, state.engine_alive(self.work))
            if conn is None or found is None or state.job_run(conn, found[0]) != record.run_id:
                raise NotFound(f"no job {job_id} in run {run_id}")
            row, detail = found
            parent = conn.execute("SELECT * FROM jobs WHERE id=?", (row["parent_id"],)).fetchone()
            tried = state.attempts(conn, [job_id]).get(job_id, [])
        spec = self.files.spec(row, parent)
        return {
            "jobId": job_id,
            "run": record.run_id,
            "task": spec.get("name") or row["name"],
            "step": spec.get("step") or "",
            "sample": spec.get("sample") or "",
            "status": row["status"],
            "statusReason": detail.get("statusReason"),
            "active": row["status"] not in TERMINAL_NAMES,
            "command": command_text(spec),
            "exitCode": row["exit_code"],
            "vcpus": row["vcpus"],
            "memoryMiB": row["memory_mib"],
            "createdAt": row["created_at"],
            "dependsOn": [d["jobId"] for d in detail.get("dependsOn", [])],
            "attempts": [_attempt(a) for a in tried],
            "now": _now(),
        }

    def log(self, run_id: str, job_id: str, attempt: int | None, stream: str, offset: int | None) -> dict[str, Any]:
        """A piece of an attempt's log from ``offset`` (None: its end); ``nextOffset`` continues it."""
        record = self.record(run_id)
        if stream not in STREAMS:
            raise NotFound(f"stream must be one of {', '.join(STREAMS)}, not {stream!r}")
        with state.reading(self.work) as conn:
            found = None if conn is None else conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if conn is None or found is None or state.job_run(conn, found) != record.run_id:
                raise NotFound(f"no job {job_id} in run {run_id}")
            tried = state.attempts(conn, [job_id]).get(job_id, [])
        chosen = [a for a in tried if attempt is None or a["number"] == attempt]
        if not chosen:
            raise NotFound(f"job {job_id} has no attempt {attempt or ''} yet".replace("  ", " "))
        path = inside(Path(chosen[-1]["log_dir"]) / f"{stream}.log", self.work)
        active = found["status"] not in TERMINAL_NAMES and chosen[-1]["stopped_at"] is None
        if path is None:
            return {"text": "", "offset": 0, "nextOffset": 0, "size": 0, "active": active, "missing": True}
        chunk = read_chunk(path, offset)
        return {"text": chunk.text, "offset": chunk.offset, "nextOffset": chunk.next_offset, "size": chunk.size,
                "active": active, "attempt": chosen[-1]["number"], "missing": False}  # fmt: skip

    def stop(self, run_id: str, job_id: str, reason: str) -> dict[str, Any]:
        """Cancel a queued job, terminate a running one (AWS Batch's verbs, through the engine's client)."""
        detail = self.job(run_id, job_id)
        client = BatchClient(state.state_dir(self.work))
        try:
            verb = client.cancel_job if detail["status"] in state.QUEUED else client.terminate_job
            verb(jobId=job_id, reason=reason)
        finally:
            client.close()
        return {"jobId": job_id, "stopped": True, "verb": "cancel" if detail["status"] in state.QUEUED else "terminate"}

    # --- the engine ---------------------------------------------------------------------------------------
    def queues(self) -> dict[str, Any]:
        with state.reading(self.work) as conn:
            queues = [] if conn is None else state.queues(conn)
        return {"engine": state.engine_alive(self.work), "queues": queues, "now": _now()}


def _over(record: RunRecord) -> bool:
    """The run ended and says when: what it shows changes no more (a killed run's engine may still be ending
    its jobs)."""
    return record.finished is not None and record.shown_status() != "running"


def _counts(tasks: list[TaskView]) -> dict[str, Any]:
    groups = [t.group for t in tasks]
    return {
        "total": len(tasks),
        "done": groups.count("done"),
        "cached": groups.count("cached"),
        "running": groups.count("running"),
        "waiting": groups.count("waiting"),
        "failed": groups.count("failed"),
        "samples": len({t.sample for t in tasks if t.sample}),
    }


def _attempt(row: Any) -> dict[str, Any]:
    return {
        "number": row["number"],
        "startedAt": row["started_at"],
        "stoppedAt": row["stopped_at"],
        "exitCode": row["exit_code"],
        "exitReason": row["exit_reason"],
        "reason": row["container_reason"] or row["status_reason"],
        "runtime": row["runtime"],
        "image": row["image"],
        "cpuSeconds": row["cpu_seconds"],
        "maxRssKiB": row["max_rss_kib"],
    }


def _now() -> int:
    return int(time.time() * 1000)
