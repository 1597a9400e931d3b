"""The engine: the one process that moves jobs through their lifecycle and runs their attempts.

Each pass (``step``) does, in one write transaction: record finished attempts (retry or end), advance
dependencies and array parents, admit RUNNABLE jobs that fit (STARTING); then it launches them and marks
them RUNNING. Between passes it sleeps on the attempts' pidfds, so a finished attempt wakes it at once;
submissions from other processes are seen through SQLite's ``data_version`` within ``poll_interval``.

The rules themselves live in ``lifecycle`` and ``admission``; this module only applies them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .admission import Pool, QueueStream, admit
from .advance import Graph
from .daemon import EngineLock
from .errors import EngineFailed
from .faultinject import FaultInjection
from .faults import as_fault
from .jobs import active_attempts, finish_attempt, runnable_candidates, set_status
from .lifecycle import (
    AttemptOutcome,
    exit_outcome,
    outcome_for,
)
from .model import (
    ACTIVE_SQL,
    ACTIVE_STATUSES,
    ExitReason,
    JobQueue,
    JobStatus,
    Mount,
    Resources,
    RetryStrategy,
)
from .registry import all_compute_environments, all_job_queues, ensure_defaults
from .runtime import (
    ATTEMPT_MARKER_ENV,
    HostRuntime,
    LaunchError,
    LaunchSpec,
    ProcessExit,
    RunningProcess,
    Runtime,
    own_peak_rss_kib,
    process_start_time,
    read_exit_status,
    session_rss_kib,
    signal_of_exit,
)
from .store import Store, now_ms
from .views import has_open_jobs

log = logging.getLogger("genobatch.engine")


@dataclass
class Settings:
    poll_interval: float = 0.2  # how soon submissions from other processes are noticed
    idle_exit_seconds: float | None = None  # exit after this long with nothing to do (None: never)
    kill_grace_seconds: float = 10.0  # SIGTERM, then SIGKILL this much later (timeouts, terminate-job)
    memory_poll_seconds: float = 0.5  # how often the memory of running attempts is sampled
    starvation_seconds: float = 300.0  # a job that waited this long stops backfill in its environments


@dataclass
class _Attempt:
    """An attempt this engine is running, with what the engine has decided about it."""

    job_id: str
    number: int
    pool: str
    need: Resources
    proc: RunningProcess
    retry: RetryStrategy
    deadline: float | None
    started_ms: int
    kill_reason: ExitReason | None = None
    kill_detail: str | None = None
    kill_at: float | None = None  # when SIGKILL follows the SIGTERM already sent
    peak_tree_rss_kib: int = 0


@dataclass
class _Finished:
    attempt: _Attempt
    outcome: AttemptOutcome
    cpu_seconds: float | None = None
    max_rss_kib: int | None = None


@dataclass
class _Admitted:
    job_id: str
    number: int
    pool: str
    need: Resources
    spec: LaunchSpec
    retry: RetryStrategy
    timeout_s: int | None


class Engine:
    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        runtime: Runtime | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.store = Store(state_dir, verify=True)  # once per engine: a damaged database is set aside
        ensure_defaults(self.store)
        self.runtime: Runtime = FaultInjection(runtime or HostRuntime())
        self.settings = settings or Settings()
        self.running: dict[str, _Attempt] = {}  # job id -> attempt
        self.pools: dict[str, Pool] = {}
        self.queues: list[JobQueue] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._data_version = -1
        self._dirty = True  # a pass changed state on its own (e.g. a failed launch): run another
        self.graph = Graph()  # new jobs, ended jobs and what waits for them
        self._stop = threading.Event()
        self._drain = False
        self._next_memory_poll = 0.0
        self._engine_peak_kib = 0  # the engine's own peak RSS when last read (it never shrinks)
        self._start_times: list[tuple[str, str, int]] = []  # (proc_start, job id, attempt) to record

    # --- public -------------------------------------------------------------------------------------------
    def run(self, until_idle: bool = False, stop: threading.Event | None = None) -> None:
        """Schedule until stopped (or, with ``until_idle``, until no job is left to run).

        On the machine's fault (a full disk, a read-only file system, an I/O error, a damaged database) it kills
        its running attempts, records them where it still can, and raises ``EngineFailed`` saying why; on any
        other error it kills them too, so that no attempt runs on unwatched, and lets the error through."""
        if stop is not None:
            self._stop = stop
        with EngineLock(self.store.state_dir):
            try:
                self._recover()
                self._schedule(until_idle)
            except BaseException as exc:
                self.store.note_damage(exc)
                fault = as_fault(exc, self.store.db_path, EngineFailed)
                self._abort(fault.cause if fault else f"{type(exc).__name__}: {exc}")
                if fault is None:
                    raise
                raise fault from exc

    def _schedule(self, until_idle: bool) -> None:
        idle_since: float | None = None
        while True:
            self.step()
            if self._stop.is_set() and (not self._drain or not self.running):
                break
            if self.running or self._has_work():
                idle_since = None
            else:
                idle_since = idle_since or time.monotonic()
                limit = 0.0 if until_idle else self.settings.idle_exit_seconds
                if limit is not None and time.monotonic() - idle_since >= limit:
                    break
            self._wait()
        self._kill_all(ExitReason.LOST, "the engine was stopped")

    def _abort(self, cause: str) -> None:
        """The engine cannot go on: kill every running attempt, then record them as lost if the database still
        takes writes (else the next engine does, finding them gone without an exit status)."""
        log.error("genobatch engine on %s stops: %s", self.store.state_dir, cause)
        for attempt in self.running.values():
            self._kill(attempt, ExitReason.LOST, f"the engine stopped: {cause}", graceful=False)
        finished: list[_Finished] = []
        deadline = time.monotonic() + 10
        while self.running and time.monotonic() < deadline:
            finished += self._reap_and_enforce()
            time.sleep(0.01)
        try:
            with self.store.write() as conn:
                for done in finished:
                    a = done.attempt
                    job = conn.execute("SELECT status, attempts_made FROM jobs WHERE id=?", (a.job_id,)).fetchone()
                    # an attempt launched in the pass that failed was never recorded: its job is still RUNNABLE
                    if job and JobStatus(job["status"]) in ACTIVE_STATUSES and job["attempts_made"] == a.number:
                        finish_attempt(conn, a.job_id, a.number, a.retry, done.outcome, done.cpu_seconds, None)
        except Exception as exc:  # best effort: the error that stopped the engine is the one to report
            log.warning("could not record the %d killed attempt(s) (%s): the next engine will", len(finished), exc)

    def request_stop(self, drain: bool) -> None:
        """Stop soon: ``drain`` lets running attempts finish first; otherwise they are killed (LOST)."""
        self._drain = drain
        self._stop.set()
        self.wake()

    def wake(self) -> None:
        """Make the engine look at the database now (for callers in the same process)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def step(self) -> bool:
        """One pass. Returns whether it found anything to do."""
        finished = self._reap_and_enforce()
        version = self.store.data_version()
        external = version != self._data_version
        self._data_version = version
        if not finished and not external and not self._dirty:
            return False
        self._dirty = False
        with self.store.write() as conn:
            if external:
                self._refresh_config(conn)
                self._handle_stop_requests(conn)
            if self._start_times:
                conn.executemany("UPDATE attempts SET proc_start=? WHERE job_id=? AND number=?", self._start_times)
                self._start_times = []
            for done in finished:
                attempt = done.attempt
                finish_attempt(
                    conn,
                    attempt.job_id,
                    attempt.number,
                    attempt.retry,
                    done.outcome,
                    done.cpu_seconds,
                    done.max_rss_kib,
                )
            self.graph.advance(conn)
            if not self._stop.is_set():
                # Launching inside the transaction saves a commit per pass. If the engine dies between a launch
                # and the commit, the job is still RUNNABLE in the database and the next engine kills the orphan
                # (found by its GENOBATCH_ATTEMPT marker) before running the job again.
                for item in self._admit(conn):
                    try:
                        self._mark_running(conn, item, self.runtime.launch(item.spec))
                    except LaunchError as exc:
                        self._mark_running(conn, item, str(exc))
        return True

    # --- start-up -----------------------------------------------------------------------------------------
    def _recover(self) -> None:
        """After a crash: kill what the dead engine left running; an attempt that ended meanwhile ends with the
        exit its wrapper recorded (see ``runtime``), the others are lost; the retry strategy decides what next."""
        rows = active_attempts(self.store.conn)
        self.runtime.recover(self.store.state_dir, [(row["pid"], row["proc_start"]) for row in rows if row["pid"]])
        exits = [read_exit_status(Path(row["log_dir"])) for row in rows]  # once the killed ones are gone
        with self.store.write() as conn:
            for row, code in zip(rows, exits, strict=True):
                outcome = outcome_for(ExitReason.LOST, None, f"engine pid {row['engine_pid']} is gone")
                if code is not None:
                    outcome = exit_outcome(ProcessExit(code, signal_of_exit(code), None, None), row["memory_mib"])
                finish_attempt(
                    conn,
                    row["job_id"],
                    row["number"],
                    RetryStrategy.parse(json.loads(row["retry"])),
                    outcome,
                    None,
                    None,
                )
            self._refresh_config(conn)
            self.graph.start(conn)
        if rows:
            ended = sum(code is not None for code in exits)
            log.warning(
                "recovered %d attempt(s) left running by a previous engine: %d ended meanwhile (their recorded exit "
                "counts), %d recorded as host lost",
                len(rows),
                ended,
                len(rows) - ended,
            )

    def _refresh_config(self, conn: sqlite3.Connection) -> None:
        """Re-read compute environments and queues (another process may have created some)."""
        self.queues = [q for q in all_job_queues(conn) if q.state == "ENABLED"]
        pools = {
            env.name: Pool(env.name, env.capacity, env.state == "ENABLED") for env in all_compute_environments(conn)
        }
        for attempt in self.running.values():
            if attempt.pool in pools:
                pools[attempt.pool].take(attempt.need)
        self.pools = pools

    def _has_work(self) -> bool:
        return has_open_jobs(self.store.conn)

    # --- observing attempts -------------------------------------------------------------------------------
    def _wait(self) -> None:
        now = time.monotonic()
        timeout = 0.0 if self._dirty else self.settings.poll_interval
        for attempt in self.running.values():
            for moment in (attempt.deadline, attempt.kill_at):
                if moment is not None and moment - now < timeout:
                    timeout = moment - now
        if self.running:
            timeout = min(timeout, self._next_memory_poll - now)
        for key, _ in self._selector.select(max(0.0, timeout)):
            if key.fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)

    def _reap_and_enforce(self) -> list[_Finished]:
        now = time.monotonic()
        if self.running and now >= self._next_memory_poll:
            self._check_memory()
            self._learn_start_times()
            self._next_memory_poll = now + self.settings.memory_poll_seconds
        finished = []
        for job_id, attempt in list(self.running.items()):
            result = self.runtime.reap(attempt.proc)
            if result is not None:
                self._selector.unregister(attempt.proc.pidfd)
                os.close(attempt.proc.pidfd)
                del self.running[job_id]
                if attempt.pool in self.pools:
                    self.pools[attempt.pool].give_back(attempt.need)
                finished.append(self._outcome(attempt, result))
                continue
            if attempt.kill_at is not None and now >= attempt.kill_at:
                self.runtime.signal(attempt.proc, signal.SIGKILL)
                attempt.kill_at = None
            elif attempt.deadline is not None and now >= attempt.deadline and attempt.kill_reason is None:
                self._kill(attempt, ExitReason.TIMEOUT, None, graceful=True)
        return finished

    def _outcome(self, attempt: _Attempt, result: ProcessExit) -> _Finished:
        # ru_maxrss is exact when above the engine's own peak (see own_peak_rss_kib); else use the sampled peak.
        max_rss: int | None = max(result.max_rss_kib or 0, attempt.peak_tree_rss_kib) or None
        if result.usage_exact:
            max_rss = result.max_rss_kib
        elif result.max_rss_kib is not None and not self._above_engine_peak(result.max_rss_kib):
            max_rss = attempt.peak_tree_rss_kib or None
        if attempt.kill_reason is not None:
            outcome = outcome_for(attempt.kill_reason, result.exit_code, attempt.kill_detail)
        else:
            outcome = result.injected or exit_outcome(result, attempt.need.memory_mib)
        return _Finished(attempt, outcome, result.cpu_seconds, max_rss)

    def _above_engine_peak(self, kib: int) -> bool:
        """Whether ``kib`` exceeds the engine's own peak RSS; read again only when the last reading was lower (a
        peak never shrinks), so not at every attempt's end."""
        if kib > self._engine_peak_kib:
            self._engine_peak_kib = own_peak_rss_kib()
        return kib > self._engine_peak_kib

    def _learn_start_times(self) -> None:
        """Read the start time of attempts launched since the last poll (see ``RunningProcess.proc_start``), for
        the next pass to record: recovery checks it against pid reuse. Until then recovery finds the attempt by
        its ``GENOBATCH_ATTEMPT`` marker."""
        for attempt in self.running.values():
            proc = attempt.proc
            if proc.proc_start is None and (start := process_start_time(proc.pid)) is not None:
                proc.proc_start = start
                self._start_times.append((start, attempt.job_id, attempt.number))
                self._dirty = True

    def _check_memory(self) -> None:
        """Host attempts only: a container's memory limit is the kernel's to enforce (and to report)."""
        on_host = [a for a in self.running.values() if a.proc.container is None]
        usage = session_rss_kib(a.proc.pid for a in on_host)
        for attempt in on_host:
            rss = usage.get(attempt.proc.pid, 0)
            attempt.peak_tree_rss_kib = max(attempt.peak_tree_rss_kib, rss)
            limit_kib = attempt.need.memory_mib * 1024
            if rss > limit_kib and attempt.kill_reason is None:
                detail = f"used {rss // 1024} MiB, limit {attempt.need.memory_mib} MiB"
                self._kill(attempt, ExitReason.MEMLIMIT, detail, graceful=False)

    def _kill(self, attempt: _Attempt, reason: ExitReason, detail: str | None, graceful: bool) -> None:
        attempt.kill_reason, attempt.kill_detail = reason, detail
        if graceful:
            self.runtime.signal(attempt.proc, signal.SIGTERM)
            attempt.kill_at = time.monotonic() + self.settings.kill_grace_seconds
        else:
            self.runtime.signal(attempt.proc, signal.SIGKILL)

    def _kill_all(self, reason: ExitReason, detail: str) -> None:
        """On a non-draining stop: kill what still runs and record it, so nothing is left behind."""
        if not self.running:
            return
        for attempt in self.running.values():
            self._kill(attempt, reason, detail, graceful=False)
        deadline = time.monotonic() + 10
        while self.running and time.monotonic() < deadline:
            self.step()
            time.sleep(0.01)

    # --- one pass's writes --------------------------------------------------------------------------------
    def _handle_stop_requests(self, conn: sqlite3.Connection) -> None:
        for row in conn.execute(
            f"SELECT id, stop_requested FROM jobs WHERE stop_requested IS NOT NULL AND status IN {ACTIVE_SQL}"
        ):
            attempt = self.running.get(row["id"])
            if attempt is not None and attempt.kill_reason is None:
                self._kill(attempt, ExitReason.TERMINATED, row["stop_requested"], graceful=True)

    def _admit(self, conn: sqlite3.Connection) -> list[_Admitted]:
        for pool in self.pools.values():
            pool.reserved = False
        streams = [
            QueueStream(q.priority, q.compute_environments, runnable_candidates(conn, q.name)) for q in self.queues
        ]
        placed = admit(streams, self.pools, now_ms(), int(self.settings.starvation_seconds * 1000))
        admitted = []
        for candidate, pool_name in placed:
            row = conn.execute("SELECT * FROM jobs WHERE id=?", (candidate.job_id,)).fetchone()
            number = row["attempts_made"] + 1
            log_dir = self.store.attempt_dir(row["id"], number)
            conn.execute("UPDATE jobs SET attempts_made=? WHERE id=?", (number, row["id"]))
            conn.execute(
                "INSERT INTO attempts (job_id, number, compute_environment, engine_pid, log_dir) VALUES (?,?,?,?,?)",
                (row["id"], number, pool_name, os.getpid(), str(log_dir)),
            )
            set_status(conn, row["id"], JobStatus.STARTING)
            environment = {
                **json.loads(row["environment"]),
                "AWS_BATCH_JOB_ID": row["id"],
                "AWS_BATCH_JOB_ATTEMPT": str(number),
                "AWS_BATCH_JQ_NAME": row["queue"],
                "AWS_BATCH_CE_NAME": pool_name,
                ATTEMPT_MARKER_ENV: f"{self.store.state_dir}|{row['id']}|{number}",
            }
            container = json.loads(row["container"] or "{}")
            spec = LaunchSpec(
                row["id"],
                number,
                json.loads(row["command"]),
                environment,
                log_dir,
                row["vcpus"],
                row["memory_mib"],
                container.get("image"),
                tuple(Mount(*m) for m in container.get("mounts", [])),
                container.get("fault"),
            )
            admitted.append(
                _Admitted(
                    row["id"],
                    number,
                    pool_name,
                    candidate.need,
                    spec,
                    RetryStrategy.parse(json.loads(row["retry"])),
                    row["timeout_s"],
                )
            )
        return admitted

    def _mark_running(self, conn: sqlite3.Connection, item: _Admitted, proc: RunningProcess | str) -> None:
        """Record a launch: RUNNING with its pid, or (``proc`` is the error) an attempt that could not start."""
        if isinstance(proc, str):
            self.pools[item.pool].give_back(item.need)
            self._dirty = True
            outcome = outcome_for(ExitReason.CANNOT_START, None, proc)
            finish_attempt(conn, item.job_id, item.number, item.retry, outcome, None, None)
            return
        at = now_ms()
        conn.execute(
            "UPDATE attempts SET pid=?, proc_start=?, started_at=?, runtime=?, image=? WHERE job_id=? AND number=?",
            (proc.pid, proc.proc_start, at, proc.runtime, proc.image, item.job_id, item.number),
        )
        set_status(conn, item.job_id, JobStatus.RUNNING, None, at)
        deadline = time.monotonic() + item.timeout_s if item.timeout_s else None
        self.running[item.job_id] = _Attempt(
            item.job_id, item.number, item.pool, item.need, proc, item.retry, deadline, at
        )
        self._selector.register(proc.pidfd, selectors.EVENT_READ, item.job_id)
        self._next_memory_poll = min(self._next_memory_poll, time.monotonic() + self.settings.memory_poll_seconds)
