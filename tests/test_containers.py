"""Jobs in containers with real podman and the real tool images: limits, isolation, non-root, out-of-memory,
the errors that say what to run, crash recovery, and the pipeline's VCFs equal to the host tools' VCFs.

Needs podman and the images (``./bootstrap test`` sets both up). Without them these tests skip, unless
``GENOBATCH_REQUIRE_PODMAN=1`` (set by CI), where a missing podman is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genobatch import images
from genobatch.batch.container import STATE_LABEL, ContainerRuntime, RuntimeUnavailable, check_runtime
from genobatch.batch.model import ExitReason, JobStatus, Mount
from genobatch.executors import runtimes
from genobatch.executors.contract import JobSpec, JobState
from genobatch.executors.local import LocalBackend
from genobatch.images import image_ref
from genobatch.pipeline.library import Library, needs
from genobatch.problems import InputError

from .conftest import FAST
from .container_helpers import RUNNER
from .pipeline_helpers import DATA, DATASETS, needs_tools, records, run_pipeline, trace

LIBRARY = Library.load()


@pytest.fixture
def backend(podman: None, tmp_path: Path) -> Iterator[LocalBackend]:
    instance = LocalBackend(tmp_path / "state", settings=FAST, runtime=ContainerRuntime("podman"))
    yield instance
    instance.close()


def wait(backend: LocalBackend, job_id: str, timeout: float = 120) -> JobState:
    deadline = time.monotonic() + timeout
    while not (state := backend.poll([job_id])[0]).done:
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return state


def stdout_of(state: JobState) -> str:
    log = state.attempts[-1].log
    assert log is not None
    return Path(log).with_name("stdout.log").read_text()


CGROUP_LIMITS = (
    "if [ -f /sys/fs/cgroup/cpu.max ]; then cut -d' ' -f1 /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/memory.max; "
    "else cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes; fi"
)


def test_limits_user_network_and_mounts(backend: LocalBackend, tmp_path: Path) -> None:
    inputs, outputs, secret = tmp_path / "inputs", tmp_path / "outputs", tmp_path / "secret"
    inputs.mkdir()
    secret.mkdir()
    (inputs / "reads.txt").write_text("ACGT\n")
    script = "; ".join(
        [
            CGROUP_LIMITS,
            "id -u",
            "ls /sys/class/net",
            f"cat {inputs}/reads.txt",
            f"touch {inputs}/new 2>/dev/null && echo inputs-writable || echo inputs-read-only",
            f"echo result > {outputs}/result.txt && echo outputs-writable",
            f"test -e {secret} && echo secret-visible || echo secret-hidden",
            "touch /etc/x 2>/dev/null && echo root-writable || echo root-read-only",
        ]
    )
    spec = JobSpec(
        "limits",
        ["sh", "-c", script],
        vcpus=1.5,
        memory_mib=192,
        image=RUNNER,
        mounts=[Mount(str(inputs), str(inputs), True), Mount(str(outputs), str(outputs), False)],
    )
    state = wait(backend, backend.submit(spec))
    assert state.status is JobStatus.SUCCEEDED, state
    lines = stdout_of(state).split()
    assert lines[0] == "150000", "1.5 vCPU = 150 ms of CPU per 100 ms period"
    assert lines[1] == str(192 * 1024 * 1024)
    assert lines[2] == "1000", "runs as the images' non-root user"
    assert lines[3:] == [
        "lo",
        "ACGT",
        "inputs-read-only",
        "outputs-writable",
        "secret-hidden",
        "root-read-only",
    ]
    assert (outputs / "result.txt").read_text() == "result\n"
    attempt = state.attempts[-1]
    assert (attempt.runtime, attempt.image) == ("podman", RUNNER)
    assert attempt.cpu_seconds is not None


def test_out_of_memory_is_reported_as_such_and_a_plain_137_is_not(backend: LocalBackend) -> None:
    hog = backend.submit(
        JobSpec("hog", ["python3", "-c", "x = bytearray(400 * 1024 * 1024)"], memory_mib=96, image=RUNNER)
    )
    # 137 alone is not an OOM kill: the peak memory must also have reached the limit.
    killed = backend.submit(JobSpec("killed", ["sh", "-c", "exit 137"], memory_mib=96, image=RUNNER))
    state = wait(backend, hog)
    assert state.status is JobStatus.FAILED and state.exit_code == 137
    attempt = state.attempts[-1]
    assert attempt.exit_reason is ExitReason.MEMLIMIT
    assert state.status_reason is not None and state.status_reason.startswith("OutOfMemoryError")
    assert attempt.container_reason is not None and "96 MiB" in attempt.container_reason
    other = wait(backend, killed)
    assert other.exit_code == 137 and other.attempts[-1].exit_reason is ExitReason.KILLED


def test_missing_image_says_how_to_build_it(backend: LocalBackend) -> None:
    state = wait(backend, backend.submit(JobSpec("none", ["true"], memory_mib=64, image="localhost/genobatch/no:1")))
    assert state.status is JobStatus.FAILED
    attempt = state.attempts[-1]
    assert attempt.exit_reason is ExitReason.CANNOT_START
    assert attempt.container_reason is not None
    assert "image not known" in attempt.container_reason and "genobatch images build" in attempt.container_reason


def test_jobs_without_an_image_run_on_the_host(backend: LocalBackend) -> None:
    state = wait(backend, backend.submit(JobSpec("plain", ["sh", "-c", "id -u"], memory_mib=64)))
    assert state.status is JobStatus.SUCCEEDED
    assert (state.attempts[-1].runtime, state.attempts[-1].image) == ("host", None)
    assert stdout_of(state).strip() == str(os.getuid())


def test_runtime_not_installed_or_not_working_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match=r"podman is not installed.*scripts/setup-podman\.sh"):
        check_runtime("podman")
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\necho 'Error: cannot set up namespace: operation not permitted' >&2\nexit 125\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeUnavailable, match=r"does not work.*operation not permitted.*setup-podman\.sh"):
        check_runtime("podman")
    # The run refuses before any compute, and names the problem and the fix.
    sheet, fasta = DATA / "sarscov2" / "samples.csv", DATA / "sarscov2" / DATASETS["sarscov2"][0]
    paths = ["--input", str(sheet), "--fasta", str(fasta), "--outdir", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-m", "genobatch", "run", *paths, "--work-dir", str(tmp_path / "work"), "--runtime", "podman"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "does not work" in result.stderr and "fix: run `scripts/setup-podman.sh`" in result.stderr
    assert not (tmp_path / "work" / "cache").exists() and not (tmp_path / "out").exists()


def test_pipeline_refuses_missing_or_stale_images(podman: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(images, "image_ref", lambda name, *_: f"localhost/genobatch/{name}:not-built")
        with pytest.raises(InputError) as caught:
            runtimes.choose("podman", needs(LIBRARY.select(), LIBRARY.image_names))
    [problem] = caught.value.problems
    used = {step.image for step in LIBRARY.select()} | {"runner"}  # the default steps' images and the runner's
    assert f"{len(used)} tool image(s) not usable" in problem.message and "not-built (missing)" in problem.message
    assert problem.fix == "genobatch images build --runtime podman"
    monkeypatch.setattr(images, "runner_digest", lambda: "other-runner-code")
    with pytest.raises(InputError) as caught:
        runtimes.choose("podman", needs(LIBRARY.select(), LIBRARY.image_names))
    assert "stale: other job-runner code" in caught.value.problems[0].message


def test_a_restarted_engine_removes_the_containers_a_killed_engine_left(podman: None, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    engine_cmd = [sys.executable, "-m", "genobatch", "engine", "run", "--state-dir", str(state_dir)]
    engine = subprocess.Popen([*engine_cmd, "--runtime", "podman"], stderr=subprocess.DEVNULL)
    backend = LocalBackend(state_dir, engine="none")
    try:
        job = backend.submit(JobSpec("sleeper", ["sleep", "600"], memory_mib=64, image=RUNNER))
        deadline = time.monotonic() + 60
        while backend.poll([job])[0].status is not JobStatus.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        label = f"--filter=label={STATE_LABEL}={state_dir.resolve()}"
        listed = ["podman", "ps", "--quiet", label]
        deadline = time.monotonic() + 30
        while not subprocess.run(listed, capture_output=True, text=True).stdout.split():
            assert time.monotonic() < deadline, "the container never started"
            time.sleep(0.1)
        engine.send_signal(signal.SIGKILL)
        engine.wait()
        time.sleep(1)
        assert subprocess.run(listed, capture_output=True, text=True).stdout.split(), "a killed engine's container"
        subprocess.run([*engine_cmd, "--runtime", "podman", "--idle-exit", "0"], check=True, capture_output=True)
        assert subprocess.run([*listed, "--all"], capture_output=True, text=True).stdout.split() == []
        state = backend.poll([job])[0]
        assert state.status is JobStatus.FAILED and state.attempts[-1].exit_reason is ExitReason.LOST
    finally:
        backend.close()
        if engine.poll() is None:
            engine.kill()


def test_images_list_shows_the_host_tool_versions(podman: None) -> None:
    result = subprocess.run([sys.executable, "-m", "genobatch", "images", "list"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    host = subprocess.run(["samtools", "--version"], capture_output=True).stdout.split()[1].decode()
    assert f"localhost/genobatch/bwa:{image_ref('bwa').split(':')[-1]}" in result.stdout
    assert f"samtools {host}" in result.stdout


@needs_tools
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_pipeline_in_containers_equals_the_host_tools(podman: None, dataset: str, tmp_path: Path) -> None:
    reference, ploidy = DATASETS[dataset]
    sheet, fasta = DATA / dataset / "samples.csv", DATA / dataset / reference
    outputs = {}
    for runtime in ("host", "podman"):
        outdir = tmp_path / runtime
        result = run_pipeline(
            sheet, fasta, outdir, tmp_path / f"work-{runtime}", "--ploidy", str(ploidy), "--runtime", runtime
        )
        assert f"Runtime: {runtime}" in result.stdout
        outputs[runtime] = outdir
        rows = [row for row in trace(outdir) if row["status"] == "COMPLETED"]
        for row in rows:
            expected = "host" if runtime == "host" else "podman"  # MultiQC too: it has its image
            assert row["runtime"] == expected, row
            assert (row["container"] != "-") == (expected == "podman"), row
    vcfs = sorted(p.relative_to(outputs["host"]) for p in outputs["host"].glob("*/*.vcf.gz"))
    assert vcfs, "the host run published VCFs"
    for vcf in vcfs:
        assert records(outputs["podman"] / vcf) == records(outputs["host"] / vcf), vcf
