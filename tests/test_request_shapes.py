"""Requests to the local engine are checked against AWS Batch's own shapes (``genobatch.batch.shapes``): through
``BatchClient`` and through ``genobatch batch`` as a user runs it. No engine runs: nothing here executes a job."""

from __future__ import annotations

import gzip
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genobatch.batch import BatchClient, ClientException
from genobatch.batch import shapes as shapes_module
from genobatch.batch.errors import ParamValidationError
from genobatch.batch.model import Mount
from genobatch.batch.shapes import LOCAL_EXTENSIONS, MODEL_BOTOCORE_VERSION, shape_model, validate, vendored_model
from genobatch.executors.contract import JobSpec
from genobatch.executors.local import definition_request, submit_request

DEFINITION = {"jobDefinitionName": "ok", "type": "container", "containerProperties": {"command": ["true"]}}
SUBMIT = {"jobName": "x", "jobQueue": "default", "jobDefinition": "ok"}
# AWS Batch's documentation: the register-job-definition example of the AWS CLI reference, with the retry
# strategy of the "Automated job retries" guide.
TUTORIAL_DEFINITION = {
    "jobDefinitionName": "sleep10",
    "type": "container",
    "containerProperties": {
        "image": "busybox",
        "command": ["sleep", "10"],
        "resourceRequirements": [{"type": "MEMORY", "value": "128"}, {"type": "VCPU", "value": "1"}],
    },
    "retryStrategy": {
        "attempts": 5,
        "evaluateOnExit": [{"onStatusReason": "Host EC2*", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
    },
    "tags": {"Department": "Engineering", "User": "JaneDoe"},
}
# Public BatchClient methods that are genobatch's own, not AWS requests: nothing to check them against.
NOT_AWS_VERBS = {"close", "engine_pid", "log_paths", "wait"}


@pytest.fixture
def defined(client: BatchClient) -> BatchClient:
    client.register_job_definition(**DEFINITION)
    return client


def job_count(client: BatchClient) -> int:
    count: int = client.store.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    return count


def refusal(call: Any, **request: Any) -> str:
    with pytest.raises(ParamValidationError) as caught:
        call(**request)
    assert isinstance(caught.value, ClientException), "a shape error is the batch layer's ClientException"
    return str(caught.value)


# --- through BatchClient ----------------------------------------------------------------------------------
def test_a_misspelled_depends_on_is_refused_and_nothing_is_submitted(defined: BatchClient) -> None:
    first = defined.submit_job(**SUBMIT)["jobId"]
    message = refusal(defined.submit_job, **SUBMIT, dependOn=[{"jobId": first}])
    assert message.startswith('Parameter validation failed:\nUnknown parameter in input: "dependOn", must be one of: ')
    assert message.endswith("; did you mean dependsOn?")
    assert job_count(defined) == 1, "only the first job exists"


def test_missing_required_members_are_named(defined: BatchClient) -> None:
    assert refusal(defined.submit_job, jobName="x") == (
        "Parameter validation failed:\n"
        'Missing required parameter in input: "jobQueue"\n'
        'Missing required parameter in input: "jobDefinition"'
    )
    assert refusal(defined.cancel_job, jobId="x") == (
        'Parameter validation failed:\nMissing required parameter in input: "reason"'
    )
    assert job_count(defined) == 0


def test_unknown_keys_are_refused_at_any_depth_all_at_once(defined: BatchClient) -> None:
    message = refusal(
        defined.submit_job,
        **SUBMIT,
        containerOverrides={"enviroment": [{"name": "A", "value": "1"}]},
        dependsOn=[{"jobid": "abc"}],
        retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onExitcode": "1"}]},
    )
    lines = message.splitlines()[1:]
    assert [re.sub(r", must be one of: .*?;", ";", line) for line in lines] == [
        'Unknown parameter in containerOverrides: "enviroment"; did you mean environment?',
        'Unknown parameter in dependsOn[0]: "jobid"; did you mean jobId?',
        'Unknown parameter in retryStrategy.evaluateOnExit[0]: "onExitcode"; did you mean onExitCode?',
    ]
    assert "must be one of: jobId, type, jobName;" in lines[1], "the valid names, the local extension's included"
    assert job_count(defined) == 0


def test_wrong_types_are_named_with_their_path(defined: BatchClient) -> None:
    with pytest.raises(ParamValidationError, match=r"Invalid type for parameter jobs, value: abc, type: <class 'str'>"):
        defined.describe_jobs("abc")  # type: ignore[arg-type]  # a positional argument is checked too
    message = refusal(defined.submit_job, **SUBMIT, retryStrategy={"attempts": "3"}, dependsOn={"jobId": "a"})
    assert message.splitlines()[1:] == [  # in the order the request has them, as botocore reports them
        "Invalid type for parameter retryStrategy.attempts, value: 3, type: <class 'str'>, valid types: <class 'int'>",
        "Invalid type for parameter dependsOn, value: {'jobId': 'a'}, type: <class 'dict'>, "
        "valid types: <class 'list'>, <class 'tuple'>",
    ]
    refusal(defined.register_job_definition, **{**DEFINITION, "containerProperties": {"command": "true"}})
    refusal(defined.create_job_queue, jobQueueName="q", priority=1, computeEnvironmentOrder=[{"order": "1"}])


def test_an_enum_value_aws_does_not_have_is_refused_as_the_service_refuses_it(defined: BatchClient) -> None:
    overrides = {"resourceRequirements": [{"type": "CPU", "value": "1"}]}
    with pytest.raises(ClientException) as caught:
        defined.submit_job(**SUBMIT, containerOverrides=overrides)
    assert not isinstance(caught.value, ParamValidationError), "botocore does not check enums: the service does"
    assert str(caught.value) == (
        "Invalid value for parameter containerOverrides.resourceRequirements[0].type, value: CPU, "
        "valid values: GPU, VCPU, MEMORY; did you mean VCPU?"
    )
    with pytest.raises(ClientException, match="value: enabled, valid values: ENABLED, DISABLED; did you mean ENABLED"):
        defined.create_job_queue(jobQueueName="q", priority=1, state="enabled")
    # AWS documents evaluateOnExit's action as case-insensitive
    defined.register_job_definition(
        **{**DEFINITION, "retryStrategy": {"evaluateOnExit": [{"action": "retry", "onExitCode": "1"}]}}
    )
    assert job_count(defined) == 0


def test_the_local_extensions_are_accepted(client: BatchClient) -> None:
    client.create_compute_environment(
        computeEnvironmentName="half", computeResources={"type": "LOCAL", "maxvCpus": 0.5, "maxMemoryMiB": 64}
    )
    client.create_job_queue(
        jobQueueName="half", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "half"}]
    )
    client.register_job_definition(
        jobDefinitionName="host", containerProperties={"image": None, "command": ["true"], "vcpus": 0.5, "memory": 8}
    )
    mounts = [{"sourcePath": "/tmp", "containerPath": "/data", "readOnly": True}]
    job = client.submit_job(
        jobName="one", jobQueue="half", jobDefinition="host", containerOverrides={"vcpus": 0.25, "mountPoints": mounts}
    )["jobId"]
    stored = json.loads(client.store.conn.execute("SELECT container FROM jobs WHERE id=?", (job,)).fetchone()[0])
    assert stored["mounts"] == [["/tmp", "/data", True]], "the override's mount reached the job"
    graph = client.submit_jobs(
        [
            {"jobName": "a", "jobQueue": "half", "jobDefinition": "host"},
            {"jobName": "b", "jobQueue": "half", "jobDefinition": "host", "dependsOn": [{"jobName": "a"}]},
        ]
    )
    assert len(graph["jobs"]) == 2 and job_count(client) == 3
    # an extension does not open the door to anything else
    message = refusal(
        client.create_compute_environment, computeEnvironmentName="x", computeResources={"maxMemoryMib": 1}
    )
    assert message.endswith("; did you mean maxMemoryMiB?")


