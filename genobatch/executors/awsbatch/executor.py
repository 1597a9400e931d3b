"""``genobatch run --executor awsbatch``: tasks run as AWS Batch jobs in the tool images (from the stack's ECR
repositories), their outputs cached in the stack's bucket under ``cache/<key>/out/``.

Jobs share no file system with this machine, so every task is staged: local inputs are uploaded once,
content-addressed (``inputs/<sha256>/<name>``); the task file goes to ``tasks/`` (large task specifications
belong in S3, not in the command); the job runner downloads what the task reads, runs it in a scratch
directory and uploads the output, the done marker last. Tasks no image holds (``image: host`` steps) run on
this machine through the same staging.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from botocore.exceptions import NoCredentialsError, PartialCredentialsError

from genobatch.problems import InputError, Problem
from genobatch.storage import s3 as storage

from ..base import Executor, RunContext, task_file_name
from ..contract import AttemptState, Backend, JobSpec
from ..local import LocalExecutor
from ..publish import local_state
from ..routed import RoutedBackend
from ..task import HOST, Task, resolved_spec
from .backend import AwsBatchBackend
from .clients import Aws
from .infra import Stack
from .pricing import price_table


class AwsExecutor(Executor):
    name = "awsbatch"
    capabilities = RoutedBackend.capabilities

    def __init__(self, context: RunContext, stack_name: str) -> None:
        super().__init__(context)
        if not stack_name:
            raise InputError(
                [Problem(Path("--aws-stack"), None, "--executor awsbatch needs a stack", "--aws-stack NAME")]
            )
        self.offline = False  # a dry run without credentials: the plan and its cost, nothing read from S3
        self.aws = Aws(endpoint_url=context.endpoint_url)
        try:
            self.stack = Stack(self.aws, stack_name, context.images)
            problems = [c for c in self.stack.status() if c.action == "missing" or c.action.startswith("BROKEN")]
        except (NoCredentialsError, PartialCredentialsError):
            if not context.dry_run:
                fix = "aws configure, or set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                raise InputError([Problem(Path(stack_name), None, "no AWS credentials were found", fix)]) from None
            print("genobatch: no AWS credentials: the estimate counts every task as not cached", file=sys.stderr)
            self.offline = True
            return
        if problems:
            listed = ", ".join(f"{c.kind} {c.name} ({c.action})" for c in problems)
            raise InputError(
                [
                    Problem(
                        Path(stack_name),
                        None,
                        f"the AWS stack is not ready: {listed}",
                        f"genobatch aws up --name {stack_name}",
                    )
                ]
            )
        self.s3 = storage.client(self.aws.endpoint_url)
        self.root = f"s3://{self.stack.names.bucket}"
        self.local = LocalExecutor(replace(context, max_cpus=None, max_memory_mib=None))
        self.uploaded: dict[Path, str] = {}
        self.batch: AwsBatchBackend | None = None

    def output_uri(self, key: str) -> str:
        return f"{self.root}/cache/{key[:2]}/{key}/out"

    def workdir(self, key: str) -> str:
        return self.output_uri(key).removesuffix("/out")

    def is_cached(self, key: str) -> bool:
        return not self.offline and storage.exists(self.s3, f"{self.output_uri(key)}/{storage.DONE_MARKER}")

    def remove(self, key: str) -> None:
        storage.delete_prefix(self.s3, f"{self.root}/cache/{key[:2]}/{key}/")

    def publish(self, key: str, files: dict[str, str], outdir: str) -> int:
        copied = 0
        for name, rel in files.items():
            source = f"{self.output_uri(key)}/{name}"
            if storage.is_s3(outdir):
                target = f"{outdir.rstrip('/')}/{rel}"
                if self.published.unchanged(target, source, storage.state(self.s3, target)):
                    continue
                storage.copy(self.s3, source, target)
                self.published.record(target, source, storage.state(self.s3, target))
            else:
                path = Path(outdir) / rel
                if self.published.unchanged(str(path), source, local_state(path)):
                    continue
                if storage.exists(self.s3, source):
                    storage.download(self.s3, source, path)
                else:  # a folder of outputs (MultiQC's data)
                    storage.download_dir(self.s3, source, path)
                self.published.record(str(path), source, local_state(path))
            copied += 1
        return copied

    def input_uri(self, path: Path) -> str:
        """A local input file, uploaded once under its content's digest."""
        if path not in self.uploaded:
            uri = f"{self.root}/inputs/{self.context.digest(path)}/{path.name}"
            if not storage.exists(self.s3, uri):
                storage.upload(self.s3, path, uri)
            self.uploaded[path] = uri
        return self.uploaded[path]

    def staged_spec(self, task: Task, keys: dict[str, str]) -> dict[str, Any]:
        stage_in = [[self.output_uri(keys[up]) + "/", f"{{scratch}}/in/{keys[up]}"] for up in task.upstream]
        stage_in += [[self.input_uri(p), f"{{scratch}}/files/{i}/{p.name}"] for i, p in enumerate(task.files)]
        spec = resolved_spec(
            task,
            lambda name: f"{{scratch}}/in/{keys[name]}",
            lambda i, path: f"{{scratch}}/files/{i}/{path.name}",
            f"{{scratch}}/out/{task.key}/out",
        )
        return {**spec, "stage_in": stage_in, "stage_out": self.output_uri(task.key)}

    def job_spec(self, name: str, tasks: list[Task], keys: dict[str, str], **fields: Any) -> JobSpec:
        specs = [self.staged_spec(task, keys) for task in tasks]
        uri = f"{self.root}/tasks/{task_file_name(name, specs)}"
        bucket, key = storage.split(uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(specs).encode())
        environment = {"AWS_ENDPOINT_URL": self.aws.endpoint_url} if self.aws.endpoint_url else {}
        image = tasks[0].image
        if image == HOST:  # the step runs on the host's tools: this machine runs it, staged the same way
            command = [sys.executable, "-m", "genobatch.executors.runner", uri]
            return JobSpec(name, command, environment=environment, **fields)
        reference = self.stack.ecr_ref(image)  # only genobatch's images (``refuse``)
        return JobSpec(name, ["genobatch-runner", uri], image=reference, environment=environment, **fields)

    def prices(self) -> dict[str, tuple[float, float, float]]:
        return price_table()

    def refuse_image(self, image: str) -> str | None:
        """A job on Batch stages its files through S3 with genobatch's runner, which only genobatch's images
        (and this machine, for ``image: host``) have."""
        if image == HOST or image in self.context.images or image == "runner":
            return None
        return (
            f"{image} has no genobatch runner to stage files from S3: on AWS Batch use a genobatch image "
            "(or build one FROM localhost/genobatch/runner), or image: host"
        )

    def backend(self) -> Backend:
        self.batch = AwsBatchBackend(self.aws, self.stack.batch_settings(default_image=self.stack.ecr_ref("runner")))
        return RoutedBackend(self.batch, self.local.backend())

    def log_tail(self, attempt: AttemptState, lines: int = 8) -> str:
        """CloudWatch's log of a job on Batch; this machine's log file of a job that ran here."""
        if attempt.runtime == "awsbatch" and attempt.log and self.batch is not None:
            try:
                return "\n".join(self.batch.log_text(attempt.log).splitlines()[-lines:])
            except Exception as exc:
                return f"(log {attempt.log} unavailable: {exc})"
        return self.local.log_tail(attempt, lines)

    def barrier_spec(self, name: str, depends_on: list[str]) -> JobSpec:
        """Barriers wait for Batch jobs: they run on Batch too, in the runner's image."""
        return replace(super().barrier_spec(name, depends_on), image=self.stack.ecr_ref("runner"))
