"""Where a run's tasks execute and where their outputs are kept: ``LocalSite`` (this machine's engine, the
cache on disk) or ``AwsSite`` (AWS Batch, the cache in the stack's S3 bucket). ``execute.Run`` asks a site
whether a task is cached, for the job that runs some tasks, to publish and to delete; nothing else in the
pipeline knows which one it is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genobatch.batch.backend import AttemptState, Backend, Capabilities, JobSpec, JobState, LocalBackend
from genobatch.batch.daemon import engine_pid
from genobatch.batch.jobs import abandon_open_jobs
from genobatch.batch.store import Store
from genobatch.storage import s3 as storage

from . import shellrunner
from .declarations import Step
from .inputs import InputError, Problem
from .publish import publish
from .runtimes import RunRuntime
from .tasks import Task, cache_path, runner_spec, task_dir


class Site(ABC):
    runtime: RunRuntime
    capabilities: Capabilities  # of the backend it runs jobs on (read before one is started: --dry-run)

    def prices(self) -> dict[str, tuple[float, float, float]]:
        """Instance family -> (on-demand, spot low, spot high) USD per vCPU-hour; none on this machine."""
        return {}

    def refuse(self, steps: list[Step]) -> list[Problem]:
        """Steps this site cannot run, each with why and what to do instead (checked before any compute)."""
        return []

    @abstractmethod
    def is_cached(self, key: str) -> bool: ...

    @abstractmethod
    def remove(self, key: str) -> None:
        """Delete an intermediate output nothing pending needs any more."""

    @abstractmethod
    def publish(self, key: str, files: dict[str, str], outdir: str) -> None:
        """Copy ``files`` (name in the task's output -> path relative to ``outdir``) into ``outdir``."""

    @abstractmethod
    def job_spec(self, name: str, tasks: list[Task], keys: dict[str, str], **fields: Any) -> JobSpec:
        """The job that runs ``tasks`` (an array job when there are several)."""

    @abstractmethod
    def backend(self) -> Backend: ...

    def log_tail(self, attempt: AttemptState, lines: int = 8) -> str:
        if attempt.log and Path(attempt.log).is_file():
            return "\n".join(Path(attempt.log).read_text(errors="replace").strip().splitlines()[-lines:])
        return ""


def task_file_name(name: str, specs: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:16]
    return f"{name}-{digest}.json"


class LocalSite(Site):
    """This machine: the engine in ``<work>/engine``, task outputs in ``<work>/cache``."""

    capabilities = LocalBackend.capabilities

    def __init__(self, work: Path, runtime: RunRuntime, max_cpus: int | None, max_memory_mib: int | None) -> None:
        self.work, self.cache, self.runtime = work, work / "cache", runtime
        self.max_cpus, self.max_memory_mib = max_cpus, max_memory_mib

    def is_cached(self, key: str) -> bool:
        return cache_path(self.cache, key).is_dir()

    def remove(self, key: str) -> None:
        shutil.rmtree(task_dir(self.cache, key), ignore_errors=True)

    def publish(self, key: str, files: dict[str, str], outdir: str) -> None:
        entry = cache_path(self.cache, key)
        if storage.is_s3(outdir):
            s3 = storage.client()
            for name, rel in files.items():
                storage.upload(s3, entry / name, f"{outdir.rstrip('/')}/{rel}")
        else:
            publish({entry / name: Path(outdir) / rel for name, rel in files.items()})

    def job_spec(self, name: str, tasks: list[Task], keys: dict[str, str], **fields: Any) -> JobSpec:
        specs = [runner_spec(task, self.cache, keys) for task in tasks]
        task_file = self.work / "tasks" / task_file_name(name, specs)
        task_file.parent.mkdir(parents=True, exist_ok=True)
        task_file.write_text(json.dumps(specs, indent=1))
        if self.runtime.foreign(tasks[0]):
            task_file.with_suffix(".sh").write_text(shellrunner.script(specs))
        return JobSpec(
            name,
            self.runtime.command(tasks[0], task_file),
            image=self.runtime.image(tasks[0]),
            mounts=self.runtime.mounts(tasks, self.cache, keys, task_file),
            **fields,
        )

    def backend(self) -> LocalBackend:
        state = self.work / "engine"
        holder = engine_pid(state)
        if holder is not None:
            raise InputError(
                [
                    Problem(
                        self.work,
                        None,
                        f"another genobatch run (engine pid {holder}) uses this work directory",
                        "wait for it, or give this run its own --work-dir",
                    )
                ]
            )
        store = Store(state)  # the previous run is gone: its unfinished jobs must not run now
        abandoned = abandon_open_jobs(store, "abandoned: the run that submitted it ended")
        self.runtime.runtime.recover(state.resolve(), abandoned)
        store.close()
        backend = LocalBackend(state, engine="thread", runtime=self.runtime.runtime)
        name = f"run-{self.max_cpus or 'all'}-{self.max_memory_mib or 'all'}"
        if not backend.client.describe_job_queues(jobQueues=[name])["jobQueues"]:
            resources: dict[str, Any] = {"type": "LOCAL"}
            if self.max_cpus:
                resources["maxvCpus"] = self.max_cpus
            if self.max_memory_mib:
                resources["maxMemoryMiB"] = self.max_memory_mib
            backend.client.create_compute_environment(computeEnvironmentName=name, computeResources=resources)
            backend.client.create_job_queue(
                jobQueueName=name, priority=10, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": name}]
            )
        backend.queue = name
        return backend


class RoutedBackend(Backend):
    """Jobs with an image go to AWS Batch; jobs without one (MultiQC: no image holds it) run on this machine."""

    capabilities = Capabilities(name="awsbatch+local", min_timeout_seconds=60, shared_filesystem=False)

    def __init__(self, remote: Backend, local: Backend) -> None:
        self.remote, self.local = remote, local
        self.owner: dict[str, Backend] = {}

    def _of(self, job_id: str) -> Backend:
        return self.owner.get(job_id.partition(":")[0], self.remote)

    def submit(self, spec: JobSpec) -> str:
        target = self.remote if spec.image else self.local
        if any(self._of(d) is not target for d in spec.depends_on):
            raise ValueError(f"job {spec.name} would depend on jobs of another backend")
        job_id = target.submit(spec)
        self.owner[job_id] = target
        return job_id

    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        remote = [j for j in job_ids if self._of(j) is self.remote]
        local = [j for j in job_ids if self._of(j) is self.local]
        return (self.remote.poll(remote) if remote else []) + (self.local.poll(local) if local else [])

    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        for job_id in job_ids:
            self._of(job_id).cancel([job_id], reason)

    def stuck(self, seconds: float) -> list[str]:
        return self.remote.stuck(seconds) + self.local.stuck(seconds)

    def retries(self) -> dict[str, int]:
        return self.remote.retries()

    def close(self) -> None:
        self.remote.close()
        self.local.close()