def test_what_the_pipeline_sends_fits(client: BatchClient) -> None:
    """The local executor's own requests (executors/local.py), with every option a pipeline job may use."""
    spec = JobSpec(
        "align",
        ["bwa", "mem"],
        vcpus=1.5,
        memory_mib=3000,
        image=None,
        mounts=[Mount("/ref", "/ref"), Mount("/work/out", "/out", read_only=False)],
        environment={"SAMPLE": "s1"},
        depends_on=["id-1"],
        array_size=4,
        n_to_n_with="id-2",
        sequential=True,
        retry_attempts=3,
        timeout_seconds=90,
        tags={"run": "r1"},
    )
    validate("RegisterJobDefinition", definition_request(spec))
    validate("SubmitJob", submit_request(spec, "default", "genobatch-abc:1"))
    validate("SubmitJob", submit_request(JobSpec("plain", ["true"]), "default", "genobatch-abc:1"))


def test_aws_batch_documentation_requests_are_accepted(client: BatchClient) -> None:
    response = client.register_job_definition(**TUTORIAL_DEFINITION)
    assert response["jobDefinitionName"] == "sleep10"
    job = client.submit_job(jobName="example", jobQueue="default", jobDefinition="sleep10")["jobId"]
    client.cancel_job(jobId=job, reason="Cancelling job.")  # AWS's CancelJob example, positional names as keywords
    assert client.describe_jobs([job])["jobs"][0]["status"] == "FAILED"


