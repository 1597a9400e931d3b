"""``genobatch aws up|status|down`` against a real AWS API server (moto) on loopback, through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import boto3

from genobatch.executors.awsbatch.policies import (
    BATCH_SERVICE_POLICY,
    ECS_INSTANCE_POLICY,
    job_bucket_policy,
    trust_policy,
)
from genobatch.pipeline.library import Library

from .aws_helpers import MotoServer, moto_server  # noqa: F401 - the fixture

BUCKET = "genobatch-{}-123456789012-us-east-1"


def cli(server: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genobatch", "aws", *args, "--endpoint-url", server.endpoint],
        capture_output=True,
        text=True,
        timeout=300,
    )


def client(server: MotoServer, service: str) -> Any:
    return boto3.client(service, endpoint_url=server.endpoint, region_name="us-east-1")  # type: ignore[call-overload]


def nat_gateways(ec2: Any, stack: str) -> list[dict[str, Any]]:
    """The stack's live NAT gateways (tags checked here: moto ignores tag filters on this call)."""
    return [
        n
        for n in ec2.describe_nat_gateways()["NatGateways"]
        if n["State"] != "deleted" and {"Key": "genobatch:stack", "Value": stack} in n.get("Tags", [])
    ]


def everything_of(server: MotoServer, stack: str) -> list[str]:
    """What exists under the stack's tags and names, asked of each service directly (not via genobatch)."""
    ec2, iam, s3, ecr, batch = (client(server, s) for s in ("ec2", "iam", "s3", "ecr", "batch"))
    tagged = [{"Name": "tag:genobatch:stack", "Values": [stack]}]
    found = [v["VpcId"] for v in ec2.describe_vpcs(Filters=tagged)["Vpcs"]]
    found += [s["SubnetId"] for s in ec2.describe_subnets(Filters=tagged)["Subnets"]]
    found += [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]]
    found += [g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=tagged)["InternetGateways"]]
    found += [r["RouteTableId"] for r in ec2.describe_route_tables(Filters=tagged)["RouteTables"]]
    found += [a["AllocationId"] for a in ec2.describe_addresses(Filters=tagged)["Addresses"]]
    found += [n["NatGatewayId"] for n in nat_gateways(ec2, stack)]
    found += [  # AWS (and moto) list deleted endpoints for a while
        e["VpcEndpointId"]
        for e in ec2.describe_vpc_endpoints(Filters=tagged)["VpcEndpoints"]
        if e["State"].lower() != "deleted"
    ]
    prefix = f"genobatch-{stack}"
    found += [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix)]
    found += [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]]
    found += [b["Name"] for b in s3.list_buckets()["Buckets"]]
    found += [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    found += [e["computeEnvironmentName"] for e in batch.describe_compute_environments()["computeEnvironments"]]
    found += [q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]]
    found += [d["jobDefinitionName"] for d in batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]]
    return [name for name in found if not name.startswith("genobatch-") or name.startswith(prefix)]


