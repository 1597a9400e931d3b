"""What the engine's overhead rests on (issue 14): the pipeline reads only what changed, and every attempt's logs
are copied by one thread, however many attempts there are. A real engine, real processes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from genobatch.batch import BatchClient, JobStatus
from genobatch.executors.contract import JobSpec
from genobatch.executors.local import LocalBackend

from .conftest import FAST, define, run_until_idle, sh, submit


def wait_for(backend: LocalBackend, pending: set[str], status: JobStatus) -> list[str]:
    """Poll for changes until one of ``pending`` reaches ``status``; returns every job id reported meanwhile."""
    reported: list[str] = []
    deadline = time.monotonic() + 30
    while True:
        states = backend.poll_changed(pending)
        reported += [s.job_id for s in states]
        if any(s.status is status for s in states):
            return reported
        assert time.monotonic() < deadline, f"no job reached {status.value}"
        time.sleep(0.05)


def test_poll_changed_reports_each_change_once_and_nothing_when_nothing_changed(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state", settings=FAST)
    try:
        quick = [backend.submit(JobSpec(f"quick{i}", ["true"], memory_mib=64)) for i in range(3)]
        gate = tmp_path / "gate"
        slow = backend.submit(JobSpec("slow", sh(f"while [ ! -e {gate} ]; do sleep 0.05; done"), memory_mib=64))
        pending = {*quick, slow}
        first = backend.poll_changed(pending)
        assert {s.job_id for s in first} == pending, "the first poll reports every job"
        seen = {s.job_id: s for s in first}
        deadline = time.monotonic() + 30
        while not all(seen[j].done for j in quick) or seen[slow].status is not JobStatus.RUNNING:
            assert time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.02)
            seen |= {s.job_id: s for s in backend.poll_changed(pending)}
        done = [seen[j] for j in quick]
        assert all(s.status is JobStatus.SUCCEEDED and len(s.attempts) == 1 for s in done), "ended: a full record"
        pending = {slow}
        assert backend.poll_changed(pending) == [], "nothing changed, nothing read"
        gate.touch()
        reported = wait_for(backend, pending, JobStatus.SUCCEEDED)
        assert set(reported) == {slow}, "only the job that changed"
        [final] = backend.poll([slow])
        assert final.status is JobStatus.SUCCEEDED and final.attempts[0].exit_code == 0
    finally:
        backend.close()


def test_one_thread_copies_the_logs_of_every_attempt(client: BatchClient, state_dir: Path) -> None:
    script = 'echo "out $AWS_BATCH_JOB_ARRAY_INDEX"; echo "err $AWS_BATCH_JOB_ARRAY_INDEX" >&2'
    parent = submit(client, define(client, "talk", sh(script), vcpus=0.25), arrayProperties={"size": 40})
    before = set(threading.enumerate())
    engine = threading.Thread(target=run_until_idle, args=(state_dir,))
    engine.start()
    most = 0
    while engine.is_alive():  # sampled while up to 8 attempts run at once: no thread per attempt
        most = max(most, len(set(threading.enumerate()) - before))
        time.sleep(0.01)
    engine.join()
    assert 1 <= most <= 2, f"the engine and (once per process) the log thread, not one per attempt: {most} threads"
    for i in range(40):
        out, err = client.log_paths(f"{parent}:{i}")
        assert out.read_text() == f"out {i}\n" and err.read_text() == f"err {i}\n"
    summary = client.describe_jobs([parent])["jobs"][0]["arrayProperties"]["statusSummary"]
    assert summary["SUCCEEDED"] == 40


def test_an_attempt_gets_only_stdin_stdout_and_stderr(client: BatchClient, state_dir: Path) -> None:
    """Attempts start with posix_spawn, which closes no descriptor: the engine closes what it inherited in the
    attempt only, leaving it to anything else its process starts (a make jobserver's pipe)."""
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # as a shell or CI runner may leave one to the engine's process
    try:
        job = submit(client, define(client, "fds", sh("ls /proc/self/fd; echo $PWD")))
        run_until_idle(state_dir)
        assert os.get_inheritable(write_end), "the process's own descriptor is left as it was"
    finally:
        os.close(read_end)
        os.close(write_end)
    out, _ = client.log_paths(job)
    *fds, pwd = out.read_text().split()
    assert sorted(fds) == ["0", "1", "2", "3"], "stdin, stdout, stderr, and the directory ls reads"
    assert pwd == str(out.parent / "work"), "the shell's cd into the working directory sets $PWD too"
