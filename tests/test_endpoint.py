"""The engine as an AWS Batch REST endpoint, driven by boto3 (and raw HTTP for what boto3 never sends) against a
real background engine (`genobatch engine start`), and by the in-process engine a pipeline run starts."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError, ParamValidationError  # noqa: E402

from genobatch.batch import registry  # noqa: E402
from genobatch.batch.daemon import engine_pid  # noqa: E402
from genobatch.batch.endpoint import BatchApi  # noqa: E402
from genobatch.batch.endpoint_service import ENDPOINT_FILE  # noqa: E402
from genobatch.batch.errors import EnvironmentFault  # noqa: E402
from genobatch.executors.local import LocalBackend  # noqa: E402

SIGNED = "AWS4-HMAC-SHA256 Credential={key}/20261130/us-east-1/batch/aws4_request, SignedHeaders=host, Signature=0"


# --- helpers (test_endpoint_cli uses them too) ------------------------------------------------------------
def genobatch(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genobatch", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class BackgroundEngine:
    state_dir: Path
    started: dict[str, Any]  # what `genobatch engine start` printed

    @property
    def url(self) -> str:
        url: str = self.started["endpoint"]
        return url

    def stop(self) -> None:
        done = genobatch(self.state_dir, "engine", "stop", "--now")
        if done.returncode != 0:  # never leave an engine behind, even when the CLI is broken
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.started["pid"], signal.SIGKILL)
        assert done.returncode == 0, done.stderr


def start_engine(state_dir: Path, *options: str) -> BackgroundEngine:
    state_dir.mkdir(parents=True, exist_ok=True)
    done = genobatch(state_dir, "engine", "start", "--idle-exit", "600", *options)
    log = (state_dir / "engine.log").read_text() if (state_dir / "engine.log").exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + log
    return BackgroundEngine(state_dir, json.loads(done.stdout))


def batch_client(url: str, key: str = "any-key") -> Any:
    return boto3.client(
        "batch", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key="any-secret"
    )


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll until ``check`` returns something truthy: a guard against hangs, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def finished(client: Any, job_ids: list[str]) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        jobs = client.describe_jobs(jobs=job_ids)["jobs"]
        return jobs if all(j["status"] in ("SUCCEEDED", "FAILED") for j in jobs) else None

    jobs: list[dict[str, Any]] = wait_for(done, f"jobs {job_ids} to end")
    return jobs


def raw(url: str, method: str, path: str, body: bytes | None = b"{}", **headers: str) -> tuple[int, dict[str, Any]]:
    """One HTTP request as no AWS SDK would send it; (status, JSON body). The error code must be in both the
    x-amzn-ErrorType header and the body's __type, as AWS sends them."""
    headers.setdefault("Authorization", SIGNED.format(key="x"))
    request = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read())
        assert exc.headers["x-amzn-ErrorType"] == answer["__type"]
        return exc.code, answer


def raw_with_length(url: str, length: str) -> tuple[int, str]:
    """A request whose Content-Length is not a byte count: (status, error code); the connection is closed after."""
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        conn.putrequest("POST", "/v1/describejobqueues")
        conn.putheader("Authorization", SIGNED.format(key="x"))
        conn.putheader("Content-Length", length)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read())["__type"]
    finally:
        conn.close()


# --- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundEngine]:
    running = start_engine(tmp_path_factory.mktemp("endpoint") / "state")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def batch(engine: BackgroundEngine) -> Any:
    """A queue of its own (one vCPU, so array children run one at a time) and a shell job definition."""
    client = batch_client(engine.url)
    client.create_compute_environment(  # botocore checks the shapes: type and maxvCpus are required
        computeEnvironmentName="one-cpu", type="MANAGED", computeResources={"type": "LOCAL", "maxvCpus": 1}
    )
    client.create_job_queue(
        jobQueueName="q", priority=5, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "one-cpu"}]
    )
    client.register_job_definition(
        jobDefinitionName="sh",
        type="container",
        containerProperties={"command": ["sh", "-c", "true"], "vcpus": 1, "memory": 64},
    )
    return client


def run(client: Any, name: str, script: str, **extra: Any) -> str:
    job_id: str = client.submit_job(
        jobName=name, jobQueue="q", jobDefinition="sh", containerOverrides={"command": ["sh", "-c", script]}, **extra
    )["jobId"]
    return job_id


