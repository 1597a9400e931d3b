"""The local executor: this machine's embedded engine runs the jobs (``LocalBackend``), the cache and the task
files are in the work directory (``LocalExecutor``). ``--executor local`` (the default)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import shutil
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genobatch.batch.client import BatchClient
from genobatch.batch.daemon import engine_pid
from genobatch.batch.endpoint_service import EndpointService, EndpointUnavailable
from genobatch.batch.engine import Engine
from genobatch.batch.engine import Settings as EngineSettings
from genobatch.batch.errors import EngineFailed, EngineLockedError
from genobatch.batch.faults import as_fault
from genobatch.batch.jobs import abandon_open_jobs
from genobatch.batch.model import ExitReason, JobStatus
from genobatch.batch.registry import DEFAULT_JOB_QUEUE
from genobatch.batch.runtime import Runtime
from genobatch.batch.store import Store, resolve_state_dir
from genobatch.batch.views import MAX_DESCRIBE, changed_jobs, last_change
from genobatch.problems import InputError, Problem
from genobatch.storage import s3 as storage

from . import integrity, shellrunner
from .base import Executor, RunContext, task_file_name
from .contract import AttemptState, Backend, Capabilities, JobSpec, JobState
from .publish import inside, local_state, publish_file
from .task import Task, cache_path, runner_spec, task_dir

log = logging.getLogger("genobatch.executors.local")


@dataclass
class Settings:
    """The local executor has no options of its own: --max-cpus and --max-memory cap it, as every run."""


def open_executor(context: RunContext, settings: Settings) -> LocalExecutor:
    return LocalExecutor(context)


def state_from_detail(detail: dict[str, Any]) -> JobState:
    """Translate an AWS Batch JobDetail (local or remote) into the backend-neutral ``JobState``."""
    attempts = []
    for number, attempt in enumerate(detail.get("attempts") or [], start=1):
        extra = attempt.get("genobatch") or {}
        attempts.append(
            AttemptState(
                number=extra.get("attempt", number),
                exit_reason=ExitReason(extra["exitReason"]) if extra.get("exitReason") else None,
                exit_code=(attempt.get("container") or {}).get("exitCode"),
                status_reason=attempt.get("statusReason"),
                started_at_ms=attempt.get("startedAt"),
                stopped_at_ms=attempt.get("stoppedAt"),
                cpu_seconds=extra.get("cpuSeconds"),
                max_rss_kib=extra.get("maxRssKiB"),
                log=extra.get("stderr"),
                container_reason=(attempt.get("container") or {}).get("reason"),
                runtime=extra.get("runtime"),
                image=(attempt.get("container") or {}).get("image"),
            )
        )
    return JobState(
        detail["jobId"],
        JobStatus(detail["status"]),
        detail.get("statusReason"),
        (detail.get("container") or {}).get("exitCode"),
        attempts,
        detail.get("createdAt"),
    )


def definition_request(spec: JobSpec) -> dict[str, Any]:
    """A job definition for this spec's image and resources, named by content hash so it is reused."""
    properties = {"image": spec.image, "command": ["true"], "vcpus": spec.vcpus, "memory": spec.memory_mib}
    digest = hashlib.sha256(json.dumps(properties, sort_keys=True).encode()).hexdigest()[:12]
    return {"jobDefinitionName": f"genobatch-{digest}", "type": "container", "containerProperties": properties}


def submit_request(spec: JobSpec, queue: str, definition: str) -> dict[str, Any]:
    depends: list[dict[str, str]] = [{"jobId": job_id} for job_id in spec.depends_on]
    if spec.n_to_n_with:
        depends.append({"jobId": spec.n_to_n_with, "type": "N_TO_N"})
    if spec.sequential:
        depends.append({"type": "SEQUENTIAL"})
    request: dict[str, Any] = {
        "jobName": spec.name,
        "jobQueue": queue,
        "jobDefinition": definition,
        "containerOverrides": {
            "command": spec.command,
            "environment": [{"name": k, "value": v} for k, v in spec.environment.items()],
            "resourceRequirements": [
                {"type": "VCPU", "value": f"{spec.vcpus:g}"},
                {"type": "MEMORY", "value": str(spec.memory_mib)},
            ],
        },
        "dependsOn": depends,
        "retryStrategy": {"attempts": spec.retry_attempts},
        "tags": spec.tags,
    }
    if spec.mounts:  # a local extension: each job mounts its own inputs (see model.parse_mounts)
        request["containerOverrides"]["mountPoints"] = [
            {"sourcePath": m.source, "containerPath": m.target, "readOnly": m.read_only} for m in spec.mounts
        ]
    if spec.array_size is not None:
        request["arrayProperties"] = {"size": spec.array_size}
    if spec.timeout_seconds is not None:
        request["timeout"] = {"attemptDurationSeconds": spec.timeout_seconds}
    return request


