"""The engine with real processes: every state transition, dependencies, arrays, retries."""

from __future__ import annotations

import itertools
from pathlib import Path

from genobatch.batch import BatchClient

from .conftest import define, run_until_idle, sh, statuses, submit

HAPPY = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]


def test_a_job_goes_through_every_state_to_succeeded(client: BatchClient, state_dir: Path) -> None:
    job = submit(client, define(client, "ok", ["true"]))
    run_until_idle(state_dir)
    assert statuses(state_dir, job) == HAPPY
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["status"] == "SUCCEEDED" and detail["container"]["exitCode"] == 0
    assert detail["createdAt"] <= detail["startedAt"] <= detail["stoppedAt"]
    assert len(detail["attempts"]) == 1 and detail["attempts"][0]["genobatch"]["exitReason"] == "FINISHED"


def test_a_failing_job_ends_failed_with_its_exit_code(client: BatchClient, state_dir: Path) -> None:
    job = submit(client, define(client, "bad", sh("echo oops >&2; exit 7")))
    run_until_idle(state_dir)
    assert statuses(state_dir, job) == [*HAPPY[:-1], "FAILED"]
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["container"]["exitCode"] == 7
    assert detail["attempts"][0]["genobatch"]["exitReason"] == "FAILED"
    _, stderr = client.log_paths(job)
    assert stderr.read_text() == "oops\n"


def test_command_runs_without_a_shell_in_its_own_working_directory(client: BatchClient, state_dir: Path) -> None:
    job = submit(
        client,
        define(
            client,
            "args",
            ["python3", "-c", "import os,sys; print(sys.argv[1:], os.getcwd())", "$HOME", "a b", "Ref::p"],
            parameters={"p": "filled"},
        ),
    )
    run_until_idle(state_dir)
    stdout, _ = client.log_paths(job)
    argv, cwd = stdout.read_text().rsplit(" ", 1)
    assert argv == "['$HOME', 'a b', 'filled']", "no shell expansion, no word splitting, parameters substituted"
    assert cwd.strip() == str(stdout.parent / "work")


def test_attempt_records_cpu_time_and_peak_memory(client: BatchClient, state_dir: Path) -> None:
    burn = "import time; x = bytearray(300 * 2**20); t = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    job = submit(client, define(client, "burn", ["python3", "-c", burn], memory=1024))
    run_until_idle(state_dir)
    usage = client.describe_jobs([job])["jobs"][0]["attempts"][0]["genobatch"]
    assert usage["cpuSeconds"] >= 0.3
    assert 300 * 1024 <= usage["maxRssKiB"] < 600 * 1024


def test_dependencies_run_in_order_and_a_failure_fails_dependents(client: BatchClient, state_dir: Path) -> None:
    ok, bad = define(client, "ok", ["sleep", "0.2"]), define(client, "bad", ["false"])
    first = submit(client, ok, "first")
    second = submit(client, ok, "second", dependsOn=[{"jobId": first}])
    failing = submit(client, bad, "failing")
    blocked = submit(client, ok, "blocked", dependsOn=[{"jobId": second}, {"jobId": failing}])
    after_blocked = submit(client, ok, "after-blocked", dependsOn=[{"jobId": blocked}])
    run_until_idle(state_dir)
    jobs = {d["jobName"]: d for d in client.describe_jobs([first, second, failing, blocked, after_blocked])["jobs"]}
    assert jobs["second"]["startedAt"] >= jobs["first"]["stoppedAt"]
    assert jobs["blocked"]["status"] == "FAILED" and failing in jobs["blocked"]["statusReason"]
    assert statuses(state_dir, blocked) == ["SUBMITTED", "PENDING", "FAILED"]
    assert jobs["after-blocked"]["status"] == "FAILED" and blocked in jobs["after-blocked"]["statusReason"]
    assert jobs["blocked"]["attempts"] == [], "a job whose dependency failed never runs"