# --- the engine serves it ---------------------------------------------------------------------------------
def test_start_prints_the_endpoint_and_status_reports_it(engine: BackgroundEngine) -> None:
    assert engine.started["endpoint"].startswith("http://127.0.0.1:")
    assert "token" not in engine.started  # loopback: any credentials
    written = json.loads((engine.state_dir / ENDPOINT_FILE).read_text())
    assert written["url"] == engine.url and written["pid"] == engine.started["pid"] and not written["tokenRequired"]
    status = json.loads(genobatch(engine.state_dir, "engine", "status").stdout)
    assert status["endpoint"] == engine.url


def test_submit_arrays_dependencies_and_retries(batch: Any) -> None:
    first = run(batch, "first", "echo $AWS_BATCH_JOB_ARRAY_INDEX", arrayProperties={"size": 3})
    second = run(batch, "second", "true", arrayProperties={"size": 3}, dependsOn=[{"jobId": first, "type": "N_TO_N"}])
    chain = run(batch, "chain", "true", arrayProperties={"size": 3}, dependsOn=[{"type": "SEQUENTIAL"}])
    retried = run(
        batch,
        "retried",
        "exit 3",
        retryStrategy={"attempts": 3, "evaluateOnExit": [{"onExitCode": "3", "action": "RETRY"}]},
    )
    given_up = run(
        batch,
        "given-up",
        "exit 2",
        retryStrategy={
            "attempts": 3,
            "evaluateOnExit": [{"onExitCode": "2", "action": "EXIT"}, {"onExitCode": "*", "action": "RETRY"}],
        },
    )
    jobs = {j["jobId"]: j for j in finished(batch, [first, second, chain, retried, given_up])}
    for parent in (first, second, chain):
        assert jobs[parent]["status"] == "SUCCEEDED"
        assert jobs[parent]["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    assert [len(jobs[retried]["attempts"]), jobs[retried]["status"]] == [3, "FAILED"]
    assert [len(jobs[given_up]["attempts"]), jobs[given_up]["container"]["exitCode"]] == [1, 2]

    children = {
        job_id: batch.describe_jobs(jobs=[f"{job_id}:{i}" for i in range(3)])["jobs"]
        for job_id in (first, second, chain)
    }
    for i, child in enumerate(children[second]):
        assert child["dependsOn"] == [{"jobId": f"{first}:{i}", "type": "N_TO_N"}]
        assert child["startedAt"] >= children[first][i]["stoppedAt"]
    for before, after in zip(children[chain], children[chain][1:], strict=False):
        assert after["startedAt"] >= before["stoppedAt"]
    summaries = batch.list_jobs(arrayJobId=first, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(s["arrayProperties"]["index"] for s in summaries) == [0, 1, 2]


def test_cancel_and_terminate(batch: Any) -> None:
    sleeper = run(batch, "sleeper", "sleep 60")
    waiter = run(batch, "waiter", "true", dependsOn=[{"jobId": sleeper}])
    wait_for(lambda: batch.describe_jobs(jobs=[sleeper])["jobs"][0]["status"] == "RUNNING", "sleeper to run")
    batch.cancel_job(jobId=waiter, reason="not needed")
    batch.terminate_job(jobId=sleeper, reason="taking too long")
    jobs = {j["jobId"]: j for j in finished(batch, [sleeper, waiter])}
    assert [jobs[waiter]["status"], jobs[waiter]["statusReason"]] == ["FAILED", "not needed"]
    assert jobs[sleeper]["status"] == "FAILED" and "taking too long" in jobs[sleeper]["statusReason"]


# --- pagination -------------------------------------------------------------------------------------------
def test_list_jobs_pages_with_boto3_paginator_and_by_hand(batch: Any) -> None:
    ids = [run(batch, f"page-{i}", "true") for i in range(5)]
    finished(batch, ids)
    query = {"jobQueue": "q", "filters": [{"name": "JOB_NAME", "values": ["page-*"]}]}
    pages = list(batch.get_paginator("list_jobs").paginate(**query, PaginationConfig={"PageSize": 2}))
    assert [len(p["jobSummaryList"]) for p in pages] == [2, 2, 1]
    assert [s["jobId"] for p in pages for s in p["jobSummaryList"]] == ids

    seen, token = [], None
    while True:
        page = batch.list_jobs(**query, maxResults=3, **({"nextToken": token} if token else {}))
        seen += [s["jobId"] for s in page["jobSummaryList"]]
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == ids

    for bad in ("garbage", batch.list_jobs(**query, maxResults=1)["nextToken"][:-2] + "xx"):
        with pytest.raises(ClientError) as err:
            batch.list_jobs(**query, nextToken=bad)
        assert err.value.response["Error"]["Code"] == "ClientException"
        assert "Invalid nextToken" in err.value.response["Error"]["Message"]
    other_query_token = batch.list_jobs(jobQueue="q", jobStatus="SUCCEEDED", maxResults=1)["nextToken"]
    with pytest.raises(batch.exceptions.ClientException, match="same parameters"):
        batch.list_jobs(**query, nextToken=other_query_token)
    with pytest.raises(batch.exceptions.ClientException, match="maxResults must be from 1 to 1000"):
        batch.list_jobs(**query, maxResults=1001)


@pytest.mark.parametrize(
    ("operation", "key", "make"),
    [
        ("describe_job_definitions", "jobDefinitions", "register_job_definition"),
        ("describe_job_queues", "jobQueues", "create_job_queue"),
        ("describe_compute_environments", "computeEnvironments", "create_compute_environment"),
    ],
)
def test_describe_verbs_page(batch: Any, operation: str, key: str, make: str) -> None:
    for i in range(3):  # at least three of each, whatever other tests made
        name = f"{operation[9:13]}{i}"
        if make == "register_job_definition":
            batch.register_job_definition(
                jobDefinitionName=name, type="container", containerProperties={"command": ["true"]}
            )
        elif make == "create_job_queue":
            batch.create_job_queue(
                jobQueueName=name, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "one-cpu"}]
            )
        else:
            batch.create_compute_environment(
                computeEnvironmentName=name, type="MANAGED", computeResources={"type": "LOCAL", "maxvCpus": 1}
            )
    everything = getattr(batch, operation)()[key]
    pages = list(batch.get_paginator(operation).paginate(PaginationConfig={"PageSize": 2}))
    assert all(len(p[key]) <= 2 for p in pages) and len(pages) == (len(everything) + 1) // 2
    assert [item for p in pages for item in p[key]] == everything
    with pytest.raises(batch.exceptions.ClientException, match="maxResults must be from 1 to 100"):
        getattr(batch, operation)(maxResults=101)


