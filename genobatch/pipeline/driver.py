"""The driver: runs a wave of tasks as batch jobs on an executor's backend and follows them to their end. It
knows nothing of any pipeline nor of any particular executor: tasks in, job states out, through the
``Backend`` contract, adapting to the capabilities the backend declares:

- tasks of one scatter (a sample's chunks or regions) become one array job, within its array size;
- dependencies between tasks become ``dependsOn`` between jobs, so the batch system orders them; a job that
  would wait for more jobs than the backend allows waits for barrier jobs that wait for them;
- time limits are raised to the backend's minimum.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from genobatch.batch.model import ACTIVE_STATUSES, JobStatus
from genobatch.executors.base import Executor
from genobatch.executors.contract import Backend, JobState
from genobatch.executors.task import Task
from genobatch.report.trace import TraceRow

from .grouping import Job, jobs_for
from .progress import Progress

STUCK_SECONDS = 600  # a job RUNNABLE this long is reported, with the batch system's reason
POLL_SECONDS = 0.2


@dataclass
class Driver:
    executor: Executor
    backend: Backend
    progress: Progress
    run_id: str  # tags every job of the run (AWS Batch, cost reports)
    on_row: Callable[[TraceRow], None] = lambda row: None  # each attempt's row, as it ends (the trace file)
    trace: list[TraceRow] = field(default_factory=list)
    warned: set[str] = field(default_factory=set)  # jobs already reported as stuck
    history: dict[str, Counter[str]] = field(default_factory=dict)  # done/failed per step in earlier waves

    def run(
        self, tasks: list[Task], every: list[Task], cached: set[str], on_end: Callable[[Task, JobState], None]
    ) -> None:
        """Submit ``tasks`` (``every``: all the run's tasks, for dependencies and counts) and follow them."""
        by_name = {t.name: t for t in every}
        cached_per_step = Counter(by_name[name].step for name in cached if name in by_name)
        jobs = jobs_for(tasks, self.backend.capabilities.max_array_size)
        job_of_key = {t.key: job for job in jobs for t in job.tasks}
        self._submit(jobs, job_of_key, by_name)
        children = {
            (job.job_id if len(job.tasks) == 1 else f"{job.job_id}:{i}"): task
            for job in jobs
            for i, task in enumerate(job.tasks)
        }
        ended: dict[str, bool] = {}  # child -> succeeded
        try:
            self._follow(children, ended, cached_per_step, on_end)
        except KeyboardInterrupt:  # Ctrl-C: stop what still runs (a rerun resumes), then let it through
            self.backend.cancel([c for c in children if c not in ended], "genobatch run interrupted")
            raise

    def _follow(
        self,
        children: dict[str, Task],
        ended: dict[str, bool],
        cached_per_step: Counter[str],
        on_end: Callable[[Task, JobState], None],
    ) -> None:
        """Poll until every child ended. Per poll, the work follows the changes (``Backend.poll_changed``): the
        counts are kept up to date from the states that changed, never recounted over all children."""
        counts = self._initial_counts(cached_per_step, children)
        pending = set(children)
        bucket = dict.fromkeys(children, "waiting")  # the count each unfinished child is in
        while pending:
            for state in self.backend.poll_changed(pending):
                child = state.job_id
                if child not in pending:
                    continue
                task = children[child]
                counts[task.step][bucket[child]] -= 1
                if state.done:
                    ended[child] = state.status is JobStatus.SUCCEEDED
                    pending.discard(child)
                    del bucket[child]
                    counts[task.step]["done" if ended[child] else "failed"] += 1
                    self._record(state, task)
                    on_end(task, state)
                else:
                    bucket[child] = "running" if state.status in ACTIVE_STATUSES else "waiting"
                    counts[task.step][bucket[child]] += 1
            self.progress.update({step: +c for step, c in counts.items()})  # a copy: the display reads it live
            self._warn_stuck()
            if pending:
                time.sleep(POLL_SECONDS)
        if children:  # an empty wave (all of it cached) leaves the earlier waves' counts as they are
            self.history = {step: Counter({k: c[k] for k in ("done", "failed")}) for step, c in counts.items()}

    def _submit(self, jobs: list[Job], job_of_key: dict[str, Job], by_name: dict[str, Task]) -> None:
        keys = {t.name: t.key for t in by_name.values()}
        minimum = self.backend.capabilities.min_timeout_seconds
        for job in jobs:
            first = job.tasks[0]
            depends = {
                job_of_key[by_name[up].key].job_id
                for t in job.tasks
                for up in t.upstream
                if by_name[up].key in job_of_key and job_of_key[by_name[up].key] is not job
            }
            spec = self.executor.job_spec(
                job.name,
                job.tasks,
                keys,
                vcpus=first.vcpus,
                memory_mib=first.memory_mib,
                depends_on=self._within_limit(job.name, sorted(depends)),
                array_size=len(job.tasks) if len(job.tasks) > 1 else None,
                timeout_seconds=max(minimum, first.timeout_seconds) if first.timeout_seconds else None,
                tags={"run": self.run_id, "step": first.step, "sample": first.sample or ""},
                extra_arguments=first.executor_args.get(self.executor.name, []),
            )
            job.job_id = self.backend.submit(spec)

    def _within_limit(self, name: str, depends: list[str]) -> list[str]:
        """``depends``, or barrier jobs that wait for groups of them when there are more than the backend
        lets a job wait for (AWS Batch: 20)."""
        limit = self.backend.capabilities.max_depends_on
        level = 0
        while len(depends) > limit:
            level += 1
            groups = [depends[i : i + limit] for i in range(0, len(depends), limit)]
            depends = [
                self.backend.submit(self.executor.barrier_spec(f"{name}-wait{level}-{n}", group))
                for n, group in enumerate(groups)
            ]
        return depends

    def _record(self, state: JobState, task: Task) -> None:
        rows = [TraceRow.from_attempt(task, state, a) for a in state.attempts] or [TraceRow.not_run(task, state)]
        for row in rows:
            self.trace.append(row)
            self.on_row(row)

    def why_failed(self, state: JobState) -> str:
        last = state.attempts[-1] if state.attempts else None
        tail = self.executor.log_tail(last) if last is not None else ""
        why = (last.container_reason if last else None) or state.status_reason or "failed"
        return why + (f"\n{tail}" if tail else "")

    def _warn_stuck(self) -> None:
        for stuck in self.backend.stuck(STUCK_SECONDS):
            if stuck.job_id not in self.warned:
                self.warned.add(stuck.job_id)
                print(f"genobatch: waiting: {stuck}", file=sys.stderr)

    def _initial_counts(self, cached: Counter[str], children: dict[str, Task]) -> dict[str, Counter[str]]:
        """Tasks per step and state before the wave's first poll, with earlier waves' (``cached``: per step)."""
        counts: dict[str, Counter[str]] = {step: Counter(c) for step, c in self.history.items()}
        for step, n in cached.items():
            counts.setdefault(step, Counter())["cached"] = n
        for task in children.values():
            counts.setdefault(task.step, Counter())["waiting"] += 1
        return counts
