"""The driver adapts to what a backend declares, whichever it is: arrays within its array size, barrier jobs
when a job would wait for more jobs than it allows, time limits raised to its minimum. A recording backend,
no engine."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from genobatch.batch.model import ExitReason, JobStatus
from genobatch.batch.runtime import HostRuntime
from genobatch.executors.base import Executor, RunContext
from genobatch.executors.contract import AttemptState, Backend, Capabilities, JobSpec, JobState
from genobatch.executors.runtimes import RunRuntime
from genobatch.executors.task import Task
from genobatch.pipeline.driver import Driver
from genobatch.pipeline.progress import Progress


class Recording(Backend):
    """Every job succeeds at once; what was submitted is kept."""

    capabilities = Capabilities(name="recording", max_array_size=3, max_depends_on=4, min_timeout_seconds=60)

    def __init__(self) -> None:
        self.submitted: dict[str, JobSpec] = {}

    def submit(self, spec: JobSpec) -> str:
        job_id = f"job{len(self.submitted)}"
        self.submitted[job_id] = spec
        return job_id

    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        done = AttemptState(1, ExitReason.FINISHED, 0, None, 1, 2)
        return [JobState(j, JobStatus.SUCCEEDED, None, 0, [done]) for j in job_ids]

    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        raise AssertionError("nothing is cancelled here")


class Plain(Executor):
    name = "plain"
    capabilities = Recording.capabilities

    def is_cached(self, key: str) -> bool:
        return False

    def remove(self, key: str) -> None:
        pass

    def publish(self, key: str, files: dict[str, str], outdir: str) -> int:
        return 0

    def job_spec(self, name: str, tasks: list[Task], keys: dict[str, str], **fields: Any) -> JobSpec:
        return JobSpec(name, ["run", *(t.name for t in tasks)], **fields)

    def backend(self) -> Backend:
        raise AssertionError("the test gives the driver its backend")


def test_arrays_barriers_timeouts_and_the_executor_s_own_arguments(tmp_path: Path) -> None:
    parts = [Task(f"part:S:{i}", "part", "S", [], ["x"], group="part:S", key=f"k{i}") for i in range(7)]
    gather = Task("gather:S", "gather", "S", [], ["y"], upstream=[p.name for p in parts], key="kg")
    singles = [Task(f"single:{i}", "single", f"S{i}", [], ["z"], key=f"ks{i}") for i in range(6)]
    last = Task("last", "last", None, [], ["w"], upstream=[s.name for s in singles], key="kl", timeout_seconds=5)
    last = replace(last, executor_args={"plain": ["--constraint=fast"], "other": ["--no"]})
    tasks = [*parts, gather, *singles, last]
    backend = Recording()
    executor = Plain(RunContext(tmp_path, RunRuntime(HostRuntime(), {}), lambda p: ""))
    driver = Driver(executor, backend, Progress([], live=False), "run1")
    ended: list[str] = []
    driver.run(tasks, tasks, set(), lambda task, state: ended.append(task.name))
    specs = {spec.name: spec for spec in backend.submitted.values()}
    assert [specs[n].array_size for n in ("part-S", "part-S-1", "part-S-2")] == [3, 3, None], "arrays of at most 3"
    assert len(specs["gather-S"].depends_on) == 3, "three array jobs: within the limit of 4"
    barriers = specs["last"].depends_on
    assert len(barriers) == 2 and all(backend.submitted[b].command == ["true"] for b in barriers)
    assert sorted(len(backend.submitted[b].depends_on) for b in barriers) == [2, 4], "6 singles, 4 per barrier"
    assert specs["last"].timeout_seconds == 60, "raised to the backend's minimum"
    assert specs["last"].extra_arguments == ["--constraint=fast"], "only this executor's own"
    assert sorted(ended) == sorted(t.name for t in tasks) and len(driver.trace) == len(tasks)


class Changes(Recording):
    """Reports only changes, one job further per poll (running, then done); ``poll`` is never the driver's way."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []  # how many jobs each poll_changed was given
        self.reported: list[int] = []  # how many states it returned
        self.step: dict[str, int] = {}

    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        raise AssertionError("the driver follows changes (poll_changed), it does not re-read every job")

    def poll_changed(self, job_ids: Collection[str]) -> list[JobState]:
        self.asked.append(len(job_ids))
        moving = sorted(job_ids)[:1]
        states = []
        for job_id in moving:
            self.step[job_id] = self.step.get(job_id, 0) + 1
            running = self.step[job_id] == 1
            attempts = [] if running else [AttemptState(1, ExitReason.FINISHED, 0, None, 1, 2)]
            status = JobStatus.RUNNING if running else JobStatus.SUCCEEDED
            states.append(JobState(job_id, status, None, 0 if attempts else None, attempts))
        self.reported.append(len(states))
        return states


def test_the_driver_follows_changes_and_counts_from_them(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr("genobatch.pipeline.driver.POLL_SECONDS", 0)
    tasks = [Task(f"one:{i}", "one", f"S{i}", [], ["x"], key=f"k{i}") for i in range(4)]
    backend = Changes()
    executor = Plain(RunContext(tmp_path, RunRuntime(HostRuntime(), {}), lambda p: ""))
    progress = Progress([], live=False)
    driver = Driver(executor, backend, progress, "run1")
    ended: list[str] = []
    driver.run(tasks, tasks, {"cached:0"}, lambda task, state: ended.append(task.name))
    assert sorted(ended) == [t.name for t in tasks]
    assert backend.asked == [4, 4, 3, 3, 2, 2, 1, 1], "only unfinished jobs are followed"
    assert max(backend.reported) == 1, "each poll carried one change"
    assert progress.counts["one"] == {"done": 4}, progress.counts
    assert driver.history == {"one": {"done": 4, "failed": 0}}
