"""Scattered tasks become array jobs within the backend's array size (AWS Batch: 10,000 children)."""

from __future__ import annotations

from genobatch.batch.model import MAX_ARRAY_SIZE
from genobatch.executors.task import Task
from genobatch.pipeline.grouping import group


def test_a_scatter_larger_than_an_array_is_split_into_several() -> None:
    tasks = [Task(f"align:S1:1:{i}", "align", "S1", [], [], group="align:S1") for i in range(MAX_ARRAY_SIZE + 2)]
    tasks += [Task("align:S2:1:0", "align", "S2", [], [], group="align:S2"), Task("merge:S1", "merge", "S1", [], [])]
    jobs = group(tasks, MAX_ARRAY_SIZE)
    assert [(job.name, len(job.tasks)) for job in jobs] == [
        ("align-S1", MAX_ARRAY_SIZE),
        ("align-S1-1", 2),
        ("align-S2", 1),
        ("merge-S1", 1),
    ]
    assert [len(job.tasks) for job in group(tasks[:5], 2)] == [2, 2, 1]
