"""What ``--dry-run`` and ``--explain`` print: the plan per step and job, and why each task must run."""

from __future__ import annotations

import json
import shlex
from collections import Counter, defaultdict
from pathlib import Path

from genobatch.executors.task import Task, with_resources

from .grouping import jobs_for
from .workflow import Plan


def describe_plan(plan: Plan, max_array_size: int, verbose: bool = False) -> list[str]:
    """Tasks per step (to run, cached), then the jobs with their array size, resources (after the caps) and
    every command, threads and heap as they will run (paths stay placeholders: each executor has its own).
    Without ``verbose``, the first job of each step stands for the others (10,000 samples: a page, not 20 MB)."""
    per_step: dict[str, Counter[str]] = defaultdict(Counter)
    example: dict[str, Task] = {}
    needed = {t.name for t in plan.needed}
    for task in plan.tasks:
        kind = "run" if task.name in needed else "cached" if task.name in plan.cached else "not needed"
        per_step[task.step][kind] += 1
        example.setdefault(task.step, task)
    lines = [f"{'step':<10} {'tasks':>6} {'run':>5} {'cached':>7}  vCPU  memory"]
    for step in plan.steps:
        if step.name in per_step:
            c, first = per_step[step.name], example[step.name]
            lines.append(
                f"{step.name:<10} {sum(c.values()):>6} {c['run']:>5} {c['cached']:>7}  "
                f"{first.vcpus:>4}  {first.memory_mib:>5} MiB"
            )
    shown: Counter[str] = Counter()
    for job in jobs_for(plan.needed, max_array_size):
        first = job.tasks[0]
        shown[first.step] += 1
        if shown[first.step] > 1 and not verbose:
            continue
        size = f" (array of {len(job.tasks)})" if len(job.tasks) > 1 else ""
        lines.append(f"  job {job.name}{size}: {first.vcpus} vCPU, {first.memory_mib} MiB")
        if first.builtin:
            lines.append(f"      first: {first.builtin['op']} (genobatch's runner)")
        for pipe in first.pipes:
            command = " | ".join(shlex.join(with_resources(word, first) for word in argv) for argv in pipe.argv)
            lines.append(f"      {command}" + (f" > {pipe.stdout}" if pipe.stdout else ""))
    hidden = {step: count - 1 for step, count in shown.items() if count > 1}
    if hidden and not verbose:
        more = ", ".join(f"{count} {step}" for step, count in hidden.items())
        lines.append(f"  and {sum(hidden.values())} more job(s) like the one shown of their step ({more}): "
                     "--verbose lists every job")  # fmt: skip
    return lines


def explain(plan: Plan, index: Path) -> list[str]:
    """Why each task that will run cannot use the cache, against what the last run's keys were made of."""
    try:
        previous = json.loads(index.read_text())
    except (OSError, ValueError):
        previous = {}
    lines = []
    for task in plan.needed:
        old = previous.get(task.name)
        if old is None:
            reason = "new: never ran in this work directory"
        else:
            now = plan.material[task.name]
            changed = [k for k in sorted(set(old) | set(now)) if old.get(k) != now.get(k)]
            reason = ("changed: " + ", ".join(changed)) if changed else "same inputs, but the cached output is gone"
        lines.append(f"{task.name}: {reason}")
    return lines
