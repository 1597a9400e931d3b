"""The AWS Batch backend's own rules, on an in-process fake of the Batch API (unit tests only: moto cannot
reclaim a spot instance or kill a container for memory; the conformance and end-to-end tests use moto).

Covered: AWS's words translated into exit reasons; a spot reclaim retried by Batch, then moved to the
on-demand queue with its waiting dependents; out-of-memory resubmitted with twice the memory up to the cap;
application errors not retried unless asked; jobs that can never run refused; fan-in beyond 20 through
barrier jobs; one job definition per image; SubmitJob paced by the token bucket.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from genobatch.batch.errors import ClientException
from genobatch.batch.model import ExitReason, JobStatus
from genobatch.executors.awsbatch.backend import AwsBatchBackend, AwsBatchSettings, TokenBucket, exit_reason
from genobatch.executors.contract import JobSpec, Recoveries

OOM = {"container": {"exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"}}
RECLAIM = {"container": {}, "statusReason": "Host EC2 (instance i-0abc) terminated."}
APP_ERROR = {"container": {"exitCode": 2}, "statusReason": "Essential container in task exited"}


class FakeBatch:
    def __init__(self) -> None:
        self.ids = (f"job-{i}" for i in itertools.count())
        self.submitted: dict[str, dict[str, Any]] = {}
        self.details: dict[str, dict[str, Any]] = {}
        self.terminated: list[str] = []
        self.definitions: list[dict[str, Any]] = []

    def submit_job(self, **request: Any) -> dict[str, Any]:
        job_id = next(self.ids)
        self.submitted[job_id] = request
        self.details[job_id] = {"jobId": job_id, "status": "RUNNABLE", "attempts": []}
        return {"jobId": job_id}

    def end(self, job_id: str, status: str, *attempts: dict[str, Any]) -> None:
        self.details[job_id] = {"jobId": job_id, "status": status, "attempts": list(attempts)}

    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        assert len(jobs) <= 100
        return {"jobs": [self.details[j] for j in jobs]}

    def terminate_job(self, jobId: str, reason: str) -> None:  # noqa: N803 - boto3's name
        self.terminated.append(jobId)

    def describe_job_definitions(self, **_: Any) -> dict[str, Any]:
        return {"jobDefinitions": []}

    def register_job_definition(self, **request: Any) -> dict[str, Any]:
        self.definitions.append(request)
        return {"revision": 1}

    def describe_job_queues(self, jobQueues: list[str]) -> dict[str, Any]:  # noqa: N803
        return {"jobQueues": [{"computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]}]}

    def describe_compute_environments(self, computeEnvironments: list[str]) -> dict[str, Any]:  # noqa: N803
        resources = {"maxvCpus": 16, "instanceTypes": ["c6i", "m6i"]}
        return {"computeEnvironments": [{"computeResources": resources}]}


class FakeAws:
    def __init__(self) -> None:
        self.batch = FakeBatch()

    def client(self, service: str) -> Any:
        return self.batch


@pytest.fixture
def fake() -> tuple[AwsBatchBackend, FakeBatch]:
    aws = FakeAws()
    settings = AwsBatchSettings("spot-q", on_demand_queue="od-q", spot_attempts=2, memory_cap_mib=4096)
    settings.poll_min_seconds = 0.0
    return AwsBatchBackend(aws, settings), aws.batch  # type: ignore[arg-type]


def test_exit_reasons_follow_aws_words() -> None:
    assert exit_reason("FAILED", OOM) is ExitReason.MEMLIMIT
    assert exit_reason("FAILED", RECLAIM) is ExitReason.LOST
    assert exit_reason("FAILED", {"statusReason": "Job attempt duration exceeded timeout"}) is ExitReason.TIMEOUT
    cannot = {"container": {"reason": "CannotPullContainerError: pull image manifest has been retried 5 time(s)"}}
    assert exit_reason("FAILED", cannot) is ExitReason.CANNOT_START
    assert exit_reason("FAILED", APP_ERROR) is ExitReason.FAILED
    assert exit_reason("SUCCEEDED", {"container": {"exitCode": 0}}) is ExitReason.FINISHED


def test_spot_reclaims_are_retried_by_batch_then_moved_on_demand_with_their_dependents(
    fake: tuple[AwsBatchBackend, FakeBatch],
) -> None:
    backend, batch = fake
    first = backend.submit(JobSpec("align", ["true"], image="img"))
    second = backend.submit(JobSpec("merge", ["true"], image="img", depends_on=[first]))
    rules = batch.submitted[first]["retryStrategy"]
    assert rules["attempts"] == 3 and rules["evaluateOnExit"][0] == {"onStatusReason": "Host EC2*", "action": "RETRY"}
    batch.end(first, "FAILED", RECLAIM, RECLAIM, RECLAIM)  # Batch retried twice, then gave up
    state, _ = backend.poll([first, second])
    assert state.status is JobStatus.RUNNABLE and not state.done, "resubmitted, not failed"
    new_first = backend.jobs[first].aws_id
    assert new_first != first and batch.submitted[new_first]["jobQueue"] == "od-q"
    assert batch.terminated == [second], "the dependent that waited on the reclaimed job"
    new_second = backend.jobs[second].aws_id
    assert batch.submitted[new_second]["dependsOn"] == [{"jobId": new_first}]
    assert backend.recoveries() == Recoveries(reclaims=3, moved_to_on_demand=1), "reported separately, by kind"
    batch.end(new_first, "SUCCEEDED", {"container": {"exitCode": 0}})
    [done] = backend.poll([first])
    assert done.status is JobStatus.SUCCEEDED
    assert [a.exit_reason for a in done.attempts] == [ExitReason.LOST] * 3 + [ExitReason.FINISHED]


def test_out_of_memory_is_resubmitted_with_more_memory_up_to_the_cap(fake: tuple[AwsBatchBackend, FakeBatch]) -> None:
    backend, batch = fake
    job = backend.submit(JobSpec("call", ["true"], memory_mib=1500, image="img"))
    memories = []
    for _ in range(4):
        aws_id = backend.jobs[job].aws_id
        memory = next(
            r for r in batch.submitted[aws_id]["containerOverrides"]["resourceRequirements"] if r["type"] == "MEMORY"
        )
        memories.append(int(memory["value"]))
        batch.end(aws_id, "FAILED", OOM)
        state = backend.poll([job])[0]
    assert memories == [1500, 3000, 4096, 4096][: len(memories)]
    assert state.status is JobStatus.FAILED and state.attempts[-1].exit_reason is ExitReason.MEMLIMIT
    assert backend.recoveries().more_memory == 2


def test_application_errors_are_not_retried_unless_asked(fake: tuple[AwsBatchBackend, FakeBatch]) -> None:
    backend, batch = fake
    job = backend.submit(JobSpec("bwa", ["false"], image="img"))
    batch.end(job, "FAILED", APP_ERROR)
    [state] = backend.poll([job])
    assert state.status is JobStatus.FAILED and state.exit_code is None and state.attempts[-1].exit_code == 2
    backend.settings.retry_failures = 1
    other = backend.submit(JobSpec("bwa2", ["false"], image="img"))
    batch.end(other, "FAILED", APP_ERROR)
    assert backend.poll([other])[0].status is JobStatus.RUNNABLE
    batch.end(backend.jobs[other].aws_id, "FAILED", APP_ERROR)
    assert backend.poll([other])[0].status is JobStatus.FAILED


def test_a_job_that_can_never_run_is_refused_with_the_reason(fake: tuple[AwsBatchBackend, FakeBatch]) -> None:
    backend, batch = fake
    with pytest.raises(ClientException, match=r"needs 32 vCPU.*can ever provide \(16 vCPU"):
        backend.submit(JobSpec("big", ["true"], vcpus=32, image="img"))
    with pytest.raises(ClientException, match=r"MiB, more than"):
        backend.submit(JobSpec("huge", ["true"], memory_mib=600 * 1024, image="img"))
    assert batch.submitted == {}


def test_fan_in_beyond_twenty_is_refused_and_definitions_are_reused(fake: tuple[AwsBatchBackend, FakeBatch]) -> None:
    """Beyond AWS's 20 ``dependsOn``, the pipeline's driver waits through barriers (test_driver.py)."""
    backend, batch = fake
    assert backend.capabilities.max_depends_on == 20
    parts = [backend.submit(JobSpec(f"part{i}", ["true"], image="img")) for i in range(21)]
    backend.submit(JobSpec("gather", ["true"], image="img", depends_on=parts[:20]))
    with pytest.raises(ClientException, match="depends on more than 20 jobs"):
        backend.submit(JobSpec("too-many", ["true"], image="img", depends_on=parts))
    assert len(batch.definitions) == 1, "one job definition for the image, reused by 22 jobs"


def test_token_bucket_paces_calls() -> None:
    bucket = TokenBucket(rate=200.0, burst=5)
    start = time.monotonic()
    for _ in range(25):
        bucket.take()
    elapsed = time.monotonic() - start
    assert elapsed >= 20 / 200 * 0.9, "after the burst of 5, 20 calls at 200/s take at least 0.1 s"


def test_a_job_long_in_runnable_is_reported_with_batch_s_reason(fake: tuple[AwsBatchBackend, FakeBatch]) -> None:
    backend, batch = fake
    job = backend.submit(JobSpec("waits", ["true"], image="img"))
    reason = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement is not valid"
    batch.details[job]["statusReason"] = reason
    backend.poll([job])
    assert backend.stuck(3600) == []
    [stuck] = backend.stuck(0)
    assert stuck.job_id == job and stuck.reason == reason and stuck.seconds >= 0
    batch.end(job, "SUCCEEDED", {"container": {"exitCode": 0}})
    backend.poll([job])
    assert backend.stuck(0) == []


def test_an_out_of_memory_child_resubmits_its_array_with_more_memory(fake: tuple[AwsBatchBackend, FakeBatch]) -> None:
    backend, batch = fake
    array = backend.submit(JobSpec("align", ["true"], memory_mib=1024, image="img", array_size=3))
    merge = backend.submit(JobSpec("merge", ["true"], image="img", depends_on=[array]))
    children = [f"{array}:{i}" for i in range(3)]
    batch.details[f"{array}:0"] = {
        "jobId": f"{array}:0",
        "status": "SUCCEEDED",
        "attempts": [{"container": {"exitCode": 0}}],
    }
    batch.details[f"{array}:1"] = {"jobId": f"{array}:1", "status": "FAILED", "attempts": [OOM]}
    batch.details[f"{array}:2"] = {"jobId": f"{array}:2", "status": "FAILED", "attempts": [OOM]}
    first, second, third = backend.poll(children)
    assert first.status is JobStatus.SUCCEEDED
    assert second.status is JobStatus.RUNNABLE and third.status is JobStatus.RUNNABLE, "one resubmission for both"
    new_array = backend.jobs[array].aws_id
    assert new_array != array and backend.recoveries().more_memory == 1
    request = batch.submitted[new_array]
    assert request["arrayProperties"] == {"size": 3}
    assert {"type": "MEMORY", "value": "2048"} in request["containerOverrides"]["resourceRequirements"]
    assert batch.terminated == [merge] and batch.submitted[backend.jobs[merge].aws_id]["dependsOn"] == [
        {"jobId": new_array}
    ]
    batch.details[f"{new_array}:1"] = {
        "jobId": f"{new_array}:1",
        "status": "SUCCEEDED",
        "attempts": [{"container": {"exitCode": 0}}],
    }
    [done] = backend.poll([f"{array}:1"])
    assert done.status is JobStatus.SUCCEEDED
    assert [a.exit_reason for a in done.attempts] == [ExitReason.MEMLIMIT, ExitReason.FINISHED]
