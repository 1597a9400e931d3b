"""Injected faults (``genobatch:fault`` tags): the real engine fails attempts the way AWS Batch does, per job, per
job definition or per queue, for the first N attempts or all. Real engine, real processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genobatch.batch import BatchClient, ClientException, Engine
from genobatch.batch.container import ContainerRuntime
from genobatch.batch.faultinject import FAULTS, STUCK_REASON, parse

from .conftest import FAST, EngineThread, define, run_until_idle, sh, submit
from .container_helpers import RUNNER, require_podman

RECLAIMED = re.compile(r"^Host EC2 \(instance i-[0-9a-f]{17}\) terminated\.$")
OOM = "OutOfMemoryError: Container killed due to memory usage"


def attempts(client: BatchClient, job_id: str) -> list[dict[str, object]]:
    return client.describe_jobs([job_id])["jobs"][0]["attempts"]  # type: ignore[no-any-return]


def test_fault_values_are_parsed_or_refused_with_the_valid_ones() -> None:
    fault = parse("spot-reclaim:2@0.5", "tags")
    assert (fault.kind.name, fault.attempts, fault.delay) == ("spot-reclaim", 2, 0.5)
    assert fault.applies_to(2) and not fault.applies_to(3)
    assert parse("oom", "tags").attempts is None
    for bad, words in (
        ("spot", "one of spot-reclaim, oom, cannot-start, stuck-runnable"),
        ("stuck-runnable:1", "takes no :N"),
        ("cannot-start@2", "takes no @SECONDS"),
        ("oom:0", "counts attempts from 1"),
    ):
        with pytest.raises(ClientException, match=re.escape(words)):
            parse(bad, "tags")
    assert set(FAULTS) == {"spot-reclaim", "oom", "cannot-start", "stuck-runnable"}


def test_spot_reclaim_of_the_first_attempt_then_a_normal_run(client: BatchClient, state_dir: Path) -> None:
    """Retried by an evaluateOnExit rule written for AWS (``Host EC2*``), as the AWS Batch backend writes it."""
    definition = define(client, "echo", sh("echo ran"))
    retry = {"attempts": 3, "evaluateOnExit": [{"onStatusReason": "Host EC2*", "action": "RETRY"}]}
    job = submit(client, definition, tags={"genobatch:fault": "spot-reclaim:1@0"}, retryStrategy=retry)
    run_until_idle(state_dir)
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["status"] == "SUCCEEDED"
    first, second = detail["attempts"]
    assert RECLAIMED.match(first["statusReason"]) and "exitCode" in first["container"]
    assert first["container"]["exitCode"] is None and first["genobatch"]["exitReason"] == "LOST"
    assert second["container"]["exitCode"] == 0


def test_out_of_memory_on_every_attempt_from_the_job_definition(client: BatchClient, state_dir: Path) -> None:
    definition = define(client, "hog", sh("sleep 30; echo finished"), tags={"genobatch:fault": "oom@0.2"})
    job = submit(client, definition, retryStrategy={"attempts": 2})
    run_until_idle(state_dir)
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["status"] == "FAILED" and len(detail["attempts"]) == 2
    for attempt in detail["attempts"]:
        assert attempt["container"]["exitCode"] == 137 and attempt["container"]["reason"] == OOM
        assert attempt["statusReason"] == OOM
        assert Path(attempt["genobatch"]["stdout"]).read_text() == "", "killed after 0.2 s, before its echo"


def test_cannot_start_from_the_queue_runs_no_command(client: BatchClient, state_dir: Path, tmp_path: Path) -> None:
    client.create_job_queue(
        jobQueueName="broken",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}],
        tags={"genobatch:fault": "cannot-start"},
    )
    marker = tmp_path / "ran"
    definition = define(client, "touch", ["touch", str(marker)])
    job = client.submit_job(jobName="t", jobQueue="broken", jobDefinition=definition)["jobId"]
    run_until_idle(state_dir)
    [attempt] = attempts(client, job)
    assert attempt["container"]["reason"].startswith("CannotStartContainerError: ")  # type: ignore[index]
    assert attempt["statusReason"] == "Task failed to start" and not marker.exists()
    assert client.describe_jobs([job])["jobs"][0]["status"] == "FAILED"


def test_stuck_runnable_waits_until_terminated_while_others_run(client: BatchClient, state_dir: Path) -> None:
    definition = define(client, "ok", ["true"])
    stuck = submit(client, definition, "stuck", tags={"genobatch:fault": "stuck-runnable"})
    other = submit(client, definition, "other")
    engine = EngineThread(state_dir)
    try:
        client.wait([other], timeout=30)
        detail = client.describe_jobs([stuck])["jobs"][0]
        assert (detail["status"], detail["statusReason"]) == ("RUNNABLE", STUCK_REASON)
        client.terminate_job(jobId=stuck, reason="stuck")
        [done] = client.wait([stuck], timeout=30)
        assert (done["status"], done["statusReason"], done["attempts"]) == ("FAILED", "stuck", [])
    finally:
        engine.stop()


def test_job_tags_win_and_bad_tags_are_refused_before_anything_is_stored(client: BatchClient, state_dir: Path) -> None:
    definition = define(client, "ok", ["true"], tags={"genobatch:fault": "cannot-start"})
    job = submit(client, definition, tags={"genobatch:fault": "oom:1@0"}, retryStrategy={"attempts": 2})
    run_until_idle(state_dir)
    first, second = attempts(client, job)
    assert first["container"]["reason"] == OOM and second["container"]["exitCode"] == 0  # type: ignore[index]
    with pytest.raises(ClientException, match="is not a fault"):
        submit(client, definition, tags={"genobatch:fault": "reclaim"})
    with pytest.raises(ClientException, match="is not a fault"):
        define(client, "bad", ["true"], tags={"genobatch:fault": "nope"})
    with pytest.raises(ClientException, match="is not a fault"):
        client.create_job_queue(
            jobQueueName="q",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}],
            tags={"genobatch:fault": "nope"},
        )


def test_a_timed_fault_kills_a_container_too(client: BatchClient, state_dir: Path) -> None:
    """The fault's kill goes through the runtime (``podman kill``), so a containerised attempt ends as well."""
    require_podman()
    client.register_job_definition(
        jobDefinitionName="sleeper",
        type="container",
        containerProperties={"image": RUNNER, "command": sh("sleep 60; echo finished"), "vcpus": 1, "memory": 64},
    )
    job = submit(client, "sleeper", tags={"genobatch:fault": "spot-reclaim@0.5"})
    Engine(state_dir, runtime=ContainerRuntime("podman"), settings=FAST).run(until_idle=True)
    [attempt] = attempts(client, job)
    assert RECLAIMED.match(attempt["statusReason"])  # type: ignore[arg-type]
    assert attempt["genobatch"]["runtime"] == "podman"  # type: ignore[index]
    assert Path(attempt["genobatch"]["stdout"]).read_text() == "", "killed, before its echo"  # type: ignore[index]