def test_array_children_see_their_index_and_the_parent_summarises(client: BatchClient, state_dir: Path) -> None:
    parent = submit(client, define(client, "idx", sh('exit "$AWS_BATCH_JOB_ARRAY_INDEX"')), arrayProperties={"size": 3})
    run_until_idle(state_dir)
    assert statuses(state_dir, parent) == ["SUBMITTED", "PENDING", "FAILED"]
    detail = client.describe_jobs([parent])["jobs"][0]
    assert detail["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 1
    assert detail["arrayProperties"]["statusSummary"]["FAILED"] == 2
    children = client.describe_jobs([f"{parent}:{i}" for i in range(3)])["jobs"]
    assert [c["container"]["exitCode"] for c in children] == [0, 1, 2]
    assert [c["arrayProperties"]["index"] for c in children] == [0, 1, 2]
    listed = client.list_jobs(arrayJobId=parent, jobStatus="FAILED")["jobSummaryList"]
    assert sorted(j["jobId"] for j in listed) == [f"{parent}:1", f"{parent}:2"]


def test_sequential_array_runs_children_one_after_another(client: BatchClient, state_dir: Path) -> None:
    parent = submit(
        client, define(client, "seq", ["sleep", "0.1"]), arrayProperties={"size": 4}, dependsOn=[{"type": "SEQUENTIAL"}]
    )
    run_until_idle(state_dir)
    children = client.describe_jobs([f"{parent}:{i}" for i in range(4)])["jobs"]
    for before, after in itertools.pairwise(children):
        assert after["startedAt"] >= before["stoppedAt"]


def test_n_to_n_child_waits_for_the_same_index(client: BatchClient, state_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    # Child i of the first array sleeps (3 - i) / 10 s, so without N_TO_N the second array would not wait for it.
    first = submit(
        client,
        define(
            client, "a", sh(f'sleep 0.$((3 - AWS_BATCH_JOB_ARRAY_INDEX)); echo "a $AWS_BATCH_JOB_ARRAY_INDEX" >> {log}')
        ),
        "first",
        arrayProperties={"size": 3},
    )
    second = submit(
        client,
        define(client, "b", sh(f'echo "b $AWS_BATCH_JOB_ARRAY_INDEX" >> {log}')),
        "second",
        arrayProperties={"size": 3},
        dependsOn=[{"jobId": first, "type": "N_TO_N"}],
    )
    run_until_idle(state_dir)
    lines = log.read_text().split("\n")
    for i in range(3):
        assert lines.index(f"a {i}") < lines.index(f"b {i}")
    child = client.describe_jobs([f"{second}:1"])["jobs"][0]
    assert child["dependsOn"] == [{"jobId": f"{first}:1", "type": "N_TO_N"}]


def test_a_job_depending_on_an_array_waits_for_all_children(client: BatchClient, state_dir: Path) -> None:
    parent = submit(client, define(client, "s", ["sleep", "0.1"]), "arr", arrayProperties={"size": 4})
    after = submit(client, define(client, "t", ["true"]), "after", dependsOn=[{"jobId": parent}])
    run_until_idle(state_dir)
    jobs = client.describe_jobs([f"{parent}:{i}" for i in range(4)] + [after])["jobs"]
    assert jobs[-1]["startedAt"] >= max(j["stoppedAt"] for j in jobs[:-1])


def test_ten_thousand_child_array(client: BatchClient, state_dir: Path) -> None:
    parent = submit(client, define(client, "t", ["true"]), arrayProperties={"size": 10_000})
    run_until_idle(state_dir)
    summary = client.describe_jobs([parent])["jobs"][0]["arrayProperties"]["statusSummary"]
    assert summary["SUCCEEDED"] == 10_000 and summary["FAILED"] == 0
    last = client.describe_jobs([f"{parent}:9999"])["jobs"][0]
    assert last["status"] == "SUCCEEDED"
    env = {e["name"]: e["value"] for e in last["container"]["environment"]}
    assert env["AWS_BATCH_JOB_ARRAY_INDEX"] == "9999"


def test_retries_count_attempts_and_jobs_see_attempt_variables(
    client: BatchClient, state_dir: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    script = f'echo "$AWS_BATCH_JOB_ID $AWS_BATCH_JOB_ATTEMPT" >> {seen}; [ "$AWS_BATCH_JOB_ATTEMPT" -ge 3 ]'
    job = submit(client, define(client, "flaky", sh(script), retryStrategy={"attempts": 5}))
    run_until_idle(state_dir)
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["status"] == "SUCCEEDED"
    assert len(detail["attempts"]) == 3
    assert seen.read_text().split("\n")[:3] == [f"{job} 1", f"{job} 2", f"{job} 3"]
    assert statuses(state_dir, job) == [
        *HAPPY[:-1],
        "RUNNABLE",
        "STARTING",
        "RUNNING",
        "RUNNABLE",
        "STARTING",
        "RUNNING",
        "SUCCEEDED",
    ]
    stdout_dirs = {a["genobatch"]["stdout"] for a in detail["attempts"]}
    assert len(stdout_dirs) == 3, "every attempt keeps its own log"


def test_evaluate_on_exit_exit_code_rule_stops_retrying(client: BatchClient, state_dir: Path) -> None:
    definition = define(
        client,
        "rules",
        sh("exit $CODE"),
        retryStrategy={
            "attempts": 4,
            "evaluateOnExit": [{"onExitCode": "2*", "action": "EXIT"}, {"onExitCode": "*", "action": "RETRY"}],
        },
    )
    fatal = submit(client, definition, "fatal", containerOverrides={"environment": [{"name": "CODE", "value": "21"}]})
    transient = submit(
        client, definition, "transient", containerOverrides={"environment": [{"name": "CODE", "value": "1"}]}
    )
    run_until_idle(state_dir)
    jobs = {d["jobName"]: d for d in client.describe_jobs([fatal, transient])["jobs"]}
    assert len(jobs["fatal"]["attempts"]) == 1
    assert len(jobs["transient"]["attempts"]) == 4
    assert all(j["status"] == "FAILED" for j in jobs.values())


def test_evaluate_on_exit_status_reason_rule(client: BatchClient, state_dir: Path) -> None:
    # A missing executable fails to start ("Task failed to start"): retry that, exit on anything else.
    definition = define(
        client,
        "nostart",
        ["/nonexistent/tool"],
        retryStrategy={
            "attempts": 3,
            "evaluateOnExit": [
                {"onStatusReason": "Task failed*", "action": "RETRY"},
                {"onReason": "*", "action": "EXIT"},
            ],
        },
    )
    job = submit(client, definition)
    run_until_idle(state_dir)
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["status"] == "FAILED" and len(detail["attempts"]) == 3
    attempt = detail["attempts"][0]
    assert attempt["genobatch"]["exitReason"] == "CANNOT_START"
    assert attempt["container"]["reason"].startswith("CannotStartContainerError: /nonexistent/tool")
