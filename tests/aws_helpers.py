"""A real AWS API server on loopback for the AWS tests: moto, started in this process on 127.0.0.1.

moto's Batch runs each job in a real container through a Docker API: the fixture starts podman's
(``podman system service``) on a private socket and stops it afterwards. Job containers use the host's
network, so they reach the moto server on 127.0.0.1 like any other client.

moto differs from AWS Batch in ways the product must not bend to, so they are patched here, in the test
setup only (each patch names the AWS behaviour it restores):
- ``describe_jobs`` leaves out the exit code (AWS reports it per job and per attempt) and the image;
- array children get no ``AWS_BATCH_JOB_ARRAY_INDEX`` and no job gets ``AWS_BATCH_JOB_ATTEMPT``, nor the
  credentials that ECS gives a job from its job role;
- an array parent whose children failed never leaves PENDING, and its status moves only when someone
  describes it, so jobs that depend on an array wait forever;
- a timed-out attempt has no status reason (AWS: "Job attempt duration exceeded timeout");
- job names of one character are refused (AWS allows 1 to 128);
- ``retryStrategy`` is ignored (AWS runs up to ``attempts`` attempts, each rule of ``evaluateOnExit`` matched
  in order, retrying when none matches), and ``SEQUENTIAL`` and ``N_TO_N`` array dependencies are not
  implemented (child i waits for child i-1, or for child i of the other array).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",  # so that AWS-managed policies can be attached
    "MOTO_DOCKER_NETWORK_MODE": "host",  # job containers reach the server on 127.0.0.1
}
TIMEOUT_REASON = "Job attempt duration exceeded timeout"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RETRY_STRATEGIES: dict[str, dict[str, Any]] = {}  # job id -> the retryStrategy it was submitted with


def should_retry(strategy: dict[str, Any], exit_code: int | None, status_reason: str) -> bool:
    """AWS's rule: the first evaluateOnExit rule that matches decides; with none matching, retry."""
    for rule in strategy.get("evaluateOnExit") or []:
        matches = [
            fnmatch.fnmatchcase(value, rule[key])
            for key, value in (("onExitCode", str(exit_code)), ("onStatusReason", status_reason), ("onReason", ""))
            if key in rule
        ]
        if matches and all(matches):
            return str(rule["action"]).upper() == "RETRY"
    return True


