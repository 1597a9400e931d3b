"""``genobatch batch`` reads command lines as ``aws batch`` does: a corpus of AWS-docs-style command lines gives
the request that awscli's own driver (``awscli.clidriver``, in this process, stopped before it sends anything)
builds; then the AWS getting-started tutorial, run through ``genobatch batch`` subprocesses on the local engine."""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genobatch.batch import shapes
from genobatch.cli import build_parser
from genobatch.cli.awsargs import UsageError, build_request, cli_name
from genobatch.cli.batch import VERBS, operation_name

CE_JSON = {"type": "EC2", "minvCpus": 0, "maxvCpus": 8, "instanceTypes": ["optimal"], "subnets": ["subnet-1"]}
CORPUS = [
    "create-compute-environment --compute-environment-name M5Spot --type MANAGED --state ENABLED "
    "--compute-resources type=SPOT,minvCpus=0,maxvCpus=128,desiredvCpus=0,instanceTypes=m5.large,m5.xlarge,"
    "subnets=subnet-1,subnet-2,securityGroupIds=sg-1,instanceRole=ecsInstanceRole,bidPercentage=60,"
    "spotIamFleetRole=arn:aws:iam::012345678910:role/aws-ec2-spot-fleet-role,tags={Name=spot,team=genomics} "
    "--service-role arn:aws:iam::012345678910:role/AWSBatchServiceRole",
    "create-compute-environment --compute-environment-name c --type MANAGED --compute-resources "
    "type=EC2,maxvCpus=4,subnets=subnet-1,ec2Configuration=[{imageType=ECS_AL2}],"
    "launchTemplate={launchTemplateName=lt,version=$Latest} --tags team=genomics,cost=42",
    "create-compute-environment --compute-environment-name f --type MANAGED --compute-resources file://ce.json",
    "create-compute-environment --compute-environment-name u --type UNMANAGED --unmanagedv-cpus 8",
    "create-job-queue --job-queue-name HighPriority --state ENABLED --priority 500 --compute-environment-order "
    "order=1,computeEnvironment=M5Spot order=2,computeEnvironment=arn:aws:batch:us-east-1:1:compute-environment/C4",
    'create-job-queue --job-queue-name q --priority 1 --compute-environment-order \'[{"order": 1, '
    '"computeEnvironment": "c"}]\' --tags genobatch:fault=spot-reclaim:1',
    "register-job-definition --job-definition-name sleep60 --type container --container-properties "
    '\'{"image": "busybox", "vcpus": 1, "memory": 128, "command": ["sleep", "60"]}\'',
    "register-job-definition --job-definition-name s --type container --container-properties "
    "image=busybox,command=sleep,60,resourceRequirements=[{type=VCPU,value=1},{type=MEMORY,value=128}],"
    "environment=[{name=A,value=1}],volumes=[{name=v,host={sourcePath=/data}}] "
    "--retry-strategy 'attempts=3,evaluateOnExit=[{onStatusReason=Host EC2*,action=RETRY},{onReason=*,action=EXIT}]' "
    "--timeout attemptDurationSeconds=60 --parameters inputfile=s3://bucket/x,out=y --tags a=b --propagate-tags",
    "register-job-definition --job-definition-name p --type container --container-properties file://props.json "
    "--platform-capabilities EC2 FARGATE",
    "submit-job --job-name example --job-queue HighPriority --job-definition sleep60:1 --depends-on jobId=a "
    "jobId=b,type=N_TO_N --array-properties size=10 --container-overrides "
    "command=echo,hello,environment=[{name=A,value=1}],resourceRequirements=[{type=MEMORY,value=256}] "
    "--no-propagate-tags --tags genobatch:fault=oom:1@0.5 --scheduling-priority-override 5",
    "submit-job --cli-input-json file://job.json --job-name override",
    "submit-job --job-name j --job-queue q --job-definition d --parameters file://params.json "
    "--timeout attemptDurationSeconds=120 --retry-strategy attempts=2",
    "submit-job --job-name j --job-queue q --job-definition d --container-overrides file://overrides.json",
    "describe-jobs --jobs 876da822-4198-45f2-a252-6cea32512ea8 3ad97a9a-4bd0-4ae6-8e98-21c8f4bd1b9f",
    "list-jobs --job-queue HighPriority --filters name=JOB_NAME,values=fi* --max-results 10",
    "list-jobs --job-queue HighPriority --job-status RUNNING",
    'cancel-job --job-id 1d828f65-7a4d-42e8-996d-3b900ed59dc4 --reason "Cancelling job."',
    "terminate-job --job-id 61e743ed-35e4-48da-b2de-5c8333821c84 --reason Terminating",
    "describe-job-definitions --job-definition-name sleep60 --status ACTIVE",
    "describe-job-queues --job-queues HighPriority",
    "describe-compute-environments --compute-environments M5Spot",
]
FILES = {
    "ce.json": json.dumps(CE_JSON),
    "props.json": json.dumps({"image": "busybox", "command": ["true"], "vcpus": 1, "memory": 64}),
    "job.json": json.dumps({"jobName": "fromjson", "jobQueue": "q", "jobDefinition": "d", "tags": {"k": "v"}}),
    "params.json": json.dumps({"a": "1", "b": "two"}),
    "overrides.json": json.dumps({"command": ["echo", "hi"], "environment": [{"name": "X", "value": "y"}]}),
}


