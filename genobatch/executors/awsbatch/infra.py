"""``genobatch aws up|status|down``: everything a run on AWS Batch needs, made and unmade by one command.

``up`` creates (or finds, by name and tags: it is idempotent) the run bucket (encrypted, public access
blocked), the network (``network.Network``), three IAM roles (Batch service, ECS instance + instance profile,
and a job role limited to the bucket), ECR repositories for the tool images, a spot compute environment
(SPOT_CAPACITY_OPTIMIZED) and an on-demand one (BEST_FIT_PROGRESSIVE) in the private subnets, and two job
queues: ``-spot`` (spot first, then on-demand) and ``-ondemand`` (where reclaimed jobs go).
``down`` deletes all of it, in reverse, and then lists what is left with the stack's tags: nothing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from genobatch import __version__
from genobatch.images import RUNNER, ImageError, image_ref

from .backend import AwsBatchSettings
from .clients import Aws
from .network import STACK_TAG, Network
from .policies import BATCH_SERVICE_POLICY, ECS_INSTANCE_POLICY, job_bucket_policy, trust_policy
from .pricing import INSTANCE_FAMILIES


@dataclass
class StackOptions:
    name: str
    max_vcpus: int = 256
    spot: bool = True  # also a spot compute environment, first in the default queue
    nat: bool = True  # a NAT gateway; False: VPC endpoints instead
    instance_families: tuple[str, ...] = INSTANCE_FAMILIES


@dataclass(frozen=True)
class Names:
    """Every name derived from the stack name: the one place they are spelled."""

    stack: str
    account: str
    region: str

    @property
    def bucket(self) -> str:
        return f"genobatch-{self.stack}-{self.account}-{self.region}"

    def role(self, kind: str) -> str:  # kind: batch-service, ecs-instance, job
        return f"genobatch-{self.stack}-{kind}"

    def repository(self, image: str) -> str:
        return f"genobatch-{self.stack}/{image}"

    def compute_environment(self, kind: str) -> str:  # kind: spot, ondemand
        return f"genobatch-{self.stack}-{kind}"

    def queue(self, kind: str) -> str:
        return f"genobatch-{self.stack}-{kind}"


@dataclass
class Change:
    kind: str
    name: str
    action: str  # created, exists, deleted, missing, ok, BROKEN: ...


class Stack:
    def __init__(self, aws: Aws, name: str, images: Sequence[str]) -> None:
        """``images``: the genobatch tool images the steps run in (the runner's is added): an ECR repository each."""
        self.aws = aws
        self.images = sorted({RUNNER.name, *images})
        self.names = Names(name, aws.account(), aws.region)
        self.changes: list[Change] = []
        self.network = Network(aws.client("ec2"), name, aws.region, self._report)
        self.tags = {STACK_TAG: name}

    def _report(self, kind: str, name: str, action: str) -> None:
        self.changes.append(Change(kind, name, action))

    # --- up -----------------------------------------------------------------------------------------------
    def up(self, options: StackOptions) -> list[Change]:
        self.changes = []
        self._bucket()
        self.network.up(options.nat)
        roles = self._roles()
        self._repositories()
        self._compute(options, roles)
        return self.changes

    def _bucket(self) -> None:
        s3, bucket = self.aws.client("s3"), self.names.bucket
        try:
            s3.head_bucket(Bucket=bucket)
            self._report("s3-bucket", bucket, "exists")
        except ClientError:
            kwargs: dict[str, Any] = {}
            if self.aws.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.aws.region}
            s3.create_bucket(Bucket=bucket, **kwargs)
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": STACK_TAG, "Value": self.names.stack}]})
            self._report("s3-bucket", bucket, "created")
        # Settings are (re)applied every time: cheap, and a bucket someone loosened is tightened again.
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]
            },
        )
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )

    def _roles(self) -> dict[str, str]:
        """The three roles; returns kind -> ARN (and "instance-profile" -> its ARN)."""
        iam, arns = self.aws.client("iam"), {}
        wanted = {
            "batch-service": ("batch", [BATCH_SERVICE_POLICY], None),
            "ecs-instance": ("ec2", [ECS_INSTANCE_POLICY], None),
            "job": ("ecs-tasks", [], job_bucket_policy(self.names.bucket)),
        }
        for kind, (service, managed, inline) in wanted.items():
            name = self.names.role(kind)
            try:
                arns[kind] = iam.get_role(RoleName=name)["Role"]["Arn"]
                self._report("iam-role", name, "exists")
            except iam.exceptions.NoSuchEntityException:
                arns[kind] = iam.create_role(
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(trust_policy(service)),
                    Tags=[{"Key": STACK_TAG, "Value": self.names.stack}],
                )["Role"]["Arn"]
                self._report("iam-role", name, "created")
            for policy in managed:
                iam.attach_role_policy(RoleName=name, PolicyArn=policy)
            if inline is not None:
                iam.put_role_policy(RoleName=name, PolicyName="run-bucket", PolicyDocument=json.dumps(inline))
        profile = self.names.role("ecs-instance")
        try:
            found = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]
            self._report("instance-profile", profile, "exists")
        except iam.exceptions.NoSuchEntityException:
            found = iam.create_instance_profile(InstanceProfileName=profile)["InstanceProfile"]
            self._report("instance-profile", profile, "created")
        if not any(r["RoleName"] == profile for r in found.get("Roles", [])):
            iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=profile)
        arns["instance-profile"] = found["Arn"]
        return arns

    def _repositories(self) -> None:
        ecr = self.aws.client("ecr")
        for image in self.images:
            name = self.names.repository(image)
            try:
                ecr.describe_repositories(repositoryNames=[name])
                self._report("ecr-repository", name, "exists")
            except ecr.exceptions.RepositoryNotFoundException:
                ecr.create_repository(
                    repositoryName=name,
                    imageScanningConfiguration={"scanOnPush": True},
                    tags=[{"Key": STACK_TAG, "Value": self.names.stack}],
                )
                self._report("ecr-repository", name, "created")

    def _compute(self, options: StackOptions, roles: dict[str, str]) -> None:
        batch = self.aws.client("batch")
        subnets = self.network.private_subnets()
        group = self.network.job_security_group()
        kinds = ["spot", "ondemand"] if options.spot else ["ondemand"]
        for kind in kinds:
            name = self.names.compute_environment(kind)
            if _describe_environment(batch, name):
                self._report("compute-environment", name, "exists")
                continue
            resources: dict[str, Any] = {
                "type": "SPOT" if kind == "spot" else "EC2",
                "allocationStrategy": "SPOT_CAPACITY_OPTIMIZED" if kind == "spot" else "BEST_FIT_PROGRESSIVE",
                "minvCpus": 0,
                "maxvCpus": options.max_vcpus,
                "desiredvCpus": 0,
                "instanceTypes": list(options.instance_families),
                "subnets": subnets,
                "securityGroupIds": [group],
                "instanceRole": roles["instance-profile"],
                "tags": {STACK_TAG: self.names.stack},
            }
            batch.create_compute_environment(
                computeEnvironmentName=name,
                type="MANAGED",
                state="ENABLED",
                serviceRole=roles["batch-service"],
                computeResources=resources,
                tags=self.tags,
            )
            self._report("compute-environment", name, "created")
        queues = {"ondemand": ["ondemand"], "spot": kinds}  # the default queue tries spot first
        for queue, environments in queues.items():
            name = self.names.queue(queue)
            if _describe_queue(batch, name):
                self._report("job-queue", name, "exists")
                continue
            order = [
                {"order": i, "computeEnvironment": self.names.compute_environment(env)}
                for i, env in enumerate(environments, start=1)
            ]
            batch.create_job_queue(
                jobQueueName=name, state="ENABLED", priority=10, computeEnvironmentOrder=order, tags=self.tags
            )
            self._report("job-queue", name, "created")

    # --- status ---------------------------------------------------------------------------------------------
    def status(self) -> list[Change]:
        """What exists, what is missing, and what is not in a usable state."""
        self.changes = []
        s3, batch, iam, ecr = (self.aws.client(s) for s in ("s3", "batch", "iam", "ecr"))
        try:
            s3.head_bucket(Bucket=self.names.bucket)
            blocked = s3.get_public_access_block(Bucket=self.names.bucket)["PublicAccessBlockConfiguration"]
            self._report("s3-bucket", self.names.bucket, "ok" if all(blocked.values()) else "BROKEN: public access")
        except ClientError:
            self._report("s3-bucket", self.names.bucket, "missing")
        vpc = self.network.vpc_id()
        self._report("vpc", vpc or "-", "ok" if vpc else "missing")
        subnets = self.network.private_subnets()
        self._report("private-subnets", ", ".join(subnets) or "-", "ok" if len(subnets) == 2 else "missing")
        for kind in ("batch-service", "ecs-instance", "job"):
            try:
                iam.get_role(RoleName=self.names.role(kind))
                self._report("iam-role", self.names.role(kind), "ok")
            except iam.exceptions.NoSuchEntityException:
                self._report("iam-role", self.names.role(kind), "missing")
        for image in self.images:
            name = self.names.repository(image)
            try:
                images = ecr.list_images(repositoryName=name)["imageIds"]
                self._report("ecr-repository", name, f"ok ({len(images)} image(s))" if images else "ok (empty: push)")
            except ecr.exceptions.RepositoryNotFoundException:
                self._report("ecr-repository", name, "missing")
        for kind in ("spot", "ondemand"):
            name = self.names.compute_environment(kind)
            env = _describe_environment(batch, name)
            state = (
                "missing"
                if env is None
                else "ok"
                if env.get("status") == "VALID"
                else f"BROKEN: {env.get('statusReason')}"
            )
            self._report("compute-environment", name, state)
        for kind in ("spot", "ondemand"):
            name = self.names.queue(kind)
            queue = _describe_queue(batch, name)
            state = "missing" if queue is None else "ok" if queue.get("state") == "ENABLED" else "BROKEN: disabled"
            self._report("job-queue", name, state)
        return self.changes

    # --- down -----------------------------------------------------------------------------------------------
    def down(self) -> list[Change]:
        self.changes = []
        batch = self.aws.client("batch")
        queues = [self.names.queue(k) for k in ("spot", "ondemand")]
        environments = [self.names.compute_environment(k) for k in ("spot", "ondemand")]
        for name in queues:
            if _describe_queue(batch, name):
                batch.update_job_queue(jobQueue=name, state="DISABLED")
                _wait_for(_describe_queue, batch, name, ("CREATING", "UPDATING"))
                batch.delete_job_queue(jobQueue=name)
                _wait_for(_describe_queue, batch, name, ("DELETING", "VALID", "INVALID"))
                self._report("job-queue", name, "deleted")
        for name in environments:
            if _describe_environment(batch, name):
                batch.update_compute_environment(computeEnvironment=name, state="DISABLED")
                _wait_for(_describe_environment, batch, name, ("CREATING", "UPDATING"))
                batch.delete_compute_environment(computeEnvironment=name)
                _wait_for(_describe_environment, batch, name, ("DELETING", "VALID", "INVALID"))
                self._report("compute-environment", name, "deleted")
        for definition in self._job_definitions():
            batch.deregister_job_definition(jobDefinition=definition)
            self._report("job-definition", definition, "deregistered")
        self._delete_repositories()
        self._delete_roles()
        self.network.down()
        self._delete_bucket()
        return self.changes

    def _job_definitions(self) -> list[str]:
        batch, prefix = self.aws.client("batch"), f"genobatch-{self.names.stack}-"
        found = batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
        return [f"{d['jobDefinitionName']}:{d['revision']}" for d in found if d["jobDefinitionName"].startswith(prefix)]

    def _delete_repositories(self) -> None:
        ecr = self.aws.client("ecr")
        for image in self.images:
            name = self.names.repository(image)
            try:
                ecr.delete_repository(repositoryName=name, force=True)
                self._report("ecr-repository", name, "deleted")
            except ecr.exceptions.RepositoryNotFoundException:
                pass

    def _delete_roles(self) -> None:
        iam = self.aws.client("iam")
        profile = self.names.role("ecs-instance")
        try:
            for role in iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"].get("Roles", []):
                iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role["RoleName"])
            iam.delete_instance_profile(InstanceProfileName=profile)
            self._report("instance-profile", profile, "deleted")
        except iam.exceptions.NoSuchEntityException:
            pass
        for kind in ("batch-service", "ecs-instance", "job"):
            name = self.names.role(kind)
            try:
                for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                    iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
                for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                    iam.delete_role_policy(RoleName=name, PolicyName=policy)
                iam.delete_role(RoleName=name)
                self._report("iam-role", name, "deleted")
            except iam.exceptions.NoSuchEntityException:
                pass

    def _delete_bucket(self) -> None:
        s3, bucket = self.aws.client("s3"), self.names.bucket
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            return
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if doomed:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed})
        s3.delete_bucket(Bucket=bucket)
        self._report("s3-bucket", bucket, "deleted")

    # --- what runs need from the stack -----------------------------------------------------------------------
    def ecr_ref(self, image: str, tag: str = __version__) -> str:
        registry = f"{self.names.account}.dkr.ecr.{self.names.region}.amazonaws.com"
        return f"{registry}/{self.names.repository(image)}:{tag}"

    def batch_settings(self, **overrides: Any) -> AwsBatchSettings:
        """Settings for ``AwsBatchBackend`` on this stack: spot queue first (if made), on-demand fallback."""
        batch = self.aws.client("batch")
        spot = _describe_queue(batch, self.names.queue("spot")) is not None
        role = self.aws.client("iam").get_role(RoleName=self.names.role("job"))["Role"]["Arn"]
        values: dict[str, Any] = {
            "queue": self.names.queue("spot" if spot else "ondemand"),
            "on_demand_queue": self.names.queue("ondemand"),
            "job_role_arn": role,
            "definition_prefix": f"genobatch-{self.names.stack}",
            "bucket": self.names.bucket,
            **overrides,
        }
        return AwsBatchSettings(**values)

    def leftovers(self) -> list[str]:
        """What still exists under this stack's names and tags (after ``down``: must be empty)."""
        return [c.kind + " " + c.name for c in self.status() if c.action != "missing"] + self.network.leftovers()


