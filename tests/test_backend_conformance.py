"""One conformance suite for every backend (after Toil's abstract batch-system test).

Tests speak only the ``Backend`` contract: ``submit``/``poll``/``cancel`` and ``Capabilities``. They use no
shared filesystem (outcomes are read from exit codes), so remote backends (AWS Batch, Slurm) can run them
unchanged: add a factory to ``BACKENDS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from genobatch.batch import ClientException, ExitReason, JobStatus
from genobatch.batch.container import ContainerRuntime
from genobatch.executors.contract import Backend, JobSpec, JobState
from genobatch.executors.local import LocalBackend
from genobatch.executors.routed import RoutedBackend
from genobatch.executors.slurm import Settings as SlurmSettings
from genobatch.executors.slurm.backend import SlurmBackend

from .aws_helpers import batch_on_moto, moto_server  # noqa: F401 - the fixture
from .conftest import FAST
from .container_helpers import RUNNER, require_podman


class PodmanBackend(LocalBackend):
    """The local engine running every job in a container (the runner image has sh, sleep, true, false)."""

    def submit(self, spec: JobSpec) -> str:
        return super().submit(replace(spec, image=spec.image or RUNNER))


def podman_backend(request: pytest.FixtureRequest, tmp: Path) -> Backend:
    require_podman()
    return PodmanBackend(tmp / "state", engine="thread", settings=FAST, runtime=ContainerRuntime("podman"))


def awsbatch_backend(request: pytest.FixtureRequest, tmp: Path) -> Backend:
    """AWS Batch, as moto serves it on loopback, running the jobs in podman containers."""
    return batch_on_moto(request.getfixturevalue("moto_server"), "conf")


def endpoint_backend(request: pytest.FixtureRequest, tmp: Path) -> Backend:
    """The AWS Batch backend (boto3) on the local engine's AWS Batch endpoint: the engine as AWS Batch."""
    from .test_aws_rules_endpoint import endpoint_backend as on_endpoint

    return on_endpoint(tmp / "state", request.getfixturevalue("monkeypatch"))


def slurm_backend(request: pytest.FixtureRequest, tmp: Path) -> Backend:
    """A real Slurm cluster on this machine; no retries of timeouts here (the contract's timeout test)."""
    request.getfixturevalue("slurm_cluster")
    return SlurmBackend(SlurmSettings(poll_seconds=0.5, retries=0), tmp / "slurm")


def routed_backend(request: pytest.FixtureRequest, tmp: Path) -> Backend:
    """Jobs with an image to one backend, the others (all of these) to another: as AWS Batch runs MultiQC."""
    return RoutedBackend(LocalBackend(tmp / "remote", settings=FAST), LocalBackend(tmp / "local", settings=FAST))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "local": lambda request, tmp: LocalBackend(tmp / "state", engine="thread", settings=FAST),
    "local-podman": podman_backend,
    "awsbatch": awsbatch_backend,
    "awsbatch-endpoint": endpoint_backend,
    "slurm": slurm_backend,
    "routed": routed_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    instance = BACKENDS[request.param](request, tmp_path)
    yield instance
    instance.close()


def wait(backend: Backend, job_ids: list[str], timeout: float = 60) -> list[JobState]:
    deadline = time.monotonic() + timeout
    while True:
        states = backend.poll(job_ids)
        if len(states) == len(job_ids) and all(state.done for state in states):
            return states
        assert time.monotonic() < deadline, f"jobs not done: {states}"
        time.sleep(0.1)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