def test_every_aws_verb_of_batch_client_is_checked() -> None:
    """A verb added without ``@validated`` would accept anything again."""
    operations = shape_model().operations
    for name, method in inspect.getmembers(BatchClient, inspect.isfunction):
        if name.startswith("_") or name in NOT_AWS_VERBS:
            continue
        operation = getattr(method, "aws_operation", None)
        assert operation in operations, f"BatchClient.{name} is not checked against an AWS Batch operation"


def test_the_extension_table_names_what_the_model_has() -> None:
    model = vendored_model()["shapes"]
    for extension in LOCAL_EXTENSIONS:
        shape = model[extension.shape]
        members = shape.get("members", {})
        assert set(extension.optional) <= set(shape.get("required", [])), extension
        assert set(extension.nullable) <= set(members), extension
        assert all(target in model for target in extension.members.values()), extension
        assert not extension.enum or (shape["type"] == "string" and not set(extension.enum) & set(shape["enum"]))


# --- against botocore itself (optional: genobatch[aws]) ---------------------------------------------------
def test_the_vendored_model_is_botocores() -> None:
    botocore = pytest.importorskip("botocore")
    from botocore.loaders import Loader

    installed = Loader().load_service_model("batch", "service-2")
    assert installed == vendored_model(), (
        f"botocore {botocore.__version__}'s Batch model differs from the one vendored from botocore "
        f"{MODEL_BOTOCORE_VERSION}: copy its data/batch/*/service-2.json.gz to genobatch/batch/data/"
        f"{shapes_module.MODEL_FILE}, update MODEL_BOTOCORE_VERSION and data/botocore-NOTICE.txt"
    )


BAD_REQUESTS = [  # (operation, request): AWS's shapes only, no local extension involved
    ("SubmitJob", {"jobName": "x", "dependOn": [], "containerOverrides": {"command": "true", "memory": "64"}}),
    ("SubmitJob", {**SUBMIT, "dependsOn": [{"jobId": "a", "type": 3}], "tags": {"": "v"}, "propagateTags": "yes"}),
    ("CreateJobQueue", {"jobQueueName": "q", "priority": "1", "computeEnvironmentOrder": [{"order": 1}, "x"]}),
    ("DescribeJobs", {"jobs": ["a", 2]}),
    ("RegisterJobDefinition", {"type": "container", "parameters": {"a": 1}, "eksProperties": {"podProperties": {}}}),
]


@pytest.mark.parametrize("operation, request_", BAD_REQUESTS)
def test_the_messages_are_botocores(operation: str, request_: dict[str, Any]) -> None:
    pytest.importorskip("botocore")
    from botocore.session import get_session
    from botocore.validate import ParamValidator

    shape = get_session().get_service_model("batch").operation_model(operation).input_shape
    assert shape is not None
    expected = ParamValidator().validate(request_, shape).generate_report()
    with pytest.raises(ParamValidationError) as caught:
        validate(operation, request_)
    without_hints = re.sub(r"; did you mean \w+\?", "", str(caught.value))
    assert without_hints == f"Parameter validation failed:\n{expected}"


def test_aws_batch_examples_of_every_verb_are_accepted() -> None:
    """botocore's examples-1.json: AWS's own example requests, for the operations BatchClient has."""
    botocore = pytest.importorskip("botocore")
    examples_file = next(Path(botocore.__file__).parent.glob("data/batch/*/examples-1.json"))
    examples = json.loads(examples_file.read_text())["examples"]
    verbs = {getattr(m, "aws_operation", None) for _, m in inspect.getmembers(BatchClient, inspect.isfunction)}
    checked = [(op, e["input"]) for op, listed in examples.items() if op in verbs for e in listed]
    assert len(checked) >= 12
    for operation, request in checked:
        validate(operation, request)


# --- through `genobatch batch` ----------------------------------------------------------------------------
class Cli:
    def __init__(self, state_dir: Path) -> None:
        self.env = {**os.environ, "GENOBATCH_STATE_DIR": str(state_dir), "GENOBATCH_NO_AUTOSTART": "1"}

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "genobatch", "batch", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == expect, f"exit {result.returncode}: {result.stderr}"
        assert "Traceback" not in result.stderr
        return result