def _describe_queue(batch: Any, name: str) -> dict[str, Any] | None:
    found = [q for q in batch.describe_job_queues(jobQueues=[name])["jobQueues"] if q.get("status") != "DELETED"]
    return found[0] if found else None


def _describe_environment(batch: Any, name: str) -> dict[str, Any] | None:
    found = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
    live = [e for e in found if e.get("status") != "DELETED"]
    return live[0] if live else None


def _wait_for(
    describe: Callable[[Any, str], dict[str, Any] | None], batch: Any, name: str, busy: tuple[str, ...]
) -> None:
    """Wait while Batch is still busy with a queue or environment (status in ``busy``); gone counts as done."""
    deadline = time.monotonic() + 900
    while (found := describe(batch, name)) is not None and found.get("status") in busy:
        if time.monotonic() > deadline:
            raise TimeoutError(f"AWS Batch did not finish with {name} in time")
        time.sleep(5)


def push_images(stack: Stack, binary: str = "podman", push: bool = True) -> list[str]:
    """Tag each local image with its ECR name in the stack's repositories; log in to ECR and push them."""
    ecr = stack.aws.client("ecr")
    targets = []
    for image in stack.images:
        target = stack.ecr_ref(image)
        run_checked([binary, "tag", image_ref(image), target])
        targets.append(target)
    if push:
        data = ecr.get_authorization_token()["authorizationData"][0]
        user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
        registry = data["proxyEndpoint"].removeprefix("https://")
        run_checked([binary, "login", "--username", user, "--password-stdin", registry], stdin=password)
        for target in targets:
            run_checked([binary, "push", target])
    return targets


def run_checked(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(argv[:3])}... failed: {result.stderr.strip()[-500:]}")


def job_logs(stack: Stack, job_id: str) -> str:
    """Every attempt's CloudWatch log of a Batch job (log group /aws/batch/job)."""
    batch, logs = stack.aws.client("batch"), stack.aws.client("logs")
    found = batch.describe_jobs(jobs=[job_id])["jobs"]
    if not found:
        raise ImageError(f"no Batch job {job_id}")
    detail = found[0]
    streams = [(a.get("container") or {}).get("logStreamName") for a in detail.get("attempts") or []]
    streams = [s for s in streams if s] or [(detail.get("container") or {}).get("logStreamName")]
    parts = []
    for number, stream in enumerate(streams, start=1):
        if not stream:
            continue
        events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)
        parts.append(f"--- attempt {number} ({stream})")
        parts += [e["message"] for e in events["events"]]
    return "\n".join(parts) or f"job {job_id} ({detail['status']}) has no log yet"
