"""The Slurm executor: its rules on a recording cluster (no Slurm needed), then on a real single-host cluster
(slurmctld, slurmd, slurmdbd with MariaDB): out of memory retried with more, scancel reported, pending
reasons, and the demo pipeline equal to a local run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from genobatch.batch.container import ContainerRuntime
from genobatch.batch.model import ExitReason, JobStatus
from genobatch.executors.contract import JobSpec, JobState
from genobatch.executors.slurm import Settings
from genobatch.executors.slurm.backend import SlurmBackend
from genobatch.executors.slurm.cluster import Cluster, Record, parse_sacct
from genobatch.executors.slurm.states import meaning

from .container_helpers import RUNNER
from .pipeline_helpers import DATA, needs_tools, ran, records, run_pipeline, trace

SACCT = """\
7|FAILED|2:0|None|2026-11-29T23:27:47|2026-11-29T23:27:48|2026-11-29T23:27:49|00:00.004|
7.batch|FAILED|2:0||2026-11-29T23:27:48|2026-11-29T23:27:48|2026-11-29T23:27:49|00:01.500|2048K
8_1|OUT_OF_MEMORY|0:125|None|2026-11-29T23:27:47|2026-11-29T23:27:50|2026-11-29T23:27:51|00:00:00|
8_1.batch|OUT_OF_MEMORY|0:125||2026-11-29T23:27:50|2026-11-29T23:27:50|2026-11-29T23:27:51|01:02:03|1.5G
8_[2-3,5%2]|PENDING|0:0|Resources|2026-11-29T23:27:47|Unknown|Unknown||
9|CANCELLED by 0|0:0|Dependency|2026-11-29T23:27:47|2026-11-29T23:27:52|2026-11-29T23:27:52||
"""


def test_sacct_is_read_with_array_tasks_steps_and_units() -> None:
    found = parse_sacct(SACCT)
    assert sorted(found) == ["7", "8_1", "8_2", "8_3", "8_5", "9"]
    assert (found["7"].exit_code, found["7"].cpu_seconds, found["7"].max_rss_kib, found["7"].ran) == (
        2,
        1.5,
        2048,
        True,
    )
    assert found["8_1"].cpu_seconds == 3723 and found["8_1"].max_rss_kib == int(1.5 * 1024 * 1024)
    assert found["8_3"].state == "PENDING" and found["8_3"].reason == "Resources" and found["8_3"].started_ms is None
    assert not found["9"].ran, "cancelled while it waited: no attempt"


@pytest.mark.parametrize(
    "state, status, reason, retry",
    [
        ("COMPLETED", JobStatus.SUCCEEDED, ExitReason.FINISHED, "never"),
        ("OUT_OF_MEMORY", JobStatus.FAILED, ExitReason.MEMLIMIT, "more_memory"),
        ("TIMEOUT", JobStatus.FAILED, ExitReason.TIMEOUT, "again"),
        ("PREEMPTED", JobStatus.FAILED, ExitReason.LOST, "again"),
        ("NODE_FAIL", JobStatus.FAILED, ExitReason.LOST, "again"),
        ("FAILED", JobStatus.FAILED, ExitReason.FAILED, "if_asked"),
        ("CANCELLED by 1000", JobStatus.FAILED, ExitReason.TERMINATED, "never"),
        ("PENDING", JobStatus.RUNNABLE, None, "never"),
        ("COMPLETING", JobStatus.RUNNING, None, "never"),
    ],
)
def test_one_table_translates_slurm_states(
    state: str, status: JobStatus, reason: ExitReason | None, retry: str
) -> None:
    means = meaning(state)
    assert (means.status, means.reason, means.retry) == (status, reason, retry)


class FakeCluster(Cluster):
    """Records sbatch and scancel; answers sacct from ``ended``; a node of 8 CPUs and 16 GiB."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted: dict[str, tuple[list[str], str]] = {}
        self.cancelled: list[str] = []
        self.ended: dict[str, Record] = {}

    def config(self) -> dict[str, str]:
        return {"MaxArraySize": "5", "AccountingStorageType": "accounting_storage/slurmdbd"}

    def partitions(self) -> list[dict[str, str]]:
        return [{"PartitionName": "debug", "Default": "YES", "MaxTime": "1-00:00:00", "MaxMemPerNode": "UNLIMITED"}]

    def nodes(self) -> list[dict[str, str]]:
        return [{"NodeName": "n1", "CPUTot": "8", "RealMemory": "16384", "Partitions": "debug"}]

    def sbatch(self, options: list[str], script: Path) -> str:
        job_id = str(100 + len(self.submitted))
        self.submitted[job_id] = (options, script.read_text())
        return job_id

    def scancel(self, native_ids: list[str]) -> None:
        self.cancelled += native_ids

    def sacct(self, native_ids: list[str], name: str) -> dict[str, Record]:
        self.calls["sacct"] += 1
        return {k: v for k, v in self.ended.items() if k.split("_")[0] in native_ids}


