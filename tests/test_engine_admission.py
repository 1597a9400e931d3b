"""Resource admission with real processes: checked from the recorded start/stop times of every attempt."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from genobatch.batch import BatchClient, ClientException

from .conftest import EngineThread, define, run_until_idle


def make_queue(client: BatchClient, name: str, vcpus: float, memory: int | None = None, priority: int = 1) -> str:
    resources: dict[str, object] = {"type": "LOCAL", "maxvCpus": vcpus}
    if memory is not None:
        resources["maxMemoryMiB"] = memory
    client.create_compute_environment(computeEnvironmentName=f"{name}-ce", computeResources=resources)
    client.create_job_queue(
        jobQueueName=name, priority=priority, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": f"{name}-ce"}]
    )
    return name


def peak_usage(client: BatchClient, job_ids: list[str], key: str) -> float:
    """The most of ``vcpus``/``memory`` ever held at once, from the attempts' recorded start and stop times."""
    events: list[tuple[int, int, float]] = []
    for detail in client.describe_jobs(job_ids)["jobs"]:
        amount = float(detail["container"][key])
        for attempt in detail["attempts"]:
            events.append((attempt["startedAt"], 1, amount))
            events.append((attempt["stoppedAt"], 0, -amount))  # at equal times, stops count first
    in_use = peak = 0.0
    for _, _, delta in sorted(events):
        in_use += delta
        peak = max(peak, in_use)
    return peak


def test_vcpus_in_use_never_exceed_the_environment(client: BatchClient, state_dir: Path) -> None:
    queue = make_queue(client, "small", vcpus=2)
    one, two, half = (define(client, f"v{n}", ["sleep", "0.2"], vcpus=v) for n, v in (("1", 1), ("2", 2), ("h", 0.5)))
    jobs = [
        client.submit_job(jobName=f"j{i}", jobQueue=queue, jobDefinition=(one, two, half)[i % 3])["jobId"]
        for i in range(15)
    ]
    run_until_idle(state_dir)
    details = client.describe_jobs(jobs)["jobs"]
    assert all(d["status"] == "SUCCEEDED" for d in details)
    assert peak_usage(client, jobs, "vcpus") <= 2.0
    assert peak_usage(client, jobs, "vcpus") >= 1.5, "half-vCPU jobs do share the environment"


def test_memory_in_use_never_exceeds_the_environment(client: BatchClient, state_dir: Path) -> None:
    queue = make_queue(client, "tight", vcpus=2, memory=100)
    definition = define(client, "m60", ["sleep", "0.2"], memory=60)
    jobs = [client.submit_job(jobName=f"m{i}", jobQueue=queue, jobDefinition=definition)["jobId"] for i in range(4)]
    run_until_idle(state_dir)
    assert peak_usage(client, jobs, "memory") <= 100, "two 60 MiB jobs never run together in 100 MiB"


def test_higher_priority_queue_runs_first(client: BatchClient, state_dir: Path) -> None:
    client.create_compute_environment(computeEnvironmentName="one", computeResources={"type": "LOCAL", "maxvCpus": 1})
    for name, priority in (("low", 1), ("high", 100)):
        client.create_job_queue(
            jobQueueName=name, priority=priority, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "one"}]
        )
    definition = define(client, "s", ["sleep", "0.05"])
    low = [client.submit_job(jobName="l", jobQueue="low", jobDefinition=definition)["jobId"] for _ in range(3)]
    high = [client.submit_job(jobName="h", jobQueue="high", jobDefinition=definition)["jobId"] for _ in range(3)]
    run_until_idle(state_dir)
    started = {d["jobId"]: d["startedAt"] for d in client.describe_jobs(low + high)["jobs"]}
    assert max(started[j] for j in high) <= min(started[j] for j in low)


def test_a_job_that_can_never_fit_is_refused_at_submission(client: BatchClient) -> None:
    queue = make_queue(client, "two", vcpus=2, memory=1000)
    big = define(client, "big", ["true"], vcpus=4)
    with pytest.raises(
        ClientException, match=r"needs 4 vCPU and 64 MiB.*can ever provide.*two-ce: 2 vCPU and 1000 MiB"
    ):
        client.submit_job(jobName="big", jobQueue=queue, jobDefinition=big)
    small = define(client, "small", ["true"])
    with pytest.raises(ClientException, match="needs 1 vCPU and 4000 MiB"):
        client.submit_job(
            jobName="s",
            jobQueue=queue,
            jobDefinition=small,
            containerOverrides={"resourceRequirements": [{"type": "MEMORY", "value": "4000"}]},
        )
    assert client.list_jobs(jobQueue=queue, jobStatus="SUBMITTED")["jobSummaryList"] == []


def test_describe_says_why_a_runnable_job_waits(client: BatchClient, state_dir: Path) -> None:
    queue = make_queue(client, "solo", vcpus=1, memory=1000)
    sleeper = define(client, "sleeper", ["sleep", "30"])
    first = client.submit_job(jobName="first", jobQueue=queue, jobDefinition=sleeper)["jobId"]
    second = client.submit_job(jobName="second", jobQueue=queue, jobDefinition=sleeper)["jobId"]
    reason = client.describe_jobs([second])["jobs"][0]["statusReason"]
    assert "no genobatch engine is running" in reason and "genobatch engine start" in reason
    runner = EngineThread(state_dir)
    try:
        deadline = time.monotonic() + 20
        while client.describe_jobs([first])["jobs"][0]["status"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        detail = client.describe_jobs([second])["jobs"][0]
        assert detail["status"] == "RUNNABLE"
        assert detail["statusReason"] == (
            "Waiting for resources: needs 1 vCPU and 64 MiB; solo-ce has 0 of 1 vCPU and 936 of 1000 MiB free"
        )
    finally:
        client.terminate_job(jobId=first, reason="done")
        client.terminate_job(jobId=second, reason="done")
        runner.stop()


def test_a_second_engine_on_the_same_state_directory_is_refused(client: BatchClient, state_dir: Path) -> None:
    runner = EngineThread(state_dir)
    try:
        deadline = time.monotonic() + 10
        while client.engine_pid() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = subprocess.run(
            [sys.executable, "-m", "genobatch", "engine", "run", "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "already scheduling jobs from" in second.stderr and "genobatch engine stop" in second.stderr
    finally:
        runner.stop()
