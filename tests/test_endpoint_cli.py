"""The AWS CLI (`aws`, from the venv: the `awscli` dev dependency) against the local engine's endpoint, with
--endpoint-url, --query and --output table, and the AWS CLI reference's own AWS Batch examples, verbatim."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_endpoint import BackgroundEngine, start_engine, wait_for

AWS = Path(sys.executable).parent / "aws"
pytestmark = pytest.mark.skipif(not AWS.exists(), reason="the aws CLI is a dev dependency: pip install -e .[dev]")


class Aws:
    """`aws` as a user runs it, with any credentials and no user configuration."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": "anything",
            "AWS_SECRET_ACCESS_KEY": "anything",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def __call__(self, command: str, expect: int = 0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``command`` as typed after ``aws`` (shell words), sent to the endpoint."""
        done = subprocess.run(
            f"{shutil.which(str(AWS))} --endpoint-url {self.url} {command}",
            shell=True,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=120,
        )
        assert done.returncode == expect, f"exit {done.returncode}: {done.stdout}{done.stderr}"
        return done

    def json(self, command: str, cwd: Path | None = None) -> Any:
        return json.loads(self(command, cwd=cwd).stdout)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundEngine]:
    running = start_engine(tmp_path_factory.mktemp("endpoint-cli") / "state")
    yield running
    running.stop()


@pytest.fixture
def aws(engine: BackgroundEngine, tmp_path: Path) -> Aws:
    return Aws(engine.url, tmp_path)


def test_query_table_and_errors(aws: Aws, tmp_path: Path) -> None:
    aws(
        "batch register-job-definition --job-definition-name hi --type container "
        """--container-properties '{"command": ["sh", "-c", "echo hi"], "vcpus": 1, "memory": 64}'"""
    )
    job_id = aws("batch submit-job --job-name hi --job-queue default --job-definition hi --query jobId --output text")
    job_id_text = job_id.stdout.strip()
    wait_for(
        lambda: (
            aws(f"batch describe-jobs --jobs {job_id_text} --query 'jobs[0].status' --output text").stdout.strip()
            == "SUCCEEDED"
        ),
        "the job to succeed",
    )
    table = aws(
        "batch describe-job-queues --query 'jobQueues[].{name:jobQueueName,state:state,priority:priority}' "
        "--output table"
    ).stdout
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines() if line[:1] == "|"]
    assert rows[0] == ["DescribeJobQueues"] and ["default", "1", "ENABLED"] in rows
    # The CLI pages for itself: --page-size 1 makes it follow nextToken to the end.
    listed = aws.json("batch list-jobs --job-queue default --job-status SUCCEEDED --page-size 1")
    assert [j["jobId"] for j in listed["jobSummaryList"]] == [job_id_text]

    # AWS CLI v1 (the awscli package) exits 255 on a service error; v2 exits 254, as `genobatch batch` does
    refused = aws("batch submit-job --job-name x --job-queue nowhere --job-definition hi", expect=255)
    assert refused.stderr.strip() == (
        "An error occurred (ClientException) when calling the SubmitJob operation: "
        "Job queue nowhere does not exist (see describe-job-queues)"
    )


# The AWS CLI reference's examples (awscli/examples/batch/*.rst, shipped with the awscli package), verbatim:
# both compute environments and the HighPriority queue from their JSON files, submit-job's command line. One
# change: register-job-definition's example registers sleep30 (`sleep 30`); here it registers sleep60, which
# submit-job's example submits, running `echo hello`, so that the job ends at once.
C4_ON_DEMAND = """{
  "computeEnvironmentName": "C4OnDemand",
  "type": "MANAGED",
  "state": "ENABLED",
  "computeResources": {
    "type": "EC2",
    "minvCpus": 0,
    "maxvCpus": 128,
    "desiredvCpus": 48,
    "instanceTypes": [
      "c4.large",
      "c4.xlarge",
      "c4.2xlarge",
      "c4.4xlarge",
      "c4.8xlarge"
    ],
    "subnets": [
      "subnet-220c0e0a",
      "subnet-1a95556d",
      "subnet-978f6dce"
    ],
    "securityGroupIds": [
      "sg-cf5093b2"
    ],
    "ec2KeyPair": "id_rsa",
    "instanceRole": "ecsInstanceRole",
    "tags": {
      "Name": "Batch Instance - C4OnDemand"
    }
  },
  "serviceRole": "arn:aws:iam::012345678910:role/AWSBatchServiceRole"
}"""
M4_SPOT = """{
  "computeEnvironmentName": "M4Spot",
  "type": "MANAGED",
  "state": "ENABLED",
  "computeResources": {
    "type": "SPOT",
    "spotIamFleetRole": "arn:aws:iam::012345678910:role/aws-ec2-spot-fleet-role",
    "minvCpus": 0,
    "maxvCpus": 128,
    "desiredvCpus": 4,
    "instanceTypes": [
      "m4"
    ],
    "bidPercentage": 20,
    "subnets": [
      "subnet-220c0e0a",
      "subnet-1a95556d",
      "subnet-978f6dce"
    ],
    "securityGroupIds": [
      "sg-cf5093b2"
    ],
    "ec2KeyPair": "id_rsa",
    "instanceRole": "ecsInstanceRole",
    "tags": {
      "Name": "Batch Instance - M4Spot"
    }
  },
  "serviceRole": "arn:aws:iam::012345678910:role/AWSBatchServiceRole"
}"""
HIGH_PRIORITY = """{
  "jobQueueName": "HighPriority",
  "state": "ENABLED",
  "priority": 1,
  "computeEnvironmentOrder": [
    {
      "order": 1,
      "computeEnvironment": "C4OnDemand"
    },
    {
      "order": 2,
      "computeEnvironment": "M4Spot"
    }
  ]
}"""


def test_aws_cli_reference_examples_verbatim(aws: Aws, engine: BackgroundEngine, tmp_path: Path) -> None:
    for name, text in (("C4OnDemand", C4_ON_DEMAND), ("M4Spot", M4_SPOT), ("HighPriority", HIGH_PRIORITY)):
        (tmp_path / f"{name}.json").write_text(text)
    for name in ("C4OnDemand", "M4Spot"):
        created = aws.json(f"batch create-compute-environment --cli-input-json file://{name}.json", cwd=tmp_path)
        assert created["computeEnvironmentName"] == name
    queue = aws.json("batch create-job-queue --cli-input-json file://HighPriority.json", cwd=tmp_path)
    assert queue["jobQueueName"] == "HighPriority"
    aws(
        "batch register-job-definition --job-definition-name sleep60 --type container "
        """--container-properties '{ "image": "busybox", "vcpus": 1, "memory": 128, "command": [ "echo", "hello"]}'"""
    )
    submitted = aws.json("batch submit-job --job-name example --job-queue HighPriority  --job-definition sleep60")
    assert submitted["jobName"] == "example"

    def described() -> dict[str, Any] | None:
        job: dict[str, Any] = aws.json(f"batch describe-jobs --jobs {submitted['jobId']}")["jobs"][0]
        return job if job["status"] in ("SUCCEEDED", "FAILED") else None

    job = wait_for(described, "the example job to end")
    assert job["status"] == "SUCCEEDED" and job["container"]["command"] == ["echo", "hello"]
    assert job["jobQueue"].endswith(":job-queue/HighPriority")
    assert (engine.state_dir / "jobs" / f"{job['jobId']}.1" / "stdout.log").read_text() == "hello\n"
