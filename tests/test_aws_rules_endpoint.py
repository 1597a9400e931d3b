"""The AWS Batch backend's retry rules against the real engine: ``AwsBatchBackend`` (boto3) pointed at the local
engine's AWS Batch endpoint, with faults injected by ``genobatch:fault`` tags on its queues and jobs. The same rules
run on an in-process fake in test_aws_batch_rules.py; here AWS's words come from the engine itself.

Spot reclaim: retried by Batch in the same job, then moved to the on-demand queue; out of memory: resubmitted with
twice the memory up to the cap; stuck in RUNNABLE: reported with Batch's reason, then terminated; a container that
cannot start: failed with that exit reason, not retried.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")

from genobatch.batch import BatchClient, ExitReason, JobStatus
from genobatch.batch.endpoint_service import EndpointService
from genobatch.batch.faultinject import STUCK_REASON
from genobatch.executors.awsbatch.backend import AwsBatchBackend, AwsBatchSettings
from genobatch.executors.awsbatch.clients import Aws
from genobatch.executors.contract import JobSpec, JobState, Recoveries

from .conftest import EngineThread

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class EndpointBackend(AwsBatchBackend):
    """The AWS Batch backend on a local engine (a thread) served as AWS Batch's REST API (another thread)."""

    def __init__(self, state_dir: Path, settings: AwsBatchSettings, queues: dict[str, dict[str, str]]) -> None:
        client = BatchClient(state_dir)
        try:  # the AWS side of `genobatch aws up`: a spot and an on-demand environment, a queue on each
            for kind in ("SPOT", "EC2"):
                client.create_compute_environment(
                    computeEnvironmentName=kind.lower(),
                    type="MANAGED",
                    computeResources={"type": kind, "maxvCpus": 2, "instanceTypes": ["c6i"], "subnets": ["subnet-1"]},
                )
            for name, tags in queues.items():
                environment = "ec2" if name == settings.on_demand_queue else "spot"
                client.create_job_queue(
                    jobQueueName=name,
                    priority=1,
                    computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
                    tags=tags,
                )
        finally:
            client.close()
        self.engine = EngineThread(state_dir)
        try:  # whatever fails here, no engine thread or server is left behind
            self.service = EndpointService(state_dir, wake=self.engine.engine.wake).start()
        except BaseException:
            self.engine.stop()
            raise
        settings.poll_min_seconds, settings.poll_max_seconds = 0.05, 0.2
        try:
            super().__init__(Aws(region="us-east-1", endpoint_url=self.service.url), settings)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.service.close()
        self.engine.stop()


def endpoint_backend(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, queues: dict[str, dict[str, str]] | None = None, **settings: Any
) -> EndpointBackend:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    chosen = AwsBatchSettings(queue="spot", on_demand_queue="ondemand", **settings)
    return EndpointBackend(state_dir, chosen, queues or {"spot": {}, "ondemand": {}})


def wait(backend: AwsBatchBackend, job_id: str, done: bool = True) -> JobState:
    """Poll until the job ended (a guard against hangs, not a timed assertion)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        [state] = backend.poll([job_id])
        if state.done == done and (done or state.status is JobStatus.RUNNABLE):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {state.status}")


@pytest.fixture
def reclaiming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EndpointBackend]:
    """Every attempt on the spot queue is reclaimed at once; the on-demand queue runs jobs normally."""
    queues = {"spot": {"genobatch:fault": "spot-reclaim@0"}, "ondemand": {}}
    backend = endpoint_backend(tmp_path / "state", monkeypatch, queues, spot_attempts=2)
    yield backend
    backend.close()


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EndpointBackend]:
    backend = endpoint_backend(tmp_path / "state", monkeypatch, memory_cap_mib=4096)
    yield backend
    backend.close()


def test_spot_reclaims_are_retried_by_batch_then_moved_on_demand(reclaiming: EndpointBackend) -> None:
    job = reclaiming.submit(JobSpec("align", ["true"], memory_mib=64))
    state = wait(reclaiming, job)
    assert state.status is JobStatus.SUCCEEDED
    assert [a.exit_reason for a in state.attempts] == [ExitReason.LOST] * 3 + [ExitReason.FINISHED]
    assert all(a.status_reason.startswith("Host EC2 (instance i-") for a in state.attempts[:3])  # type: ignore[union-attr]
    assert reclaiming.recoveries() == Recoveries(reclaims=3, moved_to_on_demand=1)
    [moved] = reclaiming.batch.describe_jobs(jobs=[reclaiming.jobs[job].aws_id])["jobs"]
    assert moved["jobQueue"].endswith("job-queue/ondemand")


def test_out_of_memory_is_resubmitted_with_more_memory_up_to_the_cap(backend: EndpointBackend) -> None:
    job = backend.submit(JobSpec("call", ["true"], memory_mib=1024, tags={"genobatch:fault": "oom@0"}))
    state = wait(backend, job)
    assert state.status is JobStatus.FAILED
    assert [a.exit_reason for a in state.attempts] == [ExitReason.MEMLIMIT] * 3
    assert {a.exit_code for a in state.attempts} == {137}
    assert backend.recoveries() == Recoveries(more_memory=2)
    [last] = backend.batch.describe_jobs(jobs=[backend.jobs[job].aws_id])["jobs"]
    assert last["container"]["memory"] == 4096, "1024, then 2048, then the cap"


def test_a_job_stuck_in_runnable_is_reported_with_batch_s_reason_then_terminated(backend: EndpointBackend) -> None:
    job = backend.submit(JobSpec("waits", ["true"], memory_mib=64, tags={"genobatch:fault": "stuck-runnable"}))
    wait(backend, job, done=False)
    [stuck] = backend.stuck(0)
    assert (stuck.job_id, stuck.reason) == (job, STUCK_REASON)
    backend.cancel([job], "stuck in RUNNABLE")
    state = wait(backend, job)
    assert (state.status, state.status_reason, state.attempts) == (JobStatus.FAILED, "stuck in RUNNABLE", [])
    assert backend.stuck(0) == []


def test_a_container_that_cannot_start_fails_with_that_reason(backend: EndpointBackend) -> None:
    job = backend.submit(JobSpec("pull", ["true"], memory_mib=64, tags={"genobatch:fault": "cannot-start"}))
    state = wait(backend, job)
    assert state.status is JobStatus.FAILED and backend.recoveries() == Recoveries()
    [attempt] = state.attempts
    assert attempt.exit_reason is ExitReason.CANNOT_START and attempt.exit_code is None
    assert attempt.container_reason.startswith("CannotStartContainerError: ")  # type: ignore[union-attr]
