"""The estimate behind --dry-run's vCPU-hours and the live ETA (``pipeline/estimate.py``): pure, no tools."""

from __future__ import annotations

import pytest

from genobatch.executors.task import Task
from genobatch.pipeline import estimate


def tasks(step: str, count: int) -> list[Task]:
    return [Task(name=f"{step}:S{i}", step=step, sample=f"S{i}", pipes=[], outputs=[]) for i in range(count)]


def test_a_task_costs_at_least_its_jobs_own_start() -> None:
    """A trivial step declaring a tiny rate still costs each task its runner's start: 90,000 such tasks left
    are hours of vCPU, not "ETA <1 min"."""
    trivial = tasks("touch", 90_000)
    sizes = {f"S{i}": 1.0 for i in range(90_000)}
    seconds = estimate.vcpu_seconds(trivial, sizes, {"touch": 0.0001})
    assert seconds == pytest.approx(90_000 * estimate.TASK_FLOOR_VCPU_SECONDS)


def test_a_real_steps_rate_is_kept_above_the_floor() -> None:
    align = tasks("align", 3)
    sizes = {"S0": 100.0, "S1": 200.0, "S2": 300.0}
    assert estimate.vcpu_seconds(align, sizes, {"align": 2.0}) == 2.0 * 600.0
