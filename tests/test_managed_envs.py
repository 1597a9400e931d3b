"""AWS's compute environment requests accepted as written (MANAGED EC2/SPOT/FARGATE, UNMANAGED), run on this
machine's capacity capped by their maxvCpus, and described as AWS Batch describes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genobatch.batch import BatchClient, ClientException
from genobatch.batch.registry import HEALTHY, UNMANAGED_REASON, host_resources

from .conftest import define, run_until_idle, sh

EC2 = {
    "type": "EC2",
    "allocationStrategy": "BEST_FIT_PROGRESSIVE",
    "minvCpus": 0,
    "maxvCpus": 1,
    "instanceTypes": ["t3.micro", "t3.small"],
    "subnets": ["subnet-1"],
    "securityGroupIds": ["sg-1"],
    "instanceRole": "ecsInstanceRole",
    "tags": {"Name": "x"},
    "ec2Configuration": [{"imageType": "ECS_AL2"}],
    "launchTemplate": {"launchTemplateName": "lt", "version": "$Latest"},
}


def environment(client: BatchClient, name: str) -> dict[str, Any]:
    [env] = client.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
    return env  # type: ignore[no-any-return]


def test_managed_ec2_spot_and_fargate_are_echoed_as_given(client: BatchClient) -> None:
    client.create_compute_environment(computeEnvironmentName="ec2", type="MANAGED", computeResources=EC2)
    spot = {**EC2, "type": "SPOT", "bidPercentage": 60, "spotIamFleetRole": "arn:aws:iam::1:role/fleet"}
    client.create_compute_environment(
        computeEnvironmentName="spot", type="MANAGED", computeResources=spot, tags={"team": "genomics"}
    )
    fargate = {"type": "FARGATE_SPOT", "maxvCpus": 256, "subnets": ["subnet-1"], "securityGroupIds": ["sg-1"]}
    client.create_compute_environment(computeEnvironmentName="fargate", type="MANAGED", computeResources=fargate)
    ec2 = environment(client, "ec2")
    assert ec2["computeResources"] == {**EC2, "desiredvCpus": 0}, "as given, with AWS's default desiredvCpus"
    assert (ec2["type"], ec2["state"], ec2["status"], ec2["statusReason"]) == ("MANAGED", "ENABLED", "VALID", HEALTHY)
    assert ec2["ecsClusterArn"].startswith("arn:aws:ecs:local:000000000000:cluster/ec2_Batch_")
    assert ec2["containerOrchestrationType"] == "ECS" and ec2["ecsClusterArn"].endswith(ec2["uuid"])
    assert ec2["genobatch"]["capacity"]["vcpus"] == 1
    assert environment(client, "spot")["computeResources"]["bidPercentage"] == 60
    assert environment(client, "spot")["tags"] == {"team": "genomics"}
    described = environment(client, "fargate")
    assert described["computeResources"] == fargate, "Fargate has no minvCpus or desiredvCpus"
    assert described["genobatch"]["capacity"]["vcpus"] == host_resources().vcpus, "256 capped by this machine"


def test_unmanaged_is_accepted_with_no_capacity_and_says_why(client: BatchClient) -> None:
    client.create_compute_environment(computeEnvironmentName="mine", type="UNMANAGED", unmanagedvCpus=8)
    env = environment(client, "mine")
    assert (env["status"], env["statusReason"], env["unmanagedvCpus"]) == ("VALID", UNMANAGED_REASON, 8)
    assert "computeResources" not in env
    client.create_job_queue(
        jobQueueName="unmanaged", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "mine"}]
    )
    definition = define(client, "ok", ["true"])
    with pytest.raises(ClientException, match=r"more than any compute environment .*\(mine: 0 vCPU"):
        client.submit_job(jobName="j", jobQueue="unmanaged", jobDefinition=definition)


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        ({"type": "UNMANAGED", "computeResources": {"type": "EC2", "maxvCpus": 1}}, "takes no computeResources"),
        ({"type": "MANAGED", "computeResources": {"type": "EC2"}}, "maxvCpus is required for type EC2"),
        ({"type": "MANAGED", "computeResources": {"type": "SPOT", "maxvCpus": 1.5}}, "whole number of vCPUs"),
        ({"type": "MANAGED", "computeResources": {"type": "EC2", "maxvCpus": float("inf")}}, "whole number"),
        ({"type": "MANAGED", "computeResources": {"type": "EC2", "minvCpus": 4, "maxvCpus": 2}}, "minvCpus <="),
        ({"type": "MANAGED", "computeResources": {"type": "EC2", "maxvCpus": 2, "maxMemoryMiB": 1}}, "maxMemoryMiB"),
    ],
)
def test_bad_environments_are_refused_with_the_fix(client: BatchClient, request_: dict[str, Any], words: str) -> None:
    with pytest.raises(ClientException, match=words):
        client.create_compute_environment(computeEnvironmentName="bad", **request_)
    assert client.describe_compute_environments(computeEnvironments=["bad"])["computeEnvironments"] == []


def test_jobs_run_in_an_ec2_environment_within_its_max_vcpus(client: BatchClient, state_dir: Path) -> None:
    """maxvCpus=1: two 1-vCPU jobs run one after the other, in that environment."""
    client.create_compute_environment(computeEnvironmentName="ec2", type="MANAGED", computeResources=EC2)
    client.create_job_queue(
        jobQueueName="aws", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ec2"}]
    )
    definition = define(client, "where", sh('echo "$AWS_BATCH_CE_NAME"; sleep 0.2'), vcpus=1)
    ids = [client.submit_job(jobName=f"j{i}", jobQueue="aws", jobDefinition=definition)["jobId"] for i in range(2)]
    run_until_idle(state_dir)
    first, second = [d["attempts"][0] for d in client.describe_jobs(ids)["jobs"]]
    assert second["startedAt"] >= first["stoppedAt"], "never both at once: the environment has 1 vCPU"
    for attempt in (first, second):
        assert attempt["genobatch"]["computeEnvironment"] == "ec2"
        assert Path(attempt["genobatch"]["stdout"]).read_text() == "ec2\n"
