"""The workflow state machine, with no engine: the waves it proposes, what the cache spares, which
intermediate outputs may go when, and the summary over the samples that succeeded."""

from __future__ import annotations

from typing import Any

from genobatch.executors.task import Task
from genobatch.pipeline.planner import Graph, Limits, Params, Planner, RunInputs
from genobatch.pipeline.workflow import Plan, Workflow, decide, decide_samples

from .test_planner import CONTIGS, DATA, LIBRARY, chunker, sample


def keyer(tasks: list[Task], keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Keys that are the names: enough to tell tasks apart here."""
    for task in tasks:
        task.key = keys[task.name] = "key-" + task.name
    return {task.name: {} for task in tasks}


def setup(cached: set[str] = frozenset()) -> tuple[Workflow, Plan]:  # type: ignore[assignment]
    samples = [sample("S1"), sample("S2")]
    run = RunInputs(samples, DATA / "ref.fa", CONTIGS, {lane.fastq_1: 10 for s in samples for lane in s.lanes}, chunker)
    planner = Planner(LIBRARY.select(), run, Params(ploidy=1, regions=2), Limits(2))
    graph = planner.samples()
    keyer(graph.tasks, {})
    needed, done = decide(graph, lambda key: key in cached)
    plan = Plan(graph.steps, graph.tasks, graph.published, needed, done, {}, {})
    return Workflow(planner, plan, keyer, lambda key: key in cached), plan


def test_waves_intermediates_and_a_summary_of_the_samples_that_succeeded() -> None:
    workflow, plan = setup()
    first = workflow.next_tasks()
    assert first == plan.needed and len(first) == len(plan.tasks), "nothing cached: every task runs"
    by_name = {t.name: t for t in first}
    deleted: list[str] = []
    for task in first:  # one region of S1 fails, and what depends on it with it
        failed = task.name in ("call:S1:0", "concat:S1", "vcfstats:S1")
        deleted += workflow.finished(task, not failed, "exit 1" if failed else "")
    assert "key-align:S1:1:0" in deleted and "key-align:S2:1:0" in deleted, "chunk BAMs go once merged"
    assert "key-call:S2:0" in deleted and "key-call:S1:1" not in deleted, "S1's concat never finished"
    assert workflow.errors["call:S1:0"] == "exit 1" and workflow.failed_samples == {"S1"}
    second = workflow.next_tasks()
    assert [t.name for t in second] == ["multiqc"]
    assert not any(":S1" in up for up in by_name.get("multiqc", second[0]).upstream)
    assert workflow.plan.tasks[-1].name == "multiqc" and workflow.next_tasks() is None


def test_cached_work_is_not_proposed_and_what_only_the_summary_reads_is() -> None:
    workflow, plan = setup()
    every = {t.key for t in plan.tasks}
    cached_workflow, cached_plan = setup(cached=every - {"key-bamstats:S2"})
    assert [t.name for t in cached_plan.needed] == ["bamstats:S2"]
    assert cached_workflow.next_tasks() == cached_plan.needed
    not_published = Graph(plan.steps, plan.tasks, [p for p in plan.published if p.task != "bamstats:S2"])
    is_cached = lambda key: key in every - {"key-bamstats:S2"}  # noqa: E731
    needed, _ = decide(not_published, is_cached)
    assert needed == [], "nothing of the samples' own tasks reads it"
    summary = workflow.planner.summary({"S1", "S2"})
    keyer(summary.tasks, {})
    needed, _ = decide_samples(not_published, summary, is_cached)
    assert [t.name for t in needed] == ["bamstats:S2"], "MultiQC will read it"


def test_a_summary_runs_even_when_every_sample_task_is_cached() -> None:
    """Only a step over all samples changed (MultiQC's arguments, a new summary step): the empty first wave
    does not end the run before the summary's."""
    _, plan = setup()
    workflow, cached_plan = setup(cached={t.key for t in plan.tasks})
    assert workflow.next_tasks() == [] and cached_plan.needed == []
    assert [t.name for t in workflow.next_tasks() or []] == ["multiqc"]
    assert workflow.next_tasks() is None
