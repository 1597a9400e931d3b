"""Crash recovery: the engine process is killed with SIGKILL mid-run, restarted, and nothing is lost.

Each job appends "<job id> <attempt> start" and "... done" lines to a shared log, so the test sees what
really ran, independently of what the engine recorded.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from genobatch.batch import BatchClient
from genobatch.batch.daemon import engine_command

from .conftest import define, sh

SCRIPT = (
    'echo "$AWS_BATCH_JOB_ID $AWS_BATCH_JOB_ATTEMPT start" >> {log}; sleep 0.$((RANDOM % 4 + 1)); '
    'echo "$AWS_BATCH_JOB_ID $AWS_BATCH_JOB_ATTEMPT done" >> {log}'
)


def start_engine(state_dir: Path) -> subprocess.Popen[bytes]:
    with open(state_dir.parent / "engines.log", "ab") as log:  # what the engines said, for a failure to show
        return subprocess.Popen(engine_command(state_dir, "--idle-exit", "0", "--poll-interval", "0.05"), stderr=log)


def snapshot(state_dir: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(state_dir / "state.db") as conn:
        return {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT id, status, attempts_made FROM jobs WHERE array_size IS NULL OR parent_id IS NOT NULL"
            )
        }


def test_sigkill_mid_run_loses_nothing_and_reruns_nothing_that_succeeded(
    client: BatchClient, state_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    log.touch()
    definition = define(client, "work", sh(SCRIPT.format(log=log)), retryStrategy={"attempts": 5})
    ids = []
    previous = None
    for i in range(24):  # chains of 3, so dependencies are pending across the crash
        depends = [{"jobId": previous}] if previous and i % 3 else []
        previous = client.submit_job(jobName=f"j{i}", jobQueue="default", jobDefinition=definition, dependsOn=depends)[
            "jobId"
        ]
        ids.append(previous)
    array = client.submit_job(jobName="arr", jobQueue="default", jobDefinition=definition, arrayProperties={"size": 8})[
        "jobId"
    ]
    all_jobs = set(ids) | {f"{array}:{i}" for i in range(8)}

    succeeded_before: dict[str, int] = {}
    for round_ in range(2):
        engine = start_engine(state_dir)
        deadline = time.monotonic() + 60
        while True:  # kill once more jobs have succeeded and some attempt is running
            state = snapshot(state_dir)
            done = sum(1 for status, _ in state.values() if status == "SUCCEEDED")
            if done >= 6 * (round_ + 1) and any(status == "RUNNING" for status, _ in state.values()):
                break
            assert time.monotonic() < deadline, "engine made no progress"
            time.sleep(0.02)
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait()
        state = snapshot(state_dir)
        succeeded_before.update({job: attempts for job, (status, attempts) in state.items() if status == "SUCCEEDED"})
        assert any(status == "RUNNING" for status, _ in state.values()), "the kill hit attempts mid-run"

    engine = start_engine(state_dir)
    assert engine.wait(timeout=120) == 0

    final = snapshot(state_dir)
    assert set(final) == all_jobs, "no job lost"
    assert all(status == "SUCCEEDED" for status, _ in final.values()), final
    lines = [line.split() for line in log.read_text().splitlines()]
    for job, attempts in succeeded_before.items():
        assert final[job][1] == attempts, f"{job} succeeded before a crash but ran again"
        later = [line for line in lines if line[0] == job and int(line[1]) > attempts]
        assert later == [], f"{job} started again after it had SUCCEEDED"
    for job, (_, attempts) in final.items():
        assert [line[2] for line in lines if line[0] == job and int(line[1]) == attempts] == ["start", "done"]
    # An attempt that ended while no engine ran keeps its recorded exit; only one still running is lost.
    attempts = [a for d in client.describe_jobs(ids)["jobs"] for a in d["attempts"]]
    assert {a["genobatch"]["exitReason"] for a in attempts} <= {"FINISHED", "LOST"}
    assert all(a["statusReason"].startswith("Host lost") for a in attempts if a["genobatch"]["exitReason"] == "LOST")
    parent = client.describe_jobs([array])["jobs"][0]
    assert parent["status"] == "SUCCEEDED"
    leftovers = subprocess.run(["pgrep", "-f", str(log)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "no attempt process survives its engine"
