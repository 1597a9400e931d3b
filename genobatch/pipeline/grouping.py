"""Tasks grouped into the jobs that run them: one job per task, except that tasks of one group (a sample's
chunks or regions of a step) become one array job, a new one every ``max_array_size`` tasks (the backend's)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from genobatch.executors.task import Task


@dataclass
class Job:
    tasks: list[Task]
    name: str
    job_id: str = ""


def jobs_for(tasks: list[Task], max_array_size: int) -> list[Job]:
    """The jobs for ``tasks``, longest downstream chain first: the engine starts jobs in submission order, so
    the critical path is not left waiting behind leaves such as FastQC. Still dependency order, as an
    upstream task is always higher."""
    height: dict[str, int] = {}
    names = {t.name for t in tasks}
    for task in reversed(tasks):
        height.setdefault(task.name, 1)
        for up in task.upstream:
            if up in names:
                height[up] = max(height.get(up, 1), height[task.name] + 1)
    return group(sorted(tasks, key=lambda t: -height[t.name]), max_array_size)


def group(tasks: list[Task], max_array_size: int) -> list[Job]:
    """Tasks into jobs, in the order given."""
    open_jobs: dict[str, Job] = {}
    parts: Counter[str] = Counter()  # array jobs made so far per group
    jobs: list[Job] = []
    for task in tasks:
        key = task.group
        if key is None:
            jobs.append(Job([task], task.name.replace(":", "-")))
        elif key in open_jobs and len(open_jobs[key].tasks) < max_array_size:
            open_jobs[key].tasks.append(task)
        else:
            part = parts[key]
            parts[key] += 1
            open_jobs[key] = Job([task], key.replace(":", "-") + (f"-{part}" if part else ""))
            jobs.append(open_jobs[key])
    for job in jobs:
        job.name = re.sub(r"[^A-Za-z0-9_-]", "_", job.name)[:128]
    return jobs
