"""What a plan will cost before it runs (``--dry-run``): vCPU-hours, then dollars on AWS Batch.

A sample's task uses ``rate[step]`` vCPU-seconds per MB of the sample's FASTQ input, shared among the
step's tasks of that sample (chunks, regions); other tasks (reference, MultiQC) use ``rate[step]`` vCPU-seconds
each. Rates are learnt from the last run in the same work directory (``rates.json``, written from each run's
trace), else taken from each step's declaration (``rate``), measured here on the bundled demo data with Debian
12's tools. This is a guide to the bill, not a quote: spot prices move, and instances are billed while they
start and idle. Prices come from the site (AWS Batch has them; this machine costs nothing extra).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from genobatch.executors.task import Task
from genobatch.report.trace import TraceRow


def shares(tasks: list[Task], sample_mb: dict[str, float]) -> dict[str, float]:
    """Each sample task's share of its sample's input MB (the step's tasks of a sample split it evenly)."""
    per_step: Counter[tuple[str, str]] = Counter((t.step, t.sample) for t in tasks if t.sample)
    return {t.name: sample_mb.get(t.sample, 0.0) / per_step[(t.step, t.sample)] for t in tasks if t.sample}


# The least a task costs, whatever its step declares: its job's own start and end (the job runner, the engine),
# about 0.04 vCPU-seconds on a 2-vCPU machine (bench/scale.py --steps-samples). Without it 90,000 trivial
# tasks left were estimated at "ETA <1 min" on their declared rate.
TASK_FLOOR_VCPU_SECONDS = 0.05


def vcpu_seconds(tasks: list[Task], sample_mb: dict[str, float], rates: dict[str, float]) -> float:
    share = shares(tasks, sample_mb)
    total = 0.0
    for task in tasks:
        rate = rates.get(task.step, 1.0)
        total += max(TASK_FLOOR_VCPU_SECONDS, rate * share[task.name] if task.sample else rate)
    return total


def learn(rows: list[TraceRow], tasks: list[Task], sample_mb: dict[str, float]) -> dict[str, float]:
    """Rates from a run's completed attempts: vCPU-seconds (realtime x vCPUs) per MB, per step."""
    by_name = {t.name: t for t in tasks}
    share = shares(tasks, sample_mb)
    spent: dict[str, float] = defaultdict(float)
    size: dict[str, float] = defaultdict(float)
    for row in rows:
        task = by_name.get(row.name)
        if row.status != "COMPLETED" or task is None or not row.realtime_s:
            continue
        spent[task.step] += row.realtime_s * row.vcpus
        size[task.step] += share[task.name] if task.sample else 1.0
    return {step: round(spent[step] / size[step], 3) for step in spent if size[step] > 0}


def load_rates(path: Path, declared: dict[str, float]) -> tuple[dict[str, float], str]:
    """Rates learnt by earlier runs in this work directory over the steps' ``declared`` ones."""
    try:
        learnt: dict[str, float] = json.loads(path.read_text())
        return {**declared, **learnt}, f"rates learnt from the last run in {path.parent}"
    except (OSError, ValueError):
        return dict(declared), "the steps' declared rates (run once in this --work-dir to learn your own)"


def save_rates(path: Path, rates: dict[str, float]) -> None:
    if rates:
        path.write_text(json.dumps(rates, indent=1, sort_keys=True))


def cost_lines(seconds: float, prices: dict[str, tuple[float, float, float]], source: str) -> list[str]:
    """``prices``: instance family -> (on-demand, spot low, spot high) dollars per vCPU-hour."""
    hours = seconds / 3600
    lines = [f"Estimated compute: {hours:.3f} vCPU-hours ({source})."]
    for family, (on_demand, low, high) in prices.items():
        lines.append(
            f"  {family}: on-demand ${hours * on_demand:.4f}; spot about ${hours * low:.4f}-${hours * high:.4f}"
        )
    return lines
