"""Tasks grouped into the jobs that run them: one job per task, except that a sample's chunks (align) or
regions (call) become one array job, a new one every MAX_ARRAY_SIZE tasks."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from genobatch.batch.model import MAX_ARRAY_SIZE

from .tasks import Task

SCATTERED = ("align", "call")  # steps whose tasks of one sample become one array job


@dataclass
class Job:
    tasks: list[Task]
    name: str
    job_id: str = ""


def jobs_for(tasks: list[Task]) -> list[Job]:
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
    return group(sorted(tasks, key=lambda t: -height[t.name]))


def group(tasks: list[Task]) -> list[Job]:
    """Tasks into jobs, in the order given."""
    open_jobs: dict[tuple[str, str | None], Job] = {}
    parts: Counter[tuple[str, str | None]] = Counter()  # array jobs made so far per (step, sample)
    jobs: list[Job] = []
    for task in tasks:
        key = (task.step, task.sample)
        if task.step not in SCATTERED:
            jobs.append(Job([task], task.name.replace(":", "-")))
        elif key in open_jobs and len(open_jobs[key].tasks) < MAX_ARRAY_SIZE:
            open_jobs[key].tasks.append(task)
        else:
            part = parts[key]
            parts[key] += 1
            open_jobs[key] = Job([task], f"{task.step}-{task.sample}" + (f"-{part}" if part else ""))
            jobs.append(open_jobs[key])
    for job in jobs:
        job.name = re.sub(r"[^A-Za-z0-9_-]", "_", job.name)[:128]
    return jobs
