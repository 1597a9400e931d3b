"""The Slurm executor: the local executor's data (the cache, task files and publishing in the work directory,
which the cluster's nodes share) with jobs through Slurm instead of the embedded engine."""

from __future__ import annotations

from genobatch.batch.container import ContainerRuntime

from ..base import RunContext
from ..local import LocalExecutor
from . import Settings
from .backend import SlurmBackend


class SlurmExecutor(LocalExecutor):
    name = "slurm"
    capabilities = SlurmBackend.capabilities

    def __init__(self, context: RunContext, settings: Settings) -> None:
        super().__init__(context)
        self.settings = settings

    def backend(self) -> SlurmBackend:  # type: ignore[override]
        runtime = self.runtime.runtime
        container = runtime if isinstance(runtime, ContainerRuntime) else None
        return SlurmBackend(self.settings, self.work / "slurm", container)