# --- AWS's errors -----------------------------------------------------------------------------------------
def test_client_errors_are_aws_client_exceptions(batch: Any) -> None:
    with pytest.raises(batch.exceptions.ClientException) as err:
        batch.submit_job(jobName="x", jobQueue="no-such-queue", jobDefinition="sh")
    assert err.value.response["Error"] == {
        "Code": "ClientException",
        "Message": "Job queue no-such-queue does not exist (see describe-job-queues)",
    }
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert str(err.value).startswith("An error occurred (ClientException) when calling the SubmitJob operation: ")
    with pytest.raises(batch.exceptions.ClientException, match="Job definition nope does not exist"):
        batch.submit_job(jobName="x", jobQueue="q", jobDefinition="nope")
    with pytest.raises(batch.exceptions.ClientException, match="at most 100 job ids"):
        batch.describe_jobs(jobs=[f"id-{i}" for i in range(101)])
    # An ARN in the path (its "/" encoded, as botocore sends it) finds its operation, which is not implemented.
    with pytest.raises(batch.exceptions.ClientException, match="TagResource is an AWS Batch operation the local"):
        batch.tag_resource(resourceArn="arn:aws:batch:us-east-1:000000000000:job-queue/q", tags={"a": "b"})
    with pytest.raises(batch.exceptions.ClientException, match=r"jobStatus must be one of|valid values"):
        batch.list_jobs(jobQueue="q", jobStatus="DONE")
    # What botocore checks itself never reaches the endpoint.
    with pytest.raises(ParamValidationError, match='Missing required parameter in input: "jobQueue"'):
        batch.submit_job(jobName="x", jobDefinition="sh")


def test_requests_no_sdk_sends_get_aws_answers(engine: BackgroundEngine) -> None:
    url = engine.url
    status, body = raw(url, "POST", "/v1/submitjob", json.dumps({"jobName": "x", "jobQeue": "q"}).encode())
    assert status == 400 and body["__type"] == "ClientException"
    assert 'Unknown parameter in input: "jobQeue"' in body["message"] and "did you mean jobQueue?" in body["message"]
    assert 'Missing required parameter in input: "jobQueue"' in body["message"]
    assert raw(url, "POST", "/v1/submitjob", b"{not json")[1]["__type"] == "SerializationException"
    assert raw(url, "POST", "/v1/describejobs", b"[1]")[0] == 400
    status, body = raw(url, "POST", "/v1/nosuchthing")
    assert [status, body["__type"]] == [404, "UnknownOperationException"]
    status, body = raw(url, "GET", "/v1/submitjob", None)
    assert [status, body["__type"]] == [404, "UnknownOperationException"] and "it takes POST" in body["message"]
    status, body = raw(url, "POST", "/v1/createschedulingpolicy", b'{"name": "p"}')
    assert [status, body["__type"]] == [400, "ClientException"] and "does not implement" in body["message"]
    status, body = raw(url, "POST", "/v1/describejobqueues", Authorization="")
    assert [status, body["__type"]] == [403, "MissingAuthenticationTokenException"]
    for host in ("attacker.example:80", "[::1", "127.0.0.1.attacker.example"):
        status, body = raw(url, "POST", "/v1/describejobqueues", Host=host)
        assert [status, body["__type"]] == [403, "AccessDeniedException"], host
    assert raw_with_length(url, "ten") == (400, "SerializationException")
    assert raw_with_length(url, "-5") == (400, "SerializationException")
    assert raw(url, "POST", "/v1/describejobqueues", Host=f"localhost:{url.rsplit(':', 1)[1]}")[0] == 200