@pytest.fixture
def cli(state_dir: Path, defined: BatchClient) -> Iterator[Cli]:
    yield Cli(state_dir)


def test_cli_refuses_a_misspelled_depends_on_as_the_aws_cli_does(cli: Cli, defined: BatchClient) -> None:
    request = json.dumps({**SUBMIT, "dependOn": [{"jobId": "a"}]})
    result = cli.run("submit-job", "--cli-input-json", request, expect=252)
    assert result.stdout == ""
    assert result.stderr.startswith('\nParameter validation failed:\nUnknown parameter in input: "dependOn", must be')
    assert "; did you mean dependsOn?\n" in result.stderr
    assert job_count(defined) == 0


def test_cli_names_the_missing_job_queue(cli: Cli) -> None:
    result = cli.run("submit-job", "--cli-input-json", '{"jobName": "x"}', expect=252)
    assert 'Missing required parameter in input: "jobQueue"' in result.stderr
    assert "does not exist" not in result.stderr


CLI_CASES = [  # (arguments, exit code, what stderr says)
    (
        [
            "submit-job",
            "--job-name",
            "x",
            "--job-queue",
            "default",
            "--job-definition",
            "ok",
            "--container-overrides",
            '{"enviroment": []}',
        ],
        252,
        'Unknown parameter in containerOverrides: "enviroment", must be one of: vcpus, memory, command,',
    ),
    (
        ["register-job-definition", "--job-definition-name", "r", "--container-properties", '{"command": "true"}'],
        252,
        "Invalid type for parameter containerProperties.command, value: true, type: <class 'str'>",
    ),
    (
        [
            "submit-job",
            "--job-name",
            "x",
            "--job-queue",
            "default",
            "--job-definition",
            "ok",
            "--container-overrides",
            '{"resourceRequirements": [{"type": "CPU", "value": "1"}]}',
        ],
        254,
        "An error occurred (ClientException) when calling the SubmitJob operation: Invalid value for parameter "
        "containerOverrides.resourceRequirements[0].type, value: CPU, valid values: GPU, VCPU, MEMORY",
    ),
    (  # shorthand is typed from the model: a job id of digits stays a string, so the engine answers
        [
            "submit-job",
            "--job-name",
            "x",
            "--job-queue",
            "default",
            "--job-definition",
            "ok",
            "--depends-on",
            "jobId=123",
        ],
        254,
        "dependsOn[0].jobId '123' does not exist",
    ),
]


@pytest.mark.parametrize("args, code, message", CLI_CASES)
def test_cli_refusals(cli: Cli, defined: BatchClient, args: list[str], code: int, message: str) -> None:
    result = cli.run(*args, expect=code)
    assert message in result.stderr and result.stdout == ""
    assert job_count(defined) == 0


def test_cli_accepts_the_local_extensions_and_aws_shorthand(cli: Cli, tmp_path: Path) -> None:
    cli.run(
        "create-compute-environment",
        "--compute-environment-name",
        "half",
        "--compute-resources",
        "type=LOCAL,maxvCpus=1,maxMemoryMiB=512",
    )
    cli.run(
        "create-job-queue",
        "--job-queue-name",
        "half",
        "--priority",
        "5",
        "--compute-environment-order",
        "order=1,computeEnvironment=half",
    )
    definition = tmp_path / "definition.json"
    definition.write_text(json.dumps(TUTORIAL_DEFINITION))
    cli.run("register-job-definition", "--cli-input-json", f"file://{definition}")
    job = json.loads(
        cli.run(
            "submit-job",
            "--job-name",
            "example",
            "--job-queue",
            "half",
            "--job-definition",
            "sleep10",
            "--retry-strategy",
            "attempts=2",
            "--timeout",
            "attemptDurationSeconds=60",
        ).stdout
    )
    listed = cli.run("list-jobs", "--job-queue", "half", "--filters", "name=JOB_NAME,values=ex*")
    assert [j["jobId"] for j in json.loads(listed.stdout)["jobSummaryList"]] == [job["jobId"]]


def test_the_vendored_model_is_gzipped_json_with_its_license() -> None:
    data = Path(shapes_module.__file__).parent / "data"
    model = json.loads(gzip.decompress((data / shapes_module.MODEL_FILE).read_bytes()))
    assert model["metadata"]["serviceId"] == "Batch"
    assert "Apache License" in (data / "botocore-LICENSE.txt").read_text()
    assert MODEL_BOTOCORE_VERSION in (data / "botocore-NOTICE.txt").read_text()