def fake_backend(tmp_path: Path, **settings: Any) -> tuple[SlurmBackend, FakeCluster]:
    cluster = FakeCluster()
    return SlurmBackend(Settings(poll_seconds=0, **settings), tmp_path, cluster=cluster), cluster


def end(cluster: FakeCluster, native: str, state: str, code: int = 0) -> None:
    cluster.ended[native] = Record(native, state, code, None, "", 1, 2, 3, 0.5, 1024, ran=True)


def test_sbatch_options_arrays_dependencies_and_refusals(tmp_path: Path) -> None:
    backend, cluster = fake_backend(tmp_path, partition="debug", account="lab", qos="high", array_parallelism=2)
    assert backend.capabilities.max_array_size == 5, "the cluster's MaxArraySize"
    array = backend.submit(JobSpec("align", ["bwa", "x y"], vcpus=2, memory_mib=3000, array_size=4, timeout_seconds=90))
    gather = backend.submit(JobSpec("merge", ["true"], depends_on=[array], extra_arguments=["--constraint=avx2"]))
    pair = backend.submit(JobSpec("pair", ["true"], array_size=4, n_to_n_with=array))
    options, script = cluster.submitted[array]
    assert {"--cpus-per-task=2", "--mem=3000M", "--time=2", "--array=0-3%2", "--kill-on-invalid-dep=yes"} <= set(
        options
    )
    assert {"--partition=debug", "--account=lab", "--qos=high", f"--job-name={backend.name}"} <= set(options)
    assert "exec bwa 'x y'" in script and "AWS_BATCH_JOB_ARRAY_INDEX" in script
    gather_options = cluster.submitted[gather][0]
    assert f"--dependency=afterok:{array}" in gather_options and gather_options[-1] == "--constraint=avx2"
    assert f"--dependency=aftercorr:{array}" in cluster.submitted[pair][0]
    with pytest.raises(Exception, match=r"needs 16 CPUs.*can ever provide \(8 CPUs, 16384 MiB"):
        backend.submit(JobSpec("huge", ["true"], vcpus=16))
    with pytest.raises(Exception, match="can ever provide"):
        backend.submit(JobSpec("long", ["true"], timeout_seconds=2 * 86400))


def test_out_of_memory_gets_more_memory_and_the_dependents_wait_for_the_new_job(tmp_path: Path) -> None:
    backend, cluster = fake_backend(tmp_path)
    job = backend.submit(JobSpec("call", ["true"], memory_mib=6000))
    after = backend.submit(JobSpec("concat", ["true"], depends_on=[job]))
    end(cluster, job, "OUT_OF_MEMORY")
    end(cluster, after, "CANCELLED")  # --kill-on-invalid-dep cancelled it
    state, waiting = backend.poll([job, after])
    assert state.status is JobStatus.RUNNABLE and not waiting.done, "resubmitted, not failed"
    new = backend.jobs[job].native
    assert "--mem=12000M" in cluster.submitted[new][0] and backend.recoveries().more_memory == 1
    assert f"--dependency=afterok:{new}" in cluster.submitted[backend.jobs[after].native][0]
    end(cluster, new, "OUT_OF_MEMORY")
    final = backend.poll([job])[0]
    assert "--mem=16384M" in cluster.submitted[backend.jobs[job].native][0], "up to the largest node"
    end(cluster, backend.jobs[job].native, "OUT_OF_MEMORY")
    final = backend.poll([job])[0]
    assert final.status is JobStatus.FAILED and [a.exit_reason for a in final.attempts] == [ExitReason.MEMLIMIT] * 3
    assert final.attempts[-1].exit_code == 137 and "memory limit" in (final.attempts[-1].container_reason or "")


def test_timeouts_get_more_time_failures_only_when_asked_and_polls_are_batched(tmp_path: Path) -> None:
    backend, cluster = fake_backend(tmp_path, retries=1)
    slow = backend.submit(JobSpec("slow", ["true"], timeout_seconds=120))
    bad = backend.submit(JobSpec("bad", ["false"]))
    asked = backend.submit(JobSpec("asked", ["false"], retry_attempts=2))
    for native, state in ((slow, "TIMEOUT"), (bad, "FAILED"), (asked, "FAILED")):
        end(cluster, native, state, 1)
    states = {s.job_id: s for s in backend.poll([slow, bad, asked])}
    assert states[slow].status is JobStatus.RUNNABLE and "--time=4" in cluster.submitted[backend.jobs[slow].native][0]
    assert states[bad].status is JobStatus.FAILED and states[bad].attempts[-1].exit_code == 1
    assert states[asked].status is JobStatus.RUNNABLE
    script = cluster.submitted[backend.jobs[asked].native][1]
    assert "AWS_BATCH_JOB_ATTEMPT=2" in script, "the job sees its attempt number"
    assert cluster.calls["sacct"] == 1, "one sacct call for every job of the poll"
    recovered = backend.recoveries()
    assert (recovered.more_time, recovered.retried_failures) == (1, 1)