# --- binding elsewhere needs a token; stopping removes endpoint.json --------------------------------------
def test_other_addresses_need_the_token_as_access_key(tmp_path: Path) -> None:
    engine = start_engine(tmp_path / "state", "--host", "0.0.0.0")
    try:
        token = engine.started["token"]
        path = engine.state_dir / ENDPOINT_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["token"] == token
        with pytest.raises(ClientError) as err:
            batch_client(engine.url, key="not-the-token").describe_job_queues()
        assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert batch_client(engine.url, key=token).describe_job_queues()["jobQueues"][0]["jobQueueName"] == "default"
    finally:
        engine.stop()
    assert not path.exists()
    assert json.loads(genobatch(engine.state_dir, "engine", "status").stdout)["endpoint"] is None


def test_requests_keep_an_idle_engine_then_it_leaves(tmp_path: Path) -> None:
    """--idle-exit counts requests as activity: someone typing aws commands keeps the engine; silence ends it."""
    state = tmp_path / "state"
    state.mkdir()
    done = genobatch(state, "engine", "start", "--idle-exit", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    engine = BackgroundEngine(state, json.loads(done.stdout))
    try:
        client = batch_client(engine.url)
        talking_until = time.monotonic() + 3  # 1.5 times the idle limit, a request every 0.1 s
        while time.monotonic() < talking_until:
            client.describe_job_queues()
            time.sleep(0.1)
        assert engine_pid(state) == engine.started["pid"]
        wait_for(lambda: engine_pid(state) is None, "the idle engine to exit")
        assert not (state / ENDPOINT_FILE).exists()
    finally:
        engine.stop()


def test_a_runs_in_process_engine_serves_it_too(tmp_path: Path) -> None:
    state = tmp_path / "engine"
    before = set(threading.enumerate())
    backend = LocalBackend(state, engine="thread")
    try:
        endpoint = wait_for(
            lambda: (state / ENDPOINT_FILE).exists() and json.loads((state / ENDPOINT_FILE).read_text()),
            "endpoint.json",
        )
        assert endpoint["pid"] == os.getpid()
        client = batch_client(endpoint["url"])
        client.register_job_definition(
            jobDefinitionName="hi", type="container", containerProperties={"command": ["true"]}
        )
        job = client.submit_job(jobName="hi", jobQueue="default", jobDefinition="hi")["jobId"]
        assert finished(client, [job])[0]["status"] == "SUCCEEDED"
        assert backend.poll([job])[0].status.value == "SUCCEEDED"  # the same engine, seen from the Python API
    finally:
        backend.close()
    assert not (state / ENDPOINT_FILE).exists()

    def connection_threads() -> list[threading.Thread]:  # boto3 keeps its connection open: closing ends it
        return [t for t in set(threading.enumerate()) - before if "process_request" in t.name]

    wait_for(lambda: not connection_threads(), "the endpoint's connection threads to end", timeout=10)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (RuntimeError("boom"), "DescribeJobQueues failed: RuntimeError: boom"),
        (EnvironmentFault(28, "state.db: no space left", "free space and retry", "state.db"), "no space left"),
    ],
)
def test_the_machines_faults_are_server_exceptions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Exception, message: str
) -> None:
    """Unit test (an injected fault, in process): what is not the caller's fault answers 500 ServerException."""

    def broken(*args: Any) -> Any:
        raise fault

    monkeypatch.setattr(registry, "describe_job_queues", broken)
    api = BatchApi(tmp_path / "state")
    try:
        answer = api.handle("POST", "/v1/describejobqueues", {"host": "127.0.0.1:9", "authorization": SIGNED}, b"{}")
    finally:
        api.close()
    assert answer.status == 500 and answer.body["__type"] == answer.headers["x-amzn-ErrorType"] == "ServerException"
    assert message in answer.body["message"]
