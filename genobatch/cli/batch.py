"""``genobatch batch``: the AWS CLI's ``aws batch`` verbs against the local engine, plus ``logs`` and ``wait``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genobatch.batch import BatchClient, shapes
from genobatch.batch.errors import ParamValidationError
from genobatch.batch.model import TERMINAL_NAMES, JobStatus

from .awsargs import Field, UsageError, add_fields, build_request

NO_AUTOSTART_ENV = "GENOBATCH_NO_AUTOSTART"

# verb -> (AWS operation name, request fields, BatchClient method)
VERBS: dict[str, tuple[str, list[Field]]] = {
    "create-compute-environment": (
        "CreateComputeEnvironment",
        [
            Field("computeEnvironmentName"),
            Field("type"),
            Field("state"),
            Field("computeResources", "struct", "local caps: type=LOCAL,maxvCpus=N,maxMemoryMiB=M"),
            Field("tags", "map"),
        ],
    ),
    "describe-compute-environments": ("DescribeComputeEnvironments", [Field("computeEnvironments", "list")]),
    "create-job-queue": (
        "CreateJobQueue",
        [
            Field("jobQueueName"),
            Field("state"),
            Field("priority", "int"),
            Field("computeEnvironmentOrder", "structs", "order=1,computeEnvironment=local ..."),
            Field("tags", "map"),
        ],
    ),
    "describe-job-queues": ("DescribeJobQueues", [Field("jobQueues", "list")]),
    "register-job-definition": (
        "RegisterJobDefinition",
        [
            Field("jobDefinitionName"),
            Field("type"),
            Field("parameters", "map"),
            Field("containerProperties", "struct"),
            Field("retryStrategy", "struct"),
            Field("timeout", "struct"),
            Field("tags", "map"),
        ],
    ),
    "describe-job-definitions": (
        "DescribeJobDefinitions",
        [Field("jobDefinitions", "list"), Field("jobDefinitionName"), Field("status")],
    ),
    "submit-job": (
        "SubmitJob",
        [
            Field("jobName"),
            Field("jobQueue"),
            Field("jobDefinition"),
            Field("parameters", "map"),
            Field("containerOverrides", "struct"),
            Field("dependsOn", "structs", "jobId=ID[,type=N_TO_N] ... or type=SEQUENTIAL"),
            Field("arrayProperties", "struct", "size=N"),
            Field("retryStrategy", "struct"),
            Field("timeout", "struct"),
            Field("tags", "map"),
        ],
    ),
    "submit-jobs": ("SubmitJobs", [Field("jobs", "json", "a JSON list of submit-job requests (genobatch)")]),
    "describe-jobs": ("DescribeJobs", [Field("jobs", "list")]),
    "list-jobs": (
        "ListJobs",
        [
            Field("jobQueue"),
            Field("jobStatus"),
            Field("arrayJobId"),
            Field("filters", "structs"),
            Field("maxResults", "int"),
            Field("nextToken"),
        ],
    ),
    "cancel-job": ("CancelJob", [Field("jobId"), Field("reason")]),
    "terminate-job": ("TerminateJob", [Field("jobId"), Field("reason")]),
}
SUBMITTING = ("submit-job", "submit-jobs")


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    batch = subparsers.add_parser("batch", help="AWS Batch's verbs on the local engine", parents=[common])
    verbs = batch.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (_, fields) in VERBS.items():
        parser = verbs.add_parser(verb, parents=[common], help=f"as `aws batch {verb}`")
        add_fields(parser, fields)
        if verb in SUBMITTING:
            parser.add_argument(
                "--no-engine",
                action="store_true",
                help=f"do not start a background engine (also: {NO_AUTOSTART_ENV}=1)",
            )
    logs = verbs.add_parser("logs", parents=[common], help="print a job attempt's stdout and stderr")
    logs.add_argument("job_id")
    logs.add_argument("--attempt", type=int, help="attempt number (default: the latest)")
    logs.add_argument("--stream", choices=("stdout", "stderr", "both"), default="both")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    wait = verbs.add_parser("wait", parents=[common], help="wait until jobs end; exit 1 if any FAILED")
    wait.add_argument("job_ids", nargs="+")
    wait.add_argument("--timeout", type=float)


def run(args: argparse.Namespace, client_for: Callable[[bool], BatchClient]) -> int:
    """Run one verb; returns the exit code (errors are raised to the caller, which formats them)."""
    if args.verb == "logs":
        return _logs(client_for(False), args)
    if args.verb == "wait":
        details = client_for(False).wait(args.job_ids, timeout=args.timeout)
        _print(
            {"jobs": [{"jobId": d["jobId"], "status": d["status"], "statusReason": d["statusReason"]} for d in details]}
        )
        return 0 if all(d["status"] == JobStatus.SUCCEEDED.value for d in details) else 1
    operation, fields = VERBS[args.verb]
    request = build_request(args, fields, lambda member, pairs: shapes.from_shorthand(operation, member, pairs))
    autostart = (
        args.verb in SUBMITTING and not getattr(args, "no_engine", False) and not os.environ.get(NO_AUTOSTART_ENV)
    )
    client = client_for(autostart)
    method = getattr(client, args.verb.replace("-", "_"))
    try:
        response = method(**request)
    except ParamValidationError as exc:  # botocore's refusal before sending: the AWS CLI exits 252 for it
        raise UsageError(str(exc)) from None
    _print(response)
    return 0


def operation_name(verb: str) -> str:
    return VERBS[verb][0] if verb in VERBS else verb


def _print(response: dict[str, Any]) -> None:
    json.dump(response, sys.stdout, indent=4)
    sys.stdout.write("\n")


def _logs(client: BatchClient, args: argparse.Namespace) -> int:
    paths = client.log_paths(args.job_id, args.attempt)
    chosen = [p for p, name in zip(paths, ("stdout", "stderr"), strict=False) if args.stream in (name, "both")]
    offsets = dict.fromkeys(chosen, 0)

    def drain() -> None:
        for path in chosen:
            if not path.exists():
                continue
            with open(path, "rb") as handle:
                handle.seek(offsets[path])
                data = handle.read()
            offsets[path] += len(data)
            target = sys.stderr.buffer if path.name == "stderr.log" and args.stream == "both" else sys.stdout.buffer
            target.write(data)
            target.flush()

    drain()
    while args.follow:
        status = client.describe_jobs([args.job_id])["jobs"][0]["status"]
        latest = client.log_paths(args.job_id, args.attempt)
        if Path(latest[0]).parent != Path(chosen[0]).parent:  # a retry started: follow the new attempt
            drain()
            chosen = [p for p, name in zip(latest, ("stdout", "stderr"), strict=False) if args.stream in (name, "both")]
            offsets = dict.fromkeys(chosen, 0)
        drain()
        if status in TERMINAL_NAMES:
            drain()
            break
        time.sleep(0.5)
    return 0
