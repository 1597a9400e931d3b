"""``genobatch aws up|status|down``: the AWS infrastructure of a stack (see ``genobatch.executors.awsbatch.infra``).

boto3 is an optional extra (``genobatch[aws]``): it is imported when a verb runs, not when the CLI starts.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from genobatch.executors.registry import MissingExtra, import_extra
from genobatch.images import ImageError
from genobatch.pipeline.library import Library

if TYPE_CHECKING:
    from genobatch.executors.awsbatch.infra import Change


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    aws = subparsers.add_parser("aws", help="create, check and remove the AWS infrastructure", parents=[common])
    verbs = aws.add_subparsers(dest="verb", required=True, metavar="VERB")
    helps = {
        "up": "create what is missing (idempotent: a second run changes nothing)",
        "status": "what exists, what is missing or broken",
        "down": "delete everything `up` created, and check that nothing is left",
        "push": "tag the tool images with the stack's ECR names and push them",
        "logs": "print a Batch job's log (CloudWatch Logs), every attempt",
    }
    for verb, text in helps.items():
        parser = verbs.add_parser(verb, help=text)
        parser.add_argument("--name", required=True, help="the stack's name (part of every resource name)")
        parser.add_argument("--region", help="AWS region (default: $AWS_REGION, else us-east-1)")
        parser.add_argument("--endpoint-url", help="another AWS endpoint (default: $AWS_ENDPOINT_URL)")
        if verb == "push":
            parser.add_argument("--runtime", choices=("podman", "docker"), default="podman")
            parser.add_argument("--tag-only", action="store_true", help="tag, but do not log in or push")
        if verb == "logs":
            parser.add_argument("job_id", metavar="JOB_ID")
        if verb == "up":
            parser.add_argument("--max-vcpus", type=int, help="the compute environments' maxvCpus")
            spot = parser.add_mutually_exclusive_group()
            spot.add_argument("--spot", dest="spot", action="store_true", default=True, help="spot first (default)")
            spot.add_argument("--on-demand", dest="spot", action="store_false", help="on-demand capacity only")
            parser.add_argument(
                "--no-nat",
                dest="nat",
                action="store_false",
                help="VPC endpoints (S3 gateway, ECR, CloudWatch Logs) instead of a NAT gateway: no NAT charges",
            )


def run(args: argparse.Namespace) -> int:
    try:
        import_extra("aws", "boto3", "genobatch aws")
    except MissingExtra as exc:
        print(f"genobatch: {exc}", file=sys.stderr)
        return 1
    from botocore.exceptions import BotoCoreError, ClientError

    from genobatch.executors.awsbatch.clients import Aws
    from genobatch.executors.awsbatch.infra import Stack, StackOptions, job_logs, push_images

    try:
        images = [spec.name for spec in Library.load().images]
        stack = Stack(Aws(args.region or "", args.endpoint_url), args.name, images)
        if args.verb == "up":
            cap = {"max_vcpus": args.max_vcpus} if args.max_vcpus else {}  # else StackOptions' default
            changes = stack.up(StackOptions(args.name, spot=args.spot, nat=args.nat, **cap))
            show(changes)
            created = [c for c in changes if c.action == "created"]
            print(f"{len(created)} resource(s) created" if created else "Nothing to change: everything exists.")
            return 0
        if args.verb == "push":
            for ref in push_images(stack, args.runtime, push=not args.tag_only):
                print(("tagged " if args.tag_only else "pushed ") + ref)
            return 0
        if args.verb == "logs":
            print(job_logs(stack, args.job_id))
            return 0
        if args.verb == "status":
            changes = stack.status()
            show(changes)
            bad = [c for c in changes if c.action != "ok" and not c.action.startswith("ok ")]
            print(f"{len(bad)} missing or broken" if bad else "Everything is in place.")
            return 1 if bad else 0
        show(stack.down())
        left = stack.leftovers()
        if left:
            print("Still there: " + ", ".join(left), file=sys.stderr)
            return 1
        print(f"Nothing of stack {args.name} is left.")
        return 0
    except (BotoCoreError, ClientError, ImageError) as exc:
        print(f"genobatch: {exc}", file=sys.stderr)
        return 1


def show(changes: list[Change]) -> None:
    width = max((len(c.kind) for c in changes), default=0)
    for change in changes:
        print(f"{change.kind:<{width}}  {change.action:<10}  {change.name}")
