"""``BatchClient``: the local engine's API, shaped like boto3's ``batch`` client.

Requests and responses are AWS Batch's dicts, so code (and the CLI) written against one works against
the other. Every verb checks its request against AWS Batch's own shapes first (``shapes.validated``), so an
unknown or misspelled parameter is refused, never silently ignored::

    client = BatchClient()
    client.register_job_definition(jobDefinitionName="hello", type="container",
                                   containerProperties={"command": ["echo", "hi"], "vcpus": 1, "memory": 64})
    job = client.submit_job(jobName="hello", jobQueue="default", jobDefinition="hello")
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import jobs as job_ops
from . import registry, views
from .daemon import engine_pid, start_background_engine
from .errors import ClientException
from .model import TERMINAL_NAMES
from .shapes import validated
from .store import Store


class BatchClient:
    def __init__(self, state_dir: str | os.PathLike[str] | None = None, *, autostart_engine: bool = False) -> None:
        """``autostart_engine``: after a submission, start a background engine if none runs."""
        self.store = Store(state_dir)
        self.autostart_engine = autostart_engine
        registry.ensure_defaults(self.store)

    @property
    def state_dir(self) -> Path:
        return self.store.state_dir

    def close(self) -> None:
        self.store.close()

    # --- resources ----------------------------------------------------------------------------------------
    @validated
    def create_compute_environment(self, **request: Any) -> dict[str, Any]:
        return registry.create_compute_environment(self.store, request)

    @validated
    def describe_compute_environments(self, **request: Any) -> dict[str, Any]:
        return registry.describe_compute_environments(self.store, request)

    @validated
    def create_job_queue(self, **request: Any) -> dict[str, Any]:
        return registry.create_job_queue(self.store, request)

    @validated
    def describe_job_queues(self, **request: Any) -> dict[str, Any]:
        return registry.describe_job_queues(self.store, request)

    @validated
    def register_job_definition(self, **request: Any) -> dict[str, Any]:
        return registry.register_job_definition(self.store, request)

    @validated
    def describe_job_definitions(self, **request: Any) -> dict[str, Any]:
        return registry.describe_job_definitions(self.store, request)

    # --- jobs ---------------------------------------------------------------------------------------------
    @validated
    def submit_job(self, **request: Any) -> dict[str, Any]:
        response = job_ops.submit_job(self.store, request)
        self._engine_needed()
        return response

    @validated
    def submit_jobs(self, jobs: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit a graph of jobs atomically; ``dependsOn`` may use ``{"jobName": ...}`` within the batch."""
        response = job_ops.submit_jobs(self.store, jobs)
        self._engine_needed()
        return response

    @validated
    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        return views.describe_jobs(self.store, jobs, engine_alive=self.engine_pid() is not None)

    @validated
    def list_jobs(self, **request: Any) -> dict[str, Any]:
        return views.list_jobs(self.store, request)

    @validated
    def cancel_job(self, jobId: str, reason: str) -> dict[str, Any]:  # noqa: N803 - AWS's parameter names
        return job_ops.stop_job(self.store, jobId, reason, terminate=False)

    @validated
    def terminate_job(self, jobId: str, reason: str) -> dict[str, Any]:  # noqa: N803
        return job_ops.stop_job(self.store, jobId, reason, terminate=True)

    # --- genobatch additions ------------------------------------------------------------------------------
    def engine_pid(self) -> int | None:
        return engine_pid(self.store.state_dir)

    def wait(self, job_ids: list[str], timeout: float | None = None, interval: float = 0.1) -> list[dict[str, Any]]:
        """Block until every job has SUCCEEDED or FAILED; returns their descriptions."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            details = [
                d
                for i in range(0, len(job_ids), views.MAX_DESCRIBE)
                for d in self.describe_jobs(job_ids[i : i + views.MAX_DESCRIBE])["jobs"]
            ]
            if len(details) != len(set(job_ids)):
                missing = set(job_ids) - {d["jobId"] for d in details}
                raise ClientException(f"unknown job id(s): {', '.join(sorted(missing))}")
            if all(d["status"] in TERMINAL_NAMES for d in details):
                return details
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"jobs still running after {timeout} s")
            time.sleep(interval)

    def log_paths(self, job_id: str, attempt: int | None = None) -> tuple[Path, Path]:
        """(stdout, stderr) of an attempt (default: the latest)."""
        row = self.store.conn.execute(
            "SELECT log_dir FROM attempts WHERE job_id=? AND (? IS NULL OR number=?) ORDER BY number DESC LIMIT 1",
            (job_id, attempt, attempt),
        ).fetchone()
        if row is None:
            exists = self.store.conn.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
            if exists is None:
                raise ClientException(f"Job {job_id} does not exist")
            which = f"attempt {attempt}" if attempt else "any attempt"
            raise ClientException(f"Job {job_id} ({exists[0]}) has no logs for {which} yet")
        log_dir = Path(row[0])
        return log_dir / "stdout.log", log_dir / "stderr.log"

    def _engine_needed(self) -> None:
        if self.autostart_engine:
            start_background_engine(self.store.state_dir)