class LocalBackend(Backend):
    """The embedded engine. ``engine``: "thread" runs it in this process, "background" starts (or reuses) a
    detached engine process, "none" leaves running it to someone else. An engine in this process serves the
    AWS Batch endpoint too (``endpoint``: its URL in ``<state>/endpoint.json``)."""

    capabilities = Capabilities(name="local")

    def __init__(
        self,
        state_dir: str | Path | None = None,
        queue: str = DEFAULT_JOB_QUEUE,
        engine: str = "thread",
        settings: EngineSettings | None = None,
        runtime: Runtime | None = None,
        endpoint: bool = True,
    ) -> None:
        self.queue = queue
        self._definitions: dict[str, str] = {}
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None  # why the engine thread ended, if it did
        self._closing = False
        self._changes_read: int | None = None  # how far poll_changed has read the engine's change log
        self._endpoint: EndpointService | None = None
        if engine == "thread":
            state = resolve_state_dir(state_dir)
            holder = engine_pid(state)
            if holder is not None:
                raise EngineLockedError(f"an engine (pid {holder}) already runs {state}; use engine='none'")
            # Before the client: the engine checks the database and may set a damaged one aside.
            self._engine = Engine(state, runtime=runtime, settings=settings)
        self.client = BatchClient(state_dir, autostart_engine=engine == "background")
        if self._engine is not None:
            self._thread = threading.Thread(target=self._run_engine, name="genobatch-engine", daemon=True)
            self._thread.start()
            if endpoint:
                try:
                    self._endpoint = EndpointService(self.client.state_dir, wake=self._engine.wake).start()
                except EndpointUnavailable as exc:  # the run needs no endpoint: say so and go on
                    log.warning("genobatch: %s; running without it", exc)

    def _run_engine(self) -> None:
        assert self._engine is not None
        try:
            self._engine.run()
        except BaseException as exc:  # the engine has logged it and killed its attempts; submit and poll raise it
            self._failure = exc

    @contextlib.contextmanager
    def _engine_working(self) -> Iterator[None]:
        """Raise ``EngineFailed`` once the engine thread has ended (else a run would wait forever for its jobs), or
        when the state database fails this caller too (a full disk)."""
        if self._thread is not None and not self._thread.is_alive() and not self._closing:
            failure = self._failure
            if isinstance(failure, EngineFailed):
                raise failure
            why = f" ({type(failure).__name__}: {failure})" if failure else ""
            fix = "see the error logged above, then start again"
            raise EngineFailed(0, f"the engine of {self.client.state_dir} stopped unexpectedly{why}", fix, "")
        try:
            yield
        except (OSError, sqlite3.Error) as exc:
            self.client.store.note_damage(exc)
            fault = as_fault(exc, self.client.store.db_path, EngineFailed)
            if fault is None:
                raise
            raise fault from exc

    def submit(self, spec: JobSpec) -> str:
        with self._engine_working():
            return self._submit(spec)

    def _submit(self, spec: JobSpec) -> str:
        definition = definition_request(spec)
        name = definition["jobDefinitionName"]
        if name not in self._definitions:
            existing = self.client.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
            if existing:
                self._definitions[name] = f"{name}:{existing[-1]['revision']}"
            else:
                self._definitions[name] = f"{name}:{self.client.register_job_definition(**definition)['revision']}"
        if self._changes_read is None:  # before its first job: poll_changed reads the change log from here
            self._changes_read = last_change(self.client.store.conn)
        job_id: str = self.client.submit_job(**submit_request(spec, self.queue, self._definitions[name]))["jobId"]
        if self._engine is not None:
            self._engine.wake()
        return job_id

    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        states: list[JobState] = []
        with self._engine_working():
            for start in range(0, len(job_ids), MAX_DESCRIBE):
                details = self.client.describe_jobs(list(job_ids[start : start + MAX_DESCRIBE]))["jobs"]
                states.extend(state_from_detail(detail) for detail in details)
        return states

    def poll_changed(self, job_ids: Collection[str]) -> list[JobState]:
        """Read the engine's change log from where the last call stopped (``views.changed_jobs``): unfinished jobs
        get their status only, ended ones their whole record (attempts), as ``poll`` gives it."""
        with self._engine_working():
            rows, self._changes_read = changed_jobs(self.client.store, self._changes_read or 0)
            wanted = [row for row in rows if row["id"] in job_ids]
            ended = [row["id"] for row in wanted if JobStatus(row["status"]).is_terminal]
            states = [
                JobState(
                    row["id"], JobStatus(row["status"]), row["status_reason"], row["exit_code"], [], row["created_at"]
                )
                for row in wanted
                if not JobStatus(row["status"]).is_terminal
            ]
        return states + self.poll(ended)

    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        for job_id in job_ids:
            self.client.terminate_job(jobId=job_id, reason=reason)
        if self._engine is not None:
            self._engine.wake()

    def close(self) -> None:
        self._closing = True
        if self._endpoint is not None:
            self._endpoint.close()
        if self._engine is not None and self._thread is not None:
            self._engine.request_stop(drain=False)
            self._thread.join(timeout=30)
        self.client.close()


