"""The AWS Batch executor (``--executor awsbatch``): jobs in the tool images on AWS Batch, task data in the
stack's S3 bucket; the stack itself is made by ``genobatch aws up`` (``infra``). Importing this package does
not import boto3: ``open_executor`` does, when a run asks for AWS Batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..base import Executor, RunContext


@dataclass
class Settings:
    aws_stack: str = field(
        default="", metadata={"flag": "--aws-stack", "help": "the stack to run on (genobatch aws up --name)"}
    )


def open_executor(context: RunContext, settings: Settings) -> Executor:
    from ..registry import import_extra

    import_extra("aws", "boto3", "--executor awsbatch")  # boto3 is an optional extra: genobatch[aws]
    from .executor import AwsExecutor

    return AwsExecutor(context, settings.aws_stack)
