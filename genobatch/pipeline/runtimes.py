"""Where a run's jobs execute: the host's tools, or the tool images under podman/docker.

``choose`` decides before any compute starts (bad choices are InputErrors that say what to run). In container
mode each job runs in the smallest image holding its tools, sees only its own task directories (writable) and
its inputs (read-only), and the tool versions that key the cache are those the images recorded when built.
Tasks whose tools no image holds (MultiQC, a Python library of genobatch itself) run on the host.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from genobatch.batch.container import RUNTIMES, ContainerRuntime, RuntimeUnavailable
from genobatch.batch.model import Mount
from genobatch.batch.runtime import HostRuntime, Runtime
from genobatch.images import IMAGES, image_for, image_ref, status

from .inputs import InputError, Problem
from .tasks import Task, cache_path, task_dir
from .tools import TOOLS, tool_versions

CHOICES = ("auto", "host", *RUNTIMES)
HOST_ONLY_TOOLS = ["multiqc"]  # no image holds them: their tasks run on the host


@dataclass
class RunRuntime:
    runtime: Runtime
    versions: dict[str, str]  # tool -> version, as recorded in the cache keys and the report
    images: dict[str, str] = field(default_factory=dict)  # image name -> reference (container mode)
    note: str = ""  # why this runtime, for the summary and the report

    @property
    def name(self) -> str:
        return self.runtime.name

    def describe(self) -> str:
        return f"{self.name}" + (f" ({self.note})" if self.note else "")

    def image(self, task: Task) -> str | None:
        spec = image_for(task.tools) if self.images else None
        return self.images[spec.name] if spec is not None else None

    def command(self, task: Task, task_file: Path) -> list[str]:
        if self.image(task) is not None:
            return ["genobatch-runner", str(task_file)]
        return [sys.executable, "-m", "genobatch.pipeline.runner", str(task_file)]

    def mounts(self, tasks: list[Task], cache: Path, keys: dict[str, str], task_file: Path) -> list[Mount]:
        """What a containerised job sees: its tasks' directories (writable), their inputs and its task file."""
        if self.image(tasks[0]) is None:
            return []
        writable = {str(task_dir(cache, task.key)) for task in tasks}
        readable = {str(task_file)}
        for task in tasks:
            readable |= {str(cache_path(cache, keys[up])) for up in task.upstream}
            readable |= {str(path.resolve()) for path in task.files}
        return [Mount(p, p, False) for p in sorted(writable)] + [Mount(p, p, True) for p in sorted(readable)]


def choose(choice: str) -> RunRuntime:
    """Resolve ``--runtime``. ``auto`` takes podman, then docker, if it works and its images are built;
    otherwise the host, saying why."""
    if choice == "host":
        return RunRuntime(HostRuntime(), tool_versions())
    if choice != "auto":
        return _containers(choice)
    reasons = []
    for name in RUNTIMES:
        try:
            return _containers(name)
        except InputError as exc:
            reasons.append(exc.problems[0].message)
    return RunRuntime(HostRuntime(), tool_versions(), note="no container runtime: " + "; ".join(reasons))


def _containers(binary: str) -> RunRuntime:
    try:
        rows = status(binary)  # checks first that the runtime works
    except RuntimeUnavailable as exc:
        raise InputError([Problem(Path(binary), None, exc.problem, exc.fix)]) from None
    images, versions = {}, {}
    unusable = [
        f"{row.ref} ({'stale: other job-runner code' if row.present else 'missing'})"
        for row in rows
        if row.stale or not row.present
    ]
    if unusable:
        raise InputError(
            [
                Problem(
                    Path(binary),
                    None,
                    f"{len(unusable)} tool image(s) not usable: {', '.join(unusable)}",
                    f"genobatch images build --runtime {binary}",
                )
            ]
        )
    for spec, row in zip(IMAGES, rows, strict=True):
        images[spec.name] = row.ref
        versions.update(row.tools)
    absent = [tool for tool in TOOLS if tool not in versions and tool not in HOST_ONLY_TOOLS]
    if absent:
        raise InputError(
            [Problem(Path(binary), None, f"no image records {', '.join(absent)}", "genobatch images build")]
        )
    versions.update(tool_versions(HOST_ONLY_TOOLS))
    return RunRuntime(ContainerRuntime(binary), versions, images, note=f"images {image_ref('*')}")