class Sent(Exception):
    """Raised by the capture hook: the driver built its request and is about to send it."""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(key, value)
    return tmp_path


CAPTURED: dict[str, Any] = {}


@functools.cache
def awscli_driver() -> Any:
    """One awscli driver for the corpus (each costs about 0.4 s), with a hook that records what it would send."""
    import botocore  # noqa: F401 - the installed one, as genobatch.cli.awsargs loads it
    from awscli.clidriver import create_clidriver

    def capture(params: dict[str, Any], **_: Any) -> None:
        CAPTURED.update(params)
        raise Sent

    driver = create_clidriver()
    driver.session.register("before-parameter-build.batch", capture)
    return driver


def awscli_request(argv: list[str]) -> dict[str, Any]:
    """What ``aws batch ARGV`` would send: awscli's driver, stopped by a hook before botocore validates."""
    CAPTURED.clear()
    awscli_driver().main(["batch", *argv])
    assert CAPTURED, f"awscli sent nothing for {argv}"
    return dict(CAPTURED)


def genobatch_request(argv: list[str]) -> dict[str, Any]:
    args = build_parser().parse_args(["batch", *argv])
    return build_request(args, operation_name(args.verb))


@pytest.mark.parametrize("line", CORPUS, ids=[line.split()[0] + f"-{i}" for i, line in enumerate(CORPUS)])
def test_the_corpus_parses_as_awscli_parses_it(files: Path, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Equal as Python values: the members the local engine widens to decimals (``maxvCpus``, ``vcpus``: fractional
    vCPUs) read ``4`` as ``4.0``, which equals AWS's ``4``."""
    argv = shlex.split(line)
    assert genobatch_request(argv) == awscli_request(argv)


def test_cli_input_yaml_reads_as_the_same_json(files: Path) -> None:
    request = json.loads(FILES["job.json"])
    (files / "job.yaml").write_text("jobName: fromjson\njobQueue: q\njobDefinition: d\ntags:\n  k: v\n")
    assert genobatch_request(["submit-job", "--cli-input-yaml", "file://job.yaml"]) == request
    flags_win = genobatch_request(["submit-job", "--cli-input-yaml", "file://job.yaml", "--job-name", "x"])
    assert flags_win == {**request, "jobName": "x"}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["create-compute-environment", "--compute-resources", "type=EC2,tags={Name=x"], "'--compute-resources'"),
        (["submit-job", "--container-overrides", "file://missing.json"], "Unable to load paramfile"),
        (["submit-job", "--cli-input-json", "{bad"], "Invalid JSON"),
        (["submit-job", "--cli-input-yaml", "a: [", "--job-name", "x"], "Invalid YAML"),
        (["submit-job", "--cli-input-yaml", "a: 1", "--cli-input-json", "{}"], "not both"),
    ],
)
def test_malformed_values_are_usage_errors_naming_the_flag(files: Path, argv: list[str], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        genobatch_request(argv)


def test_every_member_of_each_verb_is_a_flag_named_as_awscli_names_it() -> None:
    from awscli.arguments import BooleanArgument, CLIArgument, ListArgument
    from awscli.clidriver import ServiceOperation
    from botocore import xform_name

    assert dict(ServiceOperation.ARG_TYPES) == {"list": ListArgument, "boolean": BooleanArgument}
    assert ServiceOperation.DEFAULT_ARG_CLASS is CLIArgument
    model = shapes.shape_model()
    parser = build_parser()
    for verb in VERBS:
        members = model.shapes[model.operations[operation_name(verb)]]["members"]
        sub = parser.parse_args(["batch", verb])
        flags = {key.removeprefix("aws:") for key in vars(sub) if key.startswith("aws:")}
        assert flags == set(members), verb
        for member in members:
            assert cli_name(member) == xform_name(member, "-"), member


# --- the tutorial, as subprocesses on the local engine ----------------------------------------------------
class Cli:
    def __init__(self, state_dir: Path, cwd: Path) -> None:
        self.env = {**os.environ, "GENOBATCH_STATE_DIR": str(state_dir)}
        self.cwd = cwd

    def __call__(self, line: str, expect: int = 0) -> Any:
        result = self.text(line, expect)
        return json.loads(result.stdout) if expect in (0, 1) and result.stdout else result.stderr

    def text(self, line: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "genobatch", "batch", *shlex.split(line)],
            env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == expect, f"exit {result.returncode}: {result.stderr}"
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path / "state", tmp_path)
    yield runner
    subprocess.run(
        [sys.executable, "-m", "genobatch", "engine", "stop", "--now"], env=runner.env, capture_output=True, timeout=60
    )


