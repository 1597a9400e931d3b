"""Where a run's jobs execute: the host's tools, or the tool images under podman/docker.

``choose`` decides before any compute starts (bad choices are InputErrors that say what to run). In container
mode each job runs in its step's image, sees only its own task directories (writable) and its inputs
(read-only), and the tool versions that key the cache are those the images recorded when built. Steps with
``image: host`` run on the host; a step naming an image genobatch did not build runs in it, keyed by
the image's ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genobatch.batch.container import RUNTIMES, ContainerRuntime, RuntimeUnavailable, image_id
from genobatch.batch.model import Mount
from genobatch.batch.runtime import HostRuntime, Runtime
from genobatch.images import ImageSpec, image_ref, status
from genobatch.problems import InputError, Problem

from .runner import HOST_RUNNER_ARGV
from .task import HOST, Task, cache_path, task_dir
from .tools import tool_versions

CHOICES = ("auto", "host", *RUNTIMES)


@dataclass(frozen=True)
class Needs:
    """What a run's steps need of a runtime (the pipeline works it out from the step declarations)."""

    images: list[ImageSpec]  # genobatch images, with the tools each must hold
    host_tools: dict[str, tuple[str, str]]  # tool -> (version command, image) for the host
    host_only: dict[str, tuple[str, str]]  # the same, of steps that run on the host whatever the runtime
    foreign: dict[str, str] = field(default_factory=dict)  # an image genobatch did not build -> who uses it


@dataclass
class RunRuntime:
    runtime: Runtime
    versions: dict[str, str]  # tool -> version, as recorded in the cache keys and the report
    images: dict[str, str] = field(default_factory=dict)  # genobatch image name -> reference (container mode)
    note: str = ""  # why this runtime, for the summary and the report

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def containers(self) -> bool:
        return isinstance(self.runtime, ContainerRuntime)

    def describe(self) -> str:
        return f"{self.name}" + (f" ({self.note})" if self.note else "")

    def image(self, task: Task) -> str | None:
        if not self.containers or task.image == HOST:
            return None
        return self.images.get(task.image, task.image)

    def foreign(self, task: Task) -> bool:
        """Runs in an image genobatch did not build: the job runs a bash script (``shellrunner``)."""
        return self.image(task) is not None and task.image not in self.images

    def command(self, task: Task, task_file: Path) -> list[str]:
        if self.foreign(task):
            return ["bash", str(task_file.with_suffix(".sh"))]
        if self.image(task) is not None:
            return ["genobatch-runner", str(task_file)]
        return [*HOST_RUNNER_ARGV, str(task_file)]

    def mounts(self, tasks: list[Task], cache: Path, keys: dict[str, str], task_file: Path) -> list[Mount]:
        """What a containerised job sees: its tasks' directories (writable), their inputs and its task file."""
        if self.image(tasks[0]) is None:
            return []
        writable = {str(task_dir(cache, task.key)) for task in tasks}
        readable = {str(task_file), *([str(task_file.with_suffix(".sh"))] if self.foreign(tasks[0]) else [])}
        outputs = {str(cache_path(cache, keys[up])) for task in tasks for up in task.upstream}
        if len(outputs) > MAX_OUTPUT_MOUNTS:  # MultiQC over 10,000 samples: one mount, not an argv of 6 MB
            outputs = {str(cache)}
        readable |= outputs | {str(path.resolve()) for task in tasks for path in task.files}
        return [Mount(p, p, False) for p in sorted(writable)] + [Mount(p, p, True) for p in sorted(readable)]


MAX_OUTPUT_MOUNTS = 64  # above it, a job sees the whole cache read-only rather than one mount per input task


def choose(choice: str, needs: Needs) -> RunRuntime:
    """Resolve ``--runtime``. ``auto`` takes podman, then docker, if it works and the steps' images are
    built; otherwise the host, saying why."""
    if choice == "host":
        return RunRuntime(HostRuntime(), tool_versions(needs.host_tools))
    if choice != "auto":
        return _containers(choice, needs)
    reasons = []
    for name in RUNTIMES:
        try:
            return _containers(name, needs)
        except InputError as exc:
            reasons.append(exc.problems[0].message)
    note = "no container runtime: " + "; ".join(reasons)
    return RunRuntime(HostRuntime(), tool_versions(needs.host_tools), note=note)


def _containers(binary: str, needs: Needs) -> RunRuntime:
    try:
        rows = status(needs.images, binary)  # checks first that the runtime works
    except RuntimeUnavailable as exc:
        raise InputError([Problem(Path(binary), None, exc.problem, exc.fix)]) from None
    unusable = [f"{row.ref} ({'stale: ' + row.stale if row.stale else 'missing'})" for row in rows if not row.usable]
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
    images = {spec.name: row.ref for spec, row in zip(needs.images, rows[1:], strict=True)}
    versions = {tool: version for row in rows for tool, version in row.tools.items()}
    versions.update(tool_versions(needs.host_only))
    for image, user in needs.foreign.items():
        versions[f"image {image}"] = _foreign_image(binary, image, user)
    return RunRuntime(ContainerRuntime(binary), versions, images, note=f"images {image_ref('*')}")


def _foreign_image(binary: str, image: str, user: str) -> str:
    """The ID of an image genobatch did not build: it keys the step's cache as tool versions do."""
    found = image_id(binary, image)
    if found is None:
        fix = f"{binary} pull {image} (or {binary} build it)"
        raise InputError([Problem(Path(image), None, f"image {image} of {user} is not on this machine", fix)])
    return found