class TestBackendContract:
    def test_success(self, backend: Backend) -> None:
        [state] = wait(backend, [backend.submit(JobSpec("ok", ["true"], memory_mib=64))])
        assert state.status is JobStatus.SUCCEEDED and state.exit_code == 0
        assert [a.exit_reason for a in state.attempts] == [ExitReason.FINISHED]

    def test_failure_reports_exit_code(self, backend: Backend) -> None:
        [state] = wait(backend, [backend.submit(JobSpec("bad", sh("exit 3"), memory_mib=64))])
        assert state.status is JobStatus.FAILED and state.exit_code == 3
        assert state.attempts[-1].exit_reason is ExitReason.FAILED

    def test_dependency_runs_after_and_failure_propagates(self, backend: Backend) -> None:
        first = backend.submit(JobSpec("first", ["sleep", "0.2"], memory_mib=64))
        second = backend.submit(JobSpec("second", ["true"], memory_mib=64, depends_on=[first]))
        failing = backend.submit(JobSpec("failing", ["false"], memory_mib=64))
        blocked = backend.submit(JobSpec("blocked", ["true"], memory_mib=64, depends_on=[failing]))
        a, b, _, d = wait(backend, [first, second, failing, blocked])
        assert b.attempts[0].started_at_ms is not None and a.attempts[0].stopped_at_ms is not None
        assert b.attempts[0].started_at_ms >= a.attempts[0].stopped_at_ms
        assert d.status is JobStatus.FAILED and d.attempts == []
        assert d.status_reason is not None

    def test_array_children_get_their_index(self, backend: Backend) -> None:
        parent = backend.submit(JobSpec("arr", sh('exit "$AWS_BATCH_JOB_ARRAY_INDEX"'), memory_mib=64, array_size=3))
        children = wait(backend, [f"{parent}:{i}" for i in range(3)])
        assert [c.exit_code for c in children] == [0, 1, 2]
        assert wait(backend, [parent])[0].status is JobStatus.FAILED

    def test_n_to_n_and_sequential_arrays(self, backend: Backend) -> None:
        if not (backend.capabilities.n_to_n_dependencies and backend.capabilities.sequential_dependencies):
            pytest.skip(f"{backend.capabilities.name} declares no N_TO_N/SEQUENTIAL dependencies")
        first = backend.submit(JobSpec("a", ["sleep", "0.1"], memory_mib=64, array_size=2, sequential=True))
        second = backend.submit(JobSpec("b", ["true"], memory_mib=64, array_size=2, n_to_n_with=first))
        a0, a1, b0, b1 = wait(backend, [f"{first}:0", f"{first}:1", f"{second}:0", f"{second}:1"])
        assert a1.attempts[0].started_at_ms >= a0.attempts[0].stopped_at_ms  # type: ignore[operator]
        assert b0.attempts[0].started_at_ms >= a0.attempts[0].stopped_at_ms  # type: ignore[operator]
        assert b1.attempts[0].started_at_ms >= a1.attempts[0].stopped_at_ms  # type: ignore[operator]

    def test_retries_until_an_attempt_succeeds(self, backend: Backend) -> None:
        spec = JobSpec("flaky", sh('[ "$AWS_BATCH_JOB_ATTEMPT" -ge 2 ]'), memory_mib=64, retry_attempts=3)
        [state] = wait(backend, [backend.submit(spec)])
        assert state.status is JobStatus.SUCCEEDED
        assert [a.number for a in state.attempts] == [1, 2]

    def test_cancel_queued_and_terminate_running(self, backend: Backend) -> None:
        running = backend.submit(JobSpec("long", ["sleep", "60"], memory_mib=64))
        queued = backend.submit(JobSpec("queued", ["true"], memory_mib=64, depends_on=[running]))
        deadline = time.monotonic() + 30
        while backend.poll([running])[0].status is not JobStatus.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        backend.cancel([queued, running], "test cancels")
        long_state, queued_state = wait(backend, [running, queued])
        assert queued_state.status is JobStatus.FAILED and queued_state.attempts == []
        assert long_state.status is JobStatus.FAILED
        if backend.capabilities.terminates_running_jobs:
            assert long_state.attempts[-1].exit_reason is ExitReason.TERMINATED

    def test_a_job_that_can_never_run_is_refused(self, backend: Backend) -> None:
        with pytest.raises(ClientException, match="can ever provide"):
            backend.submit(JobSpec("huge", ["true"], vcpus=100_000, memory_mib=64))

    def test_timeout(self, backend: Backend, request: pytest.FixtureRequest) -> None:
        if request.node.callspec.params["backend"] == "awsbatch-endpoint":
            pytest.skip(
                "AWS's 60 s minimum, as on moto (the awsbatch parameter): the engine's timeouts are the local's"
            )
        seconds = backend.capabilities.min_timeout_seconds
        [state] = wait(
            backend,
            [backend.submit(JobSpec("slow", ["sleep", str(seconds + 30)], memory_mib=64, timeout_seconds=seconds))],
            timeout=seconds + 60,
        )
        assert state.status is JobStatus.FAILED
        assert state.attempts[-1].exit_reason is ExitReason.TIMEOUT


def test_local_backend_reuses_one_job_definition_per_image_and_resources(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state", engine="none")
    try:
        for name in ("a", "b", "c"):
            backend.submit(JobSpec(name, ["echo", name], memory_mib=64))
        backend.submit(JobSpec("d", ["true"], memory_mib=128))
        names = [d["jobDefinitionName"] for d in backend.client.describe_job_definitions()["jobDefinitions"]]
        assert len(names) == 2 and len(set(names)) == 2, "one definition per (image, vCPU, memory), not per job"
    finally:
        backend.close()