def test_the_getting_started_tutorial_runs_on_the_local_engine(cli: Cli, tmp_path: Path) -> None:
    cli(
        "create-compute-environment --compute-environment-name tutorial --type MANAGED --state ENABLED "
        "--compute-resources type=EC2,minvCpus=0,maxvCpus=2,instanceTypes=optimal,subnets=subnet-1,"
        "securityGroupIds=sg-1,instanceRole=ecsInstanceRole,tags={Name=tutorial}"
    )
    cli(
        "create-job-queue --job-queue-name tutorial --priority 1 --compute-environment-order "
        "order=1,computeEnvironment=tutorial --tags genobatch:fault=spot-reclaim:1@0"
    )
    cli(
        "register-job-definition --job-definition-name hello --type container --container-properties "
        "image=busybox,command=sh,-c,'echo hello $NAME',resourceRequirements=[{type=VCPU,value=1},"
        "{type=MEMORY,value=64}] --retry-strategy attempts=2,evaluateOnExit=[{onStatusReason=Host*,action=RETRY}]"
    )
    (tmp_path / "job.yaml").write_text(
        "jobName: hello\njobQueue: tutorial\njobDefinition: hello\n"
        "containerOverrides:\n  environment:\n    - {name: NAME, value: world}\n"
    )
    job = cli("submit-job --cli-input-yaml file://job.yaml")
    [done] = cli(f"wait {job['jobId']} --timeout 60")["jobs"]
    assert done["status"] == "SUCCEEDED"
    [detail] = cli(f"describe-jobs --jobs {job['jobId']}")["jobs"]
    reclaimed, ran = detail["attempts"]
    assert reclaimed["statusReason"].startswith("Host EC2 (instance i-") and ran["container"]["exitCode"] == 0
    assert Path(ran["genobatch"]["stdout"]).read_text() == "hello world\n"
    bad = cli("create-compute-environment --compute-environment-name x --compute-resources type=EC2,", expect=252)
    assert "Error parsing parameter '--compute-resources'" in bad


def test_query_output_and_misspelt_flags_as_aws_has_them(cli: Cli) -> None:
    """--query/--output print through awscli's formatters; a misspelt flag exits 252 (not argparse's 2)."""
    listed = cli.text("describe-job-queues --query 'jobQueues[].[jobQueueName,state]' --output table").stdout
    assert listed.splitlines()[1].strip("| ") == "DescribeJobQueues" and "|  default |  ENABLED  |" in listed
    assert cli.text("describe-job-queues --query jobQueues[0].priority --output text").stdout == "1\n"
    assert "Bad value for --query" in cli("describe-job-queues --query 'jobQueues['", expect=252)
    misspelt = cli("describe-job-queues --job-queus default", expect=252)
    assert "Unknown options: --job-queus, default (did you mean --job-queues?)" in misspelt


def test_argparse_namespace_keeps_genobatch_options_apart() -> None:
    """``--state`` (a member) and ``--state-dir`` (genobatch's) do not collide."""
    args = build_parser().parse_args(["batch", "create-job-queue", "--state", "DISABLED", "--state-dir", "/x"])
    assert isinstance(args, argparse.Namespace) and getattr(args, "aws:state") == "DISABLED"
    assert str(args.state_dir) == "/x"
