"""Ending attempts early: timeouts, terminate/cancel, memory limits, signals. Real processes throughout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from genobatch.batch import BatchClient, ClientException

from .conftest import EngineThread, define, run_until_idle, sh, statuses, submit


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def status_of(client: BatchClient, job_id: str) -> str:
    status: str = client.describe_jobs([job_id])["jobs"][0]["status"]
    return status


def test_timeout_kills_the_attempt_and_is_not_retried(client: BatchClient, state_dir: Path) -> None:
    job = submit(
        client,
        define(client, "slow", ["sleep", "30"]),
        timeout={"attemptDurationSeconds": 1},
        retryStrategy={"attempts": 3},
    )
    started = time.monotonic()
    run_until_idle(state_dir)
    assert time.monotonic() - started < 10
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["status"] == "FAILED"
    assert detail["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(detail["attempts"]) == 1, "AWS Batch does not retry a timed-out attempt"
    assert detail["attempts"][0]["genobatch"]["exitReason"] == "TIMEOUT"


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(client: BatchClient, state_dir: Path) -> None:
    job = submit(
        client,
        define(client, "stubborn", sh("trap '' TERM; sleep 30 & wait; sleep 30")),
        timeout={"attemptDurationSeconds": 1},
    )
    run_until_idle(state_dir)  # kill grace is 1 s in the test settings
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["attempts"][0]["genobatch"]["exitReason"] == "TIMEOUT"
    assert detail["container"]["exitCode"] == 137


def test_terminate_kills_the_whole_process_group(client: BatchClient, engine: EngineThread, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    job = submit(client, define(client, "tree", sh(f"sleep 60 & echo $! > {pid_file}; wait")))
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    grandchild = int(pid_file.read_text())
    client.terminate_job(jobId=job, reason="no longer needed")
    wait_for(lambda: status_of(client, job) == "FAILED")
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["statusReason"] == "no longer needed"
    assert detail["attempts"][0]["genobatch"]["exitReason"] == "TERMINATED"
    wait_for(
        lambda: (
            not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]
        )
    )


def test_cancel_fails_queued_jobs_and_leaves_running_ones(
    client: BatchClient, engine: EngineThread, state_dir: Path
) -> None:
    sleeper = define(client, "sleeper", ["sleep", "30"])
    running = submit(client, sleeper, "running")
    waiting = submit(client, sleeper, "waiting", dependsOn=[{"jobId": running}])
    dependent = submit(client, sleeper, "dependent", dependsOn=[{"jobId": waiting}])
    wait_for(lambda: status_of(client, running) == "RUNNING")
    client.cancel_job(jobId=waiting, reason="changed my mind")
    client.cancel_job(jobId=running, reason="too late")  # AWS: cancel does not stop a RUNNING job
    wait_for(lambda: status_of(client, dependent) == "FAILED")
    assert status_of(client, running) == "RUNNING"
    assert statuses(state_dir, waiting) == ["SUBMITTED", "PENDING", "FAILED"]
    assert client.describe_jobs([waiting])["jobs"][0]["statusReason"] == "changed my mind"
    assert waiting in client.describe_jobs([dependent])["jobs"][0]["statusReason"]
    client.terminate_job(jobId=running, reason="cleanup")
    wait_for(lambda: status_of(client, running) == "FAILED")


def test_cancel_of_an_array_cancels_its_children(client: BatchClient, state_dir: Path) -> None:
    blocker = submit(client, define(client, "b", ["sleep", "30"]), "blocker")
    parent = submit(
        client, define(client, "t", ["true"]), "arr", arrayProperties={"size": 5}, dependsOn=[{"jobId": blocker}]
    )
    client.cancel_job(jobId=parent, reason="stop")
    client.terminate_job(jobId=blocker, reason="stop")
    run_until_idle(state_dir)
    detail = client.describe_jobs([parent])["jobs"][0]
    assert detail["status"] == "FAILED"
    assert detail["arrayProperties"]["statusSummary"]["FAILED"] == 5


def test_exceeding_memory_is_reported_as_out_of_memory(client: BatchClient, state_dir: Path) -> None:
    grow = "import time\nx = bytearray(400 * 2**20)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(10)"
    job = submit(
        client,
        define(
            client,
            "hog",
            ["python3", "-c", grow],
            memory=100,
            retryStrategy={"attempts": 2, "evaluateOnExit": [{"onReason": "OutOfMemoryError*", "action": "EXIT"}]},
        ),
    )
    run_until_idle(state_dir)
    detail = client.describe_jobs([job])["jobs"][0]
    attempt = detail["attempts"][0]
    assert detail["status"] == "FAILED" and len(detail["attempts"]) == 1, "the onReason EXIT rule matched"
    assert attempt["genobatch"]["exitReason"] == "MEMLIMIT"
    assert attempt["container"]["reason"].startswith("OutOfMemoryError: Container killed due to memory usage")
    assert attempt["container"]["exitCode"] == 137


def test_a_signal_from_elsewhere_is_reported_as_killed(client: BatchClient, state_dir: Path) -> None:
    job = submit(client, define(client, "selfkill", sh("kill -SEGV $$")))
    run_until_idle(state_dir)
    attempt = client.describe_jobs([job])["jobs"][0]["attempts"][0]
    assert attempt["genobatch"]["exitReason"] == "KILLED"
    assert attempt["container"]["exitCode"] == 128 + 11
    assert attempt["container"]["reason"] == "Killed by signal SIGSEGV"


def test_stop_needs_a_reason_and_an_existing_job(client: BatchClient) -> None:
    with pytest.raises(ClientException, match="does not exist"):
        client.cancel_job(jobId="nope", reason="x")
    job = submit(client, define(client, "t", ["true"]))
    with pytest.raises(ClientException, match="reason is required"):
        client.cancel_job(jobId=job, reason="")
    assert os.path.exists(client.state_dir / "state.db")