class LocalExecutor(Executor):
    """This machine: the engine in ``<work>/engine``, task outputs in ``<work>/cache``. Other executors whose
    jobs share this file system (Slurm) keep their data the same way: they subclass it."""

    name = "local"
    capabilities = LocalBackend.capabilities

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.work, self.cache = context.work, context.work / "cache"
        self._verified: dict[str, int] = {}  # key -> inode of the output directory checked this run

    def is_cached(self, key: str) -> bool:
        """Done, and still what its task wrote (``integrity``); a damaged output is set aside, and its task runs
        again (``damaged`` says why, for the run to tell)."""
        output = cache_path(self.cache, key)
        try:
            identity = output.stat().st_ino
        except OSError:
            return False
        if self._verified.get(key) == identity:
            return True
        try:
            integrity.verify_output(output)
        except integrity.OutputChanged as exc:
            aside = integrity.set_aside(output)
            self.damaged[key] = f"{exc}; set aside as {aside}"
            return False
        self._verified[key] = identity
        return True

    def workdir(self, key: str) -> str:
        return str(task_dir(self.cache, key))

    def remove(self, key: str) -> None:
        shutil.rmtree(task_dir(self.cache, key), ignore_errors=True)

    def publish(self, key: str, files: dict[str, str], outdir: str) -> int:
        entry, copied = cache_path(self.cache, key), 0
        s3 = storage.client(self.context.endpoint_url) if storage.is_s3(outdir) else None
        recorded = integrity.recorded_files(entry) if s3 is None else None  # what each copy must match: read once
        for name, rel in files.items():
            source = f"{key}/{name}"
            if s3 is not None:
                target = f"{outdir.rstrip('/')}/{rel}"
                if self.published.unchanged(target, source, storage.state(s3, target)):
                    continue
                (storage.upload_dir if (entry / name).is_dir() else storage.upload)(s3, entry / name, target)
                self.published.record(target, source, storage.state(s3, target))
            else:
                path = inside(Path(outdir), rel)
                if self.published.unchanged(str(path), source, local_state(path)):
                    continue
                publish_file(entry / name, path, functools.partial(integrity.verify_copy, recorded, name=name))
                self.published.record(str(path), source, local_state(path))
            copied += 1
        return copied

    def job_spec(self, name: str, tasks: list[Task], keys: dict[str, str], **fields: Any) -> JobSpec:
        specs = [runner_spec(task, self.cache, keys) for task in tasks]
        task_file = inside(self.work / "tasks", task_file_name(name, specs))  # a job name never leaves it
        task_file.parent.mkdir(parents=True, exist_ok=True)
        task_file.write_text(json.dumps(specs, indent=1))
        if self.runtime.foreign(tasks[0]):  # an image without genobatch's runner: a bash script runs it
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
            message = f"another genobatch run (engine pid {holder}) uses this work directory"
            raise InputError([Problem(self.work, None, message, "wait for it, or give this run its own --work-dir")])
        store = Store(state)  # the previous run is gone: its unfinished jobs must not run now
        abandoned = abandon_open_jobs(store, "abandoned: the run that submitted it ended")
        self.runtime.runtime.recover(state.resolve(), abandoned)
        store.close()
        backend = LocalBackend(state, engine="thread", runtime=self.runtime.runtime)
        max_cpus, max_memory_mib = self.context.max_cpus, self.context.max_memory_mib
        name = f"run-{max_cpus or 'all'}-{max_memory_mib or 'all'}"
        if not backend.client.describe_job_queues(jobQueues=[name])["jobQueues"]:
            resources: dict[str, Any] = {"type": "LOCAL"}
            if max_cpus:
                resources["maxvCpus"] = max_cpus
            if max_memory_mib:
                resources["maxMemoryMiB"] = max_memory_mib
            backend.client.create_compute_environment(computeEnvironmentName=name, computeResources=resources)
            backend.client.create_job_queue(
                jobQueueName=name, priority=10, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": name}]
            )
        backend.queue = name
        return backend
