"""The workflow state machine: which tasks must run and when, and which intermediate outputs may go; it runs
nothing itself (after miniwdl's split of ``StateMachine`` and its driver). ``execute.Run`` feeds it what the
driver sees finish.

A run has two waves: every sample's tasks, then the tasks over all samples (MultiQC, the joint call), planned
over the samples that succeeded, so that one failed sample does not keep the others out of the report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from genobatch.executors.task import Task

from .declarations import Step
from .planner import Graph, Planner, Published

Keyer = Callable[[list[Task], dict[str, str]], dict[str, dict[str, Any]]]  # gives keys; returns their material


@dataclass
class Plan:
    steps: list[Step]
    tasks: list[Task]
    published: list[Published]
    needed: list[Task]  # in dependency order, one task per key
    cached: set[str]  # names of tasks whose outputs are in the cache
    material: dict[str, dict[str, Any]]  # what each task's key is made of (for --explain)
    versions: dict[str, str]
    sample_mb: dict[str, float] = field(default_factory=dict)  # each sample's FASTQ input, for estimates

    def copy(self) -> Plan:
        """A copy whose lists and sets can grow apart from this plan's (the tasks themselves are shared)."""
        return replace(
            self,
            tasks=list(self.tasks),
            published=list(self.published),
            needed=list(self.needed),
            cached=set(self.cached),
            material=dict(self.material),
        )


def decide(graph: Graph, is_cached: Callable[[str], bool], previous: Plan | None = None) -> tuple[list[Task], set[str]]:
    """What must run: a task not cached that is published or read by a task that runs. One task per key.
    ``is_cached(key)``: the site's answer; ``previous``: a plan these tasks are added to."""
    tasks = graph.tasks
    readers: dict[str, list[str]] = defaultdict(list)
    for task in tasks:
        for up in task.upstream:
            readers[up].append(task.name)
    cached = {t.name for t in tasks if is_cached(t.key)}
    wanted = {p.task for p in graph.published}
    needed: set[str] = set()
    for task in reversed(tasks):
        if task.name not in cached and (task.name in wanted or any(r in needed for r in readers[task.name])):
            needed.add(task.name)
    seen = {t.key for t in previous.needed} if previous else set()
    ordered = []
    for task in tasks:
        if task.name in needed and task.key not in seen:  # the same work under two names runs once
            seen.add(task.key)
            ordered.append(task)
    return ordered, cached


def decide_samples(graph: Graph, summary: Graph, is_cached: Callable[[str], bool]) -> tuple[list[Task], set[str]]:
    """``decide`` for the samples' tasks, counting what the tasks over all samples (``summary``) will read: a
    step's output that only MultiQC reads must exist when MultiQC runs."""
    whole = Graph(graph.steps, graph.tasks + summary.tasks, graph.published + summary.published)
    needed, cached = decide(whole, is_cached)
    names = {t.name for t in graph.tasks}
    return [t for t in needed if t.name in names], cached & names


class Workflow:
    def __init__(
        self, planner: Planner, plan: Plan, keyer: Keyer, is_cached: Callable[[str], bool], keep: bool = False
    ) -> None:
        self.planner, self.plan, self.keyer, self.is_cached, self.keep = planner, plan, keyer, is_cached, keep
        self.errors: dict[str, str] = {}  # task name -> why it failed
        self.waves = 0
        self._readers: Counter[str] = Counter()  # intermediate key -> tasks that still have to read it
        self._by_name = {t.name: t for t in plan.tasks}

    @property
    def failed_samples(self) -> set[str | None]:
        return {self._by_name[name].sample for name in self.errors if name in self._by_name}

    def next_tasks(self) -> list[Task] | None:
        """The next wave to submit (with dependencies among its tasks; it may be empty when all of it is
        cached), or None once the run is over."""
        self.waves += 1
        if self.waves == 1:
            todo = self.plan.needed
        elif self.waves == 2:
            succeeded = {s for t in self.plan.tasks if (s := t.sample) is not None and s not in self.failed_samples}
            todo = self.add_summary(succeeded)
        else:
            return None
        for task in todo:
            for up in task.upstream:
                if self._by_name[up].intermediate:
                    self._readers[self._by_name[up].key] += 1
        return todo

    def add_summary(self, samples: set[str]) -> list[Task]:
        """Plan the tasks over all these samples into ``plan``; returns those that must run."""
        graph = self.planner.summary(samples)
        keys = {t.name: t.key for t in self.plan.tasks}
        self.plan.material.update(self.keyer(graph.tasks, keys))
        todo, cached = decide(graph, self.is_cached, self.plan)
        self.plan.tasks += graph.tasks
        self.plan.published += graph.published
        self.plan.needed += todo
        self.plan.cached |= cached
        self._by_name.update((t.name, t) for t in graph.tasks)
        return todo

    def finished(self, task: Task, succeeded: bool, why: str = "") -> list[str]:
        """Record a task's end; returns the keys of intermediate outputs nothing pending reads any more."""
        if not succeeded:
            self.errors[task.name] = why or "failed"
            return []
        deletable = []
        for up in task.upstream:
            upstream = self._by_name[up]
            if upstream.intermediate:
                self._readers[upstream.key] -= 1
                if self._readers[upstream.key] == 0 and not self.keep:
                    deletable.append(upstream.key)
        return deletable
