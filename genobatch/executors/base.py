"""What an executor is to the pipeline: where a run's tasks run (its ``Backend``) and where their data lives
(the cache, the task files, publishing). ``execute.Run`` asks it whether a task is cached, for the job that
runs some tasks, to publish and to delete; nothing else in the pipeline knows which executor it is.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .contract import AttemptState, Backend, Capabilities, JobSpec
from .publish import PublishedIndex
from .runtimes import RunRuntime
from .task import Task


@dataclass(frozen=True)
class RunContext:
    """What every executor is given for a run."""

    work: Path  # the work directory: cache, engine state, task files
    runtime: RunRuntime  # host tools or the tool images
    digest: Callable[[Path], str]  # an input file's SHA-256 (remembered by file identity)
    images: list[str] = field(default_factory=list)  # the genobatch images the steps run in
    max_cpus: int | None = None
    max_memory_mib: int | None = None
    endpoint_url: str | None = None  # another S3 (and AWS) endpoint than AWS's
    dry_run: bool = False  # only the plan and its estimate: no need to reach a batch system


class Executor(ABC):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]  # of its backend, readable before one is started (--dry-run)

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.runtime = context.runtime
        self.published = PublishedIndex(context.work / "published.json")  # what is in the outdir, from where
        self.damaged: dict[str, str] = {}  # key -> why its cached output was not reused (see is_cached)

    def prices(self) -> dict[str, tuple[float, float, float]]:
        """Instance family -> (on-demand, spot low, spot high) USD per vCPU-hour; none on a machine of yours."""
        return {}

    def refuse_image(self, image: str) -> str | None:
        """Why a step in ``image`` (a genobatch image, a reference or "host") cannot run here; None if it can."""
        return None

    @abstractmethod
    def is_cached(self, key: str) -> bool:
        """Whether the task's output is there, complete and unchanged: a damaged one is recorded in ``damaged``
        (key -> why) and its task runs again."""

    def workdir(self, key: str) -> str:
        """Where a task's files are (the trace's ``workdir``)."""
        return "-"

    @abstractmethod
    def remove(self, key: str) -> None:
        """Delete an intermediate output nothing pending needs any more."""

    @abstractmethod
    def publish(self, key: str, files: dict[str, str], outdir: str) -> int:
        """Copy ``files`` (name in the task's output -> path relative to ``outdir``) into ``outdir``, but those
        published from the same output and untouched since (``published``); returns how many were copied."""

    @abstractmethod
    def job_spec(self, name: str, tasks: list[Task], keys: dict[str, str], **fields: Any) -> JobSpec:
        """The job that runs ``tasks`` (an array job when there are several)."""

    def barrier_spec(self, name: str, depends_on: list[str]) -> JobSpec:
        """A job that does nothing but wait for others: how the driver keeps within a backend's limit of
        dependencies per job. It runs where the jobs it waits for run."""
        return JobSpec(name, ["true"], vcpus=1, memory_mib=64, depends_on=depends_on)

    @abstractmethod
    def backend(self) -> Backend: ...

    def log_tail(self, attempt: AttemptState, lines: int = 8) -> str:
        """The end of an attempt's log: read from the shared file system where jobs write it."""
        if self.capabilities.shared_filesystem and attempt.log and Path(attempt.log).is_file():
            return "\n".join(Path(attempt.log).read_text(errors="replace").strip().splitlines()[-lines:])
        return ""


def task_file_name(name: str, specs: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:16]
    return f"{name}-{digest}.json"
