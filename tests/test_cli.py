"""The ``genobatch batch`` / ``genobatch engine`` commands, run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class Cli:
    def __init__(self, state_dir: Path) -> None:
        self.env = {**os.environ, "GENOBATCH_STATE_DIR": str(state_dir)}

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "genobatch", *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == expect, f"exit {result.returncode}: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)


@pytest.fixture
def cli(state_dir: Path) -> Iterator[Cli]:
    runner = Cli(state_dir)
    yield runner
    runner.run("engine", "stop", "--now")  # the background engine started by submit-job


def register(cli: Cli, tmp_path: Path) -> str:
    spec = {
        "jobDefinitionName": "echoer",
        "type": "container",
        "parameters": {"word": "default"},
        "containerProperties": {
            "command": ["sh", "-c", "echo Ref::word $AWS_BATCH_JOB_ARRAY_INDEX"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
        },
        "retryStrategy": {"attempts": 2},
    }
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(spec))
    response = cli.json("batch", "register-job-definition", "--cli-input-json", f"file://{path}")
    assert response == {
        "jobDefinitionName": "echoer",
        "revision": 1,
        "jobDefinitionArn": "arn:aws:batch:local:000000000000:job-definition/echoer:1",
    }
    return "echoer:1"


def test_aws_json_in_and_out_with_a_background_engine(cli: Cli, tmp_path: Path) -> None:
    definition = register(cli, tmp_path)
    first = cli.json(
        "batch",
        "submit-job",
        "--job-name",
        "first",
        "--job-queue",
        "default",
        "--job-definition",
        definition,
        "--parameters",
        "word=hello",
    )
    assert set(first) == {"jobArn", "jobName", "jobId"}
    array = cli.json(
        "batch",
        "submit-job",
        "--job-name",
        "arr",
        "--job-queue",
        "default",
        "--job-definition",
        definition,
        "--array-properties",
        "size=3",
        "--depends-on",
        f"jobId={first['jobId']}",
    )
    waited = cli.run("batch", "wait", first["jobId"], array["jobId"], "--timeout", "60")
    assert [j["status"] for j in json.loads(waited.stdout)["jobs"]] == ["SUCCEEDED", "SUCCEEDED"]

    detail = cli.json("batch", "describe-jobs", "--jobs", first["jobId"], array["jobId"])["jobs"]
    assert {
        "jobArn",
        "jobName",
        "jobId",
        "jobQueue",
        "status",
        "attempts",
        "createdAt",
        "startedAt",
        "stoppedAt",
        "container",
        "dependsOn",
        "jobDefinition",
        "parameters",
        "retryStrategy",
    } <= set(detail[0])
    assert detail[0]["jobQueue"] == "arn:aws:batch:local:000000000000:job-queue/default"
    assert detail[1]["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    assert detail[1]["dependsOn"] == [{"jobId": first["jobId"]}]

    assert cli.run("batch", "logs", first["jobId"]).stdout == "hello\n"
    assert cli.run("batch", "logs", f"{array['jobId']}:2", "--stream", "stdout").stdout == "default 2\n"
    listed = cli.json("batch", "list-jobs", "--job-queue", "default", "--job-status", "SUCCEEDED")
    assert {j["jobName"] for j in listed["jobSummaryList"]} == {"first", "arr"}
    children = cli.json("batch", "list-jobs", "--array-job-id", array["jobId"], "--job-status", "SUCCEEDED")
    assert len(children["jobSummaryList"]) == 3
    named = cli.json("batch", "list-jobs", "--job-queue", "default", "--filters", "name=JOB_NAME,values=fi*")
    assert [j["jobName"] for j in named["jobSummaryList"]] == ["first"]
    named = cli.json(
        "batch", "list-jobs", "--job-queue", "default", "--filters", '[{"name": "JOB_NAME", "values": ["fi*"]}]'
    )
    assert [j["jobName"] for j in named["jobSummaryList"]] == ["first"]
    status = cli.json("engine", "status")
    assert status["engine"] == "running" and status["jobs"]["SUCCEEDED"] == 2


def test_resources_verbs(cli: Cli) -> None:
    cli.json(
        "batch",
        "create-compute-environment",
        "--compute-environment-name",
        "half",
        "--compute-resources",
        "type=LOCAL,maxvCpus=1,maxMemoryMiB=512",
    )
    cli.json(
        "batch",
        "create-job-queue",
        "--job-queue-name",
        "urgent",
        "--priority",
        "100",
        "--compute-environment-order",
        "order=1,computeEnvironment=half",
    )
    envs = cli.json("batch", "describe-compute-environments", "--compute-environments", "half")
    assert envs["computeEnvironments"][0]["computeResources"]["maxvCpus"] == 1
    queues = cli.json("batch", "describe-job-queues", "--job-queues", "urgent")["jobQueues"]
    assert queues[0]["priority"] == 100
    assert queues[0]["computeEnvironmentOrder"][0]["computeEnvironment"].endswith("compute-environment/half")


def test_terminate_from_the_cli(cli: Cli, tmp_path: Path) -> None:
    cli.json(
        "batch",
        "register-job-definition",
        "--job-definition-name",
        "sleeper",
        "--container-properties",
        '{"command": ["sleep", "60"], "vcpus": 1, "memory": 32}',
    )
    job = cli.json("batch", "submit-job", "--job-name", "s", "--job-queue", "default", "--job-definition", "sleeper")
    cli.run("batch", "terminate-job", "--job-id", job["jobId"], "--reason", "enough")
    waited = cli.run("batch", "wait", job["jobId"], "--timeout", "60", expect=1)
    assert json.loads(waited.stdout)["jobs"][0]["statusReason"] == "enough"


SUBMIT = ["submit-job", "--job-name", "x", "--job-queue", "default", "--job-definition", "ok"]
CYCLE = json.dumps(
    [
        {"jobName": "a", "jobQueue": "default", "jobDefinition": "ok", "dependsOn": [{"jobName": "b"}]},
        {"jobName": "b", "jobQueue": "default", "jobDefinition": "ok", "dependsOn": [{"jobName": "a"}]},
    ]
)
REGISTER = ["register-job-definition", "--job-definition-name", "r", "--container-properties"]
BAD_INPUT = [  # (arguments, exit code, what the message must say)
    (
        ["submit-job", "--job-name", "x", "--job-queue", "default", "--job-definition", "missing"],
        254,
        "Job definition missing does not exist: register it",
    ),
    (
        ["submit-job", "--job-name", "x", "--job-queue", "nowhere", "--job-definition", "ok"],
        254,
        "Job queue nowhere does not exist",
    ),
    (
        [*SUBMIT, "--container-overrides", "{not json"],
        252,
        "Error parsing parameter '--container-overrides': Invalid JSON",
    ),
    (["submit-job", "--cli-input-json", '{"jobName": '], 252, "Error parsing parameter '--cli-input-json'"),
    ([*SUBMIT, "--depends-on", "jobId=no-such-job"], 254, "dependsOn[0].jobId 'no-such-job' does not exist"),
    ([*SUBMIT, "--array-properties", "size=1"], 254, "arrayProperties.size must be an integer from 2 to 10000, got 1"),
    ([*SUBMIT, "--array-properties", "size=10001"], 254, "from 2 to 10000, got 10001"),
    ([*SUBMIT, "--depends-on", "type=SEQUENTIAL"], 254, "only valid for array jobs"),
    (
        ["submit-job", "--job-name", "bad name!", "--job-queue", "default", "--job-definition", "ok"],
        254,
        "jobName 'bad name!' is invalid",
    ),
    (
        [*SUBMIT, "--container-overrides", '{"resourceRequirements": [{"type": "VCPU", "value": "64"}]}'],
        254,
        "more than any compute environment of job queue default can ever provide",
    ),
    (["submit-jobs", "--jobs", CYCLE], 254, "dependsOn forms a cycle"),
    (
        [*REGISTER, '{"command": ["true"]}', "--retry-strategy", "attempts=11"],
        254,
        "retryStrategy.attempts must be an integer from 1 to 10",
    ),
    ([*REGISTER, '{"command": "true"}'], 252, "Invalid type for parameter containerProperties.command"),
]


@pytest.mark.parametrize("args, code, message", BAD_INPUT)
def test_bad_input_is_refused_with_a_clear_message(cli: Cli, args: list[str], code: int, message: str) -> None:
    cli.json(
        "batch",
        "register-job-definition",
        "--job-definition-name",
        "ok",
        "--container-properties",
        '{"command": ["true"], "vcpus": 1, "memory": 16}',
    )
    result = (
        cli.run("batch", *args, "--no-engine", expect=code)
        if args[0].startswith("submit")
        else cli.run("batch", *args, expect=code)
    )
    assert message in result.stderr
    assert result.stdout == ""
    listed = cli.json("batch", "list-jobs", "--job-queue", "default", "--job-status", "SUBMITTED")
    assert listed["jobSummaryList"] == [], "nothing was submitted"


def test_submit_jobs_submits_a_graph_atomically(cli: Cli) -> None:
    cli.json(
        "batch",
        "register-job-definition",
        "--job-definition-name",
        "ok",
        "--container-properties",
        '{"command": ["true"], "vcpus": 1, "memory": 16}',
    )
    graph = [
        {"jobName": "align", "jobQueue": "default", "jobDefinition": "ok"},
        {"jobName": "call", "jobQueue": "default", "jobDefinition": "ok", "dependsOn": [{"jobName": "align"}]},
    ]
    response = cli.json("batch", "submit-jobs", "--jobs", json.dumps(graph))
    ids = [j["jobId"] for j in response["jobs"]]
    cli.run("batch", "wait", *ids, "--timeout", "60")
    detail = cli.json("batch", "describe-jobs", "--jobs", ids[1])["jobs"][0]
    assert detail["dependsOn"] == [{"jobId": ids[0]}]


def test_logs_follow_prints_until_the_job_ends(cli: Cli) -> None:
    cli.json(
        "batch",
        "register-job-definition",
        "--job-definition-name",
        "talker",
        "--container-properties",
        '{"command": ["sh", "-c", "echo first; sleep 1; echo second >&2; sleep 1; echo third"], '
        '"vcpus": 1, "memory": 32}',
    )
    job = cli.json("batch", "submit-job", "--job-name", "t", "--job-queue", "default", "--job-definition", "talker")
    deadline = time.monotonic() + 30
    while True:  # logs exist once the first attempt has started
        result = subprocess.run(
            [sys.executable, "-m", "genobatch", "batch", "logs", job["jobId"], "--follow"],
            env=cli.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode == 0:
            break
        assert "has no logs" in result.stderr and time.monotonic() < deadline
        time.sleep(0.05)
    assert result.stdout == "first\nthird\n" and result.stderr == "second\n"
