"""The AWS Batch endpoint's cost: requests per second for submit-job and describe-jobs (100 ids each) through
the endpoint (boto3, as users call it) against the Python API (``BatchClient``), in the same run.

Not a test: it prints and saves JSON (``bench/results/endpoint.json``).

    python -m bench.endpoint [--submits 500] [--describes 200]

The engine runs as its own process (``genobatch engine run``, which serves the endpoint), as users run it. Jobs
go to a queue whose compute environment is DISABLED, so nothing runs and only the API is measured. boto3's own
cost (serialising, signing, parsing by the model) is part of what a user sees; a plain keep-alive HTTP client
(``http.client``) is measured too, to show what the endpoint itself costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore

from genobatch.batch import BatchClient
from genobatch.batch.endpoint_service import read_endpoint

from . import environment, save

RESULTS = Path(__file__).parent / "results" / "endpoint.json"
SIGNED = "AWS4-HMAC-SHA256 Credential=bench/20261130/us-east-1/batch/aws4_request, SignedHeaders=host, Signature=0"
Call = Callable[[int], Any]
SUBMIT = {"jobName": "bench", "jobQueue": "bench", "jobDefinition": "true"}


def rate(count: int, call: Callable[[int], Any]) -> float:
    """Calls per second of ``call(i)`` for i in 0..count-1."""
    start = time.perf_counter()
    for i in range(count):
        call(i)
    return count / (time.perf_counter() - start)


def start_engine(state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    engine = subprocess.Popen(
        [sys.executable, "-m", "genobatch", "engine", "run", "--state-dir", str(state_dir)], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = read_endpoint(state_dir)
        if found:
            return engine, str(found["url"])
        time.sleep(0.05)
    engine.kill()
    raise RuntimeError("the engine did not publish its endpoint")


class RawClient:
    """One keep-alive connection, requests as botocore sends them, no SDK work."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)

    def call(self, path: str, request: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(request)
        headers = {"Authorization": SIGNED, "Content-Type": "application/json"}
        self.connection.request("POST", path, body, headers)
        response = self.connection.getresponse()
        answer: dict[str, Any] = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(answer)
        return answer


def measure(state_dir: Path, url: str, submits: int, describes: int) -> list[dict[str, Any]]:
    api = BatchClient(state_dir)
    api.create_compute_environment(computeEnvironmentName="bench", state="DISABLED", computeResources={"type": "LOCAL"})
    api.create_job_queue(
        jobQueueName="bench", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "bench"}]
    )
    api.register_job_definition(
        jobDefinitionName="true", type="container", containerProperties={"command": ["true"], "vcpus": 1, "memory": 64}
    )
    sdk: Any = boto3.client(  # untyped: the stubs want TypedDicts, not a request dict
        "batch", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    raw = RawClient(url)
    ids = [api.submit_job(**SUBMIT)["jobId"] for _ in range(100)]
    results = []
    cases: list[tuple[str, int, Call, Call, Call]] = [
        (
            "submit-job",
            submits,
            lambda i: api.submit_job(**SUBMIT),
            lambda i: sdk.submit_job(**SUBMIT),
            lambda i: raw.call("/v1/submitjob", SUBMIT),
        ),
        (
            "describe-jobs (100 ids)",
            describes,
            lambda i: api.describe_jobs(ids),
            lambda i: sdk.describe_jobs(jobs=ids),
            lambda i: raw.call("/v1/describejobs", {"jobs": ids}),
        ),
    ]
    for case, count, python_call, sdk_call, raw_call in cases:
        sdk_call(0)  # connect, load the model
        python_rate, sdk_rate, raw_rate = rate(count, python_call), rate(count, sdk_call), rate(count, raw_call)
        results.append(
            {
                "case": case,
                "requests": count,
                "python_api_per_second": round(python_rate, 1),
                "endpoint_boto3_per_second": round(sdk_rate, 1),
                "endpoint_http_client_per_second": round(raw_rate, 1),
                "boto3_ratio_to_python_api": round(sdk_rate / python_rate, 3),
                "http_client_ratio_to_python_api": round(raw_rate / python_rate, 3),
            }
        )
        print(json.dumps(results[-1]))
    api.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=500)
    parser.add_argument("--describes", type=int, default=200)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "state"
        state_dir.mkdir()
        engine, url = start_engine(state_dir)
        try:
            results = measure(state_dir, url, args.submits, args.describes)
        finally:
            engine.terminate()
            engine.wait(timeout=60)
    report = {
        "benchmark": "endpoint",
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "environment": environment(boto3=boto3.__version__, botocore=botocore.__version__),
        "results": results,
    }
    save(report, args.output)


if __name__ == "__main__":
    main()