# --- on a real cluster --------------------------------------------------------------------------------------
def wait(backend: SlurmBackend, job_id: str, timeout: float = 180) -> JobState:
    deadline = time.monotonic() + timeout
    while not (state := backend.poll([job_id])[0]).done:
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    return state


@pytest.fixture
def slurm(slurm_cluster: Path, tmp_path: Path) -> SlurmBackend:
    return SlurmBackend(Settings(poll_seconds=0.5), tmp_path / "slurm")


def test_a_job_over_its_memory_is_out_of_memory_and_retried_with_more(slurm: SlurmBackend) -> None:
    grow = [
        sys.executable,
        "-c",
        "import time; x = bytearray(150 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(1)",
    ]
    state = wait(slurm, slurm.submit(JobSpec("grow", grow, memory_mib=100)))
    assert state.status is JobStatus.SUCCEEDED, state
    assert [a.exit_reason for a in state.attempts] == [ExitReason.MEMLIMIT, ExitReason.FINISHED]
    assert "OUT_OF_MEMORY" in (state.attempts[0].status_reason or "")
    assert slurm.recoveries().more_memory == 1
    assert state.attempts[1].max_rss_kib is not None and state.attempts[1].cpu_seconds is not None


def test_a_job_killed_with_scancel_is_reported(slurm: SlurmBackend) -> None:
    job = slurm.submit(JobSpec("sleeper", ["sleep", "300"], memory_mib=64))
    deadline = time.monotonic() + 60
    while slurm.poll([job])[0].status is not JobStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    subprocess.run(["scancel", slurm.jobs[job].native], check=True)  # someone else, outside genobatch
    state = wait(slurm, job)
    assert state.status is JobStatus.FAILED and state.attempts[-1].exit_reason is ExitReason.TERMINATED
    assert state.status_reason is not None and state.status_reason.startswith("CANCELLED")


def test_a_job_waiting_for_long_is_reported_with_slurm_s_reason(slurm: SlurmBackend) -> None:
    cpus = int(slurm.limits[0])
    first = slurm.submit(JobSpec("all-cpus", ["sleep", "30"], vcpus=cpus, memory_mib=64))
    second = slurm.submit(JobSpec("waits", ["true"], vcpus=cpus, memory_mib=64))
    deadline = time.monotonic() + 60
    while not (stuck := [s for s in slurm.stuck(0) if s.job_id == second]):
        slurm.poll([first, second])
        assert time.monotonic() < deadline, "never seen waiting"
        time.sleep(0.5)
    assert "Resources" in stuck[0].reason or "Priority" in stuck[0].reason, stuck
    slurm.cancel([first, second], "test done")


def test_without_accounting_squeue_tells_and_a_job_runs_in_its_image(slurm: SlurmBackend, podman: None) -> None:
    slurm.accounting = False  # as on clusters with no slurmdbd: one squeue --json call per poll
    failing = wait(slurm, slurm.submit(JobSpec("exit3", ["sh", "-c", "exit 3"], memory_mib=64)))
    assert failing.status is JobStatus.FAILED and failing.exit_code == 3 and len(failing.attempts) == 1
    assert slurm.cluster.calls["squeue"] >= 1 and slurm.cluster.calls["sacct"] == 0
    slurm.accounting, slurm.container = True, ContainerRuntime("podman")
    probe = ["sh", "-c", "test $(id -u) = 1000 && ! test -w /usr && exit 5"]  # the images' user, read-only root
    in_image = wait(slurm, slurm.submit(JobSpec("probe", probe, memory_mib=128, image=RUNNER)))
    assert in_image.exit_code == 5, in_image


@needs_tools
def test_the_demo_pipeline_on_slurm_equals_the_local_run(slurm_cluster: Path, tmp_path: Path) -> None:
    measles = DATA / "measles"
    sheet, fasta = measles / "samples.csv", measles / "MH356245.1.reference.fasta"
    common = ("--ploidy", "1", "--regions", "3")
    run_pipeline(sheet, fasta, tmp_path / "local", tmp_path / "work-local", *common)
    slurm_args = ("--executor", "slurm", "--slurm-poll", "1")
    result = run_pipeline(sheet, fasta, tmp_path / "slurm", tmp_path / "work-slurm", *common, *slurm_args)
    assert "task(s) ran" in result.stdout
    for sample in ("SRR7517490", "SRR7517498"):
        vcf = Path(sample) / f"{sample}.vcf.gz"
        assert records(tmp_path / "slurm" / vcf) == records(tmp_path / "local" / vcf), sample
    rows = [r for r in trace(tmp_path / "slurm") if r["status"] == "COMPLETED"]
    assert {r["runtime"] for r in rows} == {"slurm"} and all(r["%cpu"] != "-" for r in rows if r["step"] == "align")
    assert any(r["peak_rss"] != "-" for r in rows), "peak RSS from sacct"
    again = run_pipeline(sheet, fasta, tmp_path / "slurm", tmp_path / "work-slurm", *common, *slurm_args)
    assert "Nothing to run" in again.stdout and ran(tmp_path / "slurm") == []
