"""``genobatch batch``: the AWS CLI's ``aws batch`` verbs against the local engine, plus ``logs`` and ``wait``."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from genobatch.batch import BatchClient
from genobatch.batch.errors import ParamValidationError
from genobatch.batch.model import TERMINAL_NAMES, JobStatus

from .awsargs import EXIT_USAGE, UsageError, add_operation_flags, build_request, print_response

NO_AUTOSTART_ENV = "GENOBATCH_NO_AUTOSTART"

# The verbs of ``aws batch`` that the local engine serves (plus genobatch's submit-jobs); each one's flags are
# its operation's input members (awsargs.add_operation_flags), as the AWS CLI makes them.
VERBS = (
    "create-compute-environment",
    "describe-compute-environments",
    "create-job-queue",
    "describe-job-queues",
    "register-job-definition",
    "describe-job-definitions",
    "submit-job",
    "submit-jobs",
    "describe-jobs",
    "list-jobs",
    "cancel-job",
    "terminate-job",
)
SUBMITTING = ("submit-job", "submit-jobs")


class VerbParser(argparse.ArgumentParser):
    """A verb's parser: a malformed command line (an unknown or misspelt flag too) exits 252 as the AWS CLI does,
    naming the flag meant where one is close. Without it argparse hands unknown flags to the top parser (exit 2)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            flags = [option for action in self._actions for option in action.option_strings]
            unknown = [word for word in extras if word.startswith("-")]
            close = difflib.get_close_matches(unknown[0], flags, n=1) if unknown else []
            self.error(f"Unknown options: {', '.join(extras)}" + (f" (did you mean {close[0]}?)" if close else ""))
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"usage: {self.prog} [flags] (see --help)\n{self.prog}: error: {message}\n")


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    batch = subparsers.add_parser("batch", help="AWS Batch's verbs on the local engine", parents=[common])
    verbs = batch.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=VerbParser)
    for verb in VERBS:
        parser = verbs.add_parser(verb, parents=[common], help=f"as `aws batch {verb}`")
        add_operation_flags(parser, operation_name(verb))
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
        summary = [{"jobId": d["jobId"], "status": d["status"], "statusReason": d["statusReason"]} for d in details]
        print_response("Wait", {"jobs": summary}, None, "json")
        return 0 if all(d["status"] == JobStatus.SUCCEEDED.value for d in details) else 1
    request = build_request(args, operation_name(args.verb))
    autostart = (
        args.verb in SUBMITTING and not getattr(args, "no_engine", False) and not os.environ.get(NO_AUTOSTART_ENV)
    )
    client = client_for(autostart)
    method = getattr(client, args.verb.replace("-", "_"))
    try:
        response = method(**request)
    except ParamValidationError as exc:  # botocore's refusal before sending: the AWS CLI exits 252 for it
        raise UsageError(str(exc)) from None
    print_response(operation_name(args.verb), response, args.query, args.output)
    return 0


def operation_name(verb: str) -> str:
    """``submit-job`` -> ``SubmitJob`` (AWS's operation name); other words are returned as they are."""
    return "".join(part.title() for part in verb.split("-")) if verb in VERBS else verb


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