def test_up_twice_status_down_leaves_nothing(moto_server: MotoServer) -> None:  # noqa: F811
    first = cli(moto_server, "up", "--name", "one")
    assert first.returncode == 0, first.stderr
    repositories = 1 + len(Library.load().images)  # the runner's image and each tool image the steps name
    assert f"{19 + repositories} resource(s) created" in first.stdout
    second = cli(moto_server, "up", "--name", "one")
    assert second.returncode == 0 and "Nothing to change: everything exists." in second.stdout
    assert "created" not in second.stdout
    status = cli(moto_server, "status", "--name", "one")
    assert status.returncode == 0 and "Everything is in place." in status.stdout, status.stdout
    before = everything_of(moto_server, "one")
    assert len(before) >= 20

    ec2, s3, batch = client(moto_server, "ec2"), client(moto_server, "s3"), client(moto_server, "batch")
    subnets = ec2.describe_subnets(Filters=[{"Name": "tag:genobatch:stack", "Values": ["one"]}])["Subnets"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2 and len(subnets) == 4
    assert len(nat_gateways(ec2, "one")) == 1
    bucket = BUCKET.format("one")
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    environments = {
        e["computeEnvironmentName"]: e["computeResources"]
        for e in batch.describe_compute_environments()["computeEnvironments"]
    }
    assert environments["genobatch-one-spot"]["allocationStrategy"] == "SPOT_CAPACITY_OPTIMIZED"
    assert environments["genobatch-one-ondemand"]["allocationStrategy"] == "BEST_FIT_PROGRESSIVE"
    private = {s["SubnetId"] for s in subnets if "private" in json.dumps(s["Tags"])}
    assert set(environments["genobatch-one-spot"]["subnets"]) == private
    queue = batch.describe_job_queues(jobQueues=["genobatch-one-spot"])["jobQueues"][0]
    order = sorted(queue["computeEnvironmentOrder"], key=lambda e: e["order"])
    assert [e["computeEnvironment"].split("/")[-1] for e in order] == ["genobatch-one-spot", "genobatch-one-ondemand"]
    group = ec2.describe_security_groups(Filters=[{"Name": "tag:genobatch:part", "Values": ["jobs"]}])
    assert group["SecurityGroups"][0]["IpPermissions"] == [], "jobs accept no inbound traffic"

    down = cli(moto_server, "down", "--name", "one")
    assert down.returncode == 0, down.stderr
    assert "Nothing of stack one is left." in down.stdout
    assert everything_of(moto_server, "one") == []
    assert cli(moto_server, "status", "--name", "one").returncode == 1


def test_policy_documents_grant_only_the_run_bucket(moto_server: MotoServer) -> None:  # noqa: F811
    bucket = BUCKET.format("pol")
    assert job_bucket_policy(bucket) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListRunBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Sid": "ReadWriteRunObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
        ],
    }
    assert cli(moto_server, "up", "--name", "pol", "--on-demand").returncode == 0
    try:
        iam = client(moto_server, "iam")
        job = iam.get_role(RoleName="genobatch-pol-job")["Role"]
        assert job["AssumeRolePolicyDocument"] == trust_policy("ecs-tasks")
        inline = iam.get_role_policy(RoleName="genobatch-pol-job", PolicyName="run-bucket")["PolicyDocument"]
        assert inline == job_bucket_policy(bucket)
        assert iam.list_attached_role_policies(RoleName="genobatch-pol-job")["AttachedPolicies"] == []
        attached = {
            kind: [
                p["PolicyArn"]
                for p in iam.list_attached_role_policies(RoleName=f"genobatch-pol-{kind}")["AttachedPolicies"]
            ]
            for kind in ("batch-service", "ecs-instance")
        }
        assert attached == {"batch-service": [BATCH_SERVICE_POLICY], "ecs-instance": [ECS_INSTANCE_POLICY]}
        batch = client(moto_server, "batch")
        names = [e["computeEnvironmentName"] for e in batch.describe_compute_environments()["computeEnvironments"]]
        assert "genobatch-pol-spot" not in names and "genobatch-pol-ondemand" in names
    finally:
        assert cli(moto_server, "down", "--name", "pol").returncode == 0
    assert everything_of(moto_server, "pol") == []


def test_no_nat_uses_vpc_endpoints(moto_server: MotoServer) -> None:  # noqa: F811
    assert cli(moto_server, "up", "--name", "ep", "--no-nat").returncode == 0
    try:
        ec2 = client(moto_server, "ec2")
        tagged = [{"Name": "tag:genobatch:stack", "Values": ["ep"]}]
        endpoints = ec2.describe_vpc_endpoints(Filters=tagged)["VpcEndpoints"]
        services = sorted((e["ServiceName"].split(".", 3)[-1], e["VpcEndpointType"]) for e in endpoints)
        assert services == [
            ("ecr.api", "Interface"),
            ("ecr.dkr", "Interface"),
            ("logs", "Interface"),
            ("s3", "Gateway"),
        ]
        assert nat_gateways(ec2, "ep") == []
    finally:
        assert cli(moto_server, "down", "--name", "ep").returncode == 0
    assert everything_of(moto_server, "ep") == []