def patch_moto_batch() -> None:
    from moto.batch import models, responses

    job_class: Any = models.Job
    if getattr(job_class, "_genobatch_patched", False):
        return
    describe, container_property, mark_stopped = (
        job_class.describe,
        job_class._get_container_property,
        job_class._mark_stopped,
    )
    run, stop_attempt, submit = job_class.run, job_class._stop_attempt, responses.BatchResponse.submitjob

    def patched_submit(self: Any) -> str:
        body: str = submit(self)
        if self._get_param("retryStrategy"):
            RETRY_STRATEGIES[json.loads(body)["jobId"]] = self._get_param("retryStrategy")
        return body

    def patched_run(self: Any) -> None:
        number = 1
        while True:
            self._genobatch_attempt = number
            run(self)
            strategy = RETRY_STRATEGIES.get(self.job_id.partition(":")[0], {})
            if self.status != "FAILED" or self.stop or not self.attempts or number >= int(strategy.get("attempts", 1)):
                return
            if not should_retry(strategy, self.exit_code, self.job_stopped_reason or ""):
                return
            number += 1  # a fresh attempt, as AWS starts one: back to SUBMITTED
            self.job_stopped, self.exit_code, self.job_stopped_reason = False, None, None
            self._status, self._tick = "SUBMITTED", 0

    def patched_stop_attempt(self: Any) -> None:
        stop_attempt(self)
        if self.latest_attempt:  # each attempt keeps its own exit code and reason, as on AWS
            self.latest_attempt["container"]["exitCode"] = self.exit_code
            if self.job_stopped_reason:
                self.latest_attempt["statusReason"] = self.job_stopped_reason

    def patched_describe(self: Any) -> dict[str, Any]:
        children = self._child_jobs or []
        ended = children and all(c.status in ("SUCCEEDED", "FAILED") for c in children)
        if ended and any(c.status == "FAILED" for c in children):
            self.status = "FAILED"
        result: dict[str, Any] = describe(self)
        if "container" in result:  # AWS names the image a job ran in
            result["container"].setdefault("image", self.job_definition.container_properties.get("image"))
        if self.exit_code is not None:
            result.setdefault("container", {})["exitCode"] = self.exit_code
        return result

    def patched_property(self: Any, name: str, default: Any) -> Any:
        value = container_property(self, name, default)
        if name == "environment":
            attempt = str(getattr(self, "_genobatch_attempt", 1))
            value = [*value, {"name": "AWS_BATCH_JOB_ATTEMPT", "value": attempt}]
            # On AWS the job role's credentials reach the container through ECS; moto provides none.
            value += [{"name": k, "value": MOTO_ENV[k]} for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
            value.append({"name": "AWS_DEFAULT_REGION", "value": MOTO_ENV["AWS_DEFAULT_REGION"]})
            index = (self.array_properties or {}).get("index")
            if index is not None:
                value.append({"name": "AWS_BATCH_JOB_ARRAY_INDEX", "value": str(index)})
        return value

    def patched_wait(self: Any) -> bool:
        index = (self.array_properties or {}).get("index")
        wanted = []
        for dependency in self.depends_on:
            kind = dependency.get("type")
            if kind == "SEQUENTIAL":
                if index:
                    wanted.append(f"{self.job_id.partition(':')[0]}:{index - 1}")
            elif kind == "N_TO_N" and index is not None:
                wanted.append(f"{dependency['jobId']}:{index}")
            elif "jobId" in dependency:
                wanted.append(dependency["jobId"])
        while True:
            jobs = [self.all_jobs[w] for w in wanted if w in self.all_jobs]
            for job in jobs:
                if job._child_jobs:
                    job.describe()  # moves an array parent's status, as AWS does on its own
            if any(job.status == "FAILED" for job in jobs):
                self.job_stopped_reason = "Dependent job failed"
                self._mark_stopped(success=False)
                return False
            if all(job.status == "SUCCEEDED" for job in jobs):
                return True
            if self.stop:
                self._mark_stopped(success=False)
                return False
            time.sleep(0.5)

    def patched_mark_stopped(self: Any, success: bool = True) -> None:
        duration = self._get_attempt_duration()
        ran = (datetime.now() - self.job_started_at).total_seconds() if self.job_started_at else 0
        if not success and duration and ran >= duration and not self.job_stopped_reason:
            self.job_stopped_reason = TIMEOUT_REASON
        mark_stopped(self, success)

    models.JOB_NAME_REGEX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")  # AWS allows 1 character; moto 2+
    responses.BatchResponse.submitjob = patched_submit
    job_class.run = patched_run
    job_class._stop_attempt = patched_stop_attempt
    job_class.describe = patched_describe
    job_class._get_container_property = patched_property
    job_class._wait_for_dependencies = patched_wait
    job_class._mark_stopped = patched_mark_stopped
    job_class._genobatch_patched = True


class MotoServer:
    def __init__(self, tmp: Path) -> None:
        self.socket = tmp / "podman.sock"
        self.podman = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            assert time.monotonic() < deadline, "podman's API socket did not appear"
            time.sleep(0.1)
        self.saved = {k: os.environ.get(k) for k in [*MOTO_ENV, "DOCKER_HOST", "AWS_ENDPOINT_URL"]}
        os.environ.update(MOTO_ENV)
        os.environ["DOCKER_HOST"] = f"unix://{self.socket}"
        from moto.server import ThreadedMotoServer

        patch_moto_batch()
        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint

    def stop(self) -> None:
        self.server.stop()
        self.podman.terminate()
        self.podman.wait(timeout=30)
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    from .container_helpers import require_podman

    require_podman()
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


_STACKS: set[str] = set()


def batch_on_moto(server: MotoServer, stack: str) -> Any:
    """An AWS Batch backend on a stack made by ``genobatch aws up`` in moto, with the tool images tagged
    under their ECR names (moto's ECR keeps no image data, so the images are not pushed)."""
    from genobatch.executors.awsbatch.backend import AwsBatchBackend

    infra = prepare_stack(server, stack)
    return AwsBatchBackend(infra.aws, infra.batch_settings(default_image=infra.ecr_ref("runner")))


def prepare_stack(server: MotoServer, stack: str) -> Any:
    """``aws up`` once per session, and the tool images tagged with their ECR names."""
    from genobatch.executors.awsbatch.clients import Aws
    from genobatch.executors.awsbatch.infra import Stack, StackOptions, push_images
    from genobatch.pipeline.library import Library

    infra = Stack(Aws(endpoint_url=server.endpoint), stack, [spec.name for spec in Library.load().images])
    if stack not in _STACKS:
        infra.up(StackOptions(stack))
        push_images(infra, push=False)  # moto's ECR stores no images: podman has them under the ECR names
        _STACKS.add(stack)
    return infra
