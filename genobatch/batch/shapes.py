"""AWS Batch's request shapes, checked before the local engine stores anything.

A request the local engine accepts must be one that ``aws batch`` and boto3 would send: a misspelled
``dependOn`` silently ignored would submit a job with no dependency, which then runs too early. So every
``BatchClient`` verb first checks its request against botocore's own Batch service model, walked generically
(no per-verb schema), and words what is wrong as botocore's ``ParamValidationError`` does, with the path of
the parameter and, for an unknown name, the closest valid one.

The model is vendored (``data/batch-service-2.json.gz``, see ``data/botocore-NOTICE.txt``): boto3 is an
optional extra, and the local engine works without it. ``LOCAL_EXTENSIONS`` is the one list of what the
local engine accepts beyond AWS's shapes.

Errors botocore finds before sending anything raise ``ParamValidationError`` (the AWS CLI exits 252). Enum
values and maximums, which botocore leaves to the service, are checked too and raise a plain
``ClientException``, as AWS Batch itself answers them (exit 254).
"""

from __future__ import annotations

import datetime
import decimal
import difflib
import functools
import gzip
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ParamSpec, TypeVar

from .errors import ClientException, ParamValidationError

MODEL_FILE = "batch-service-2.json.gz"  # in genobatch/batch/data/
MODEL_BOTOCORE_VERSION = "1.44.8"  # the botocore it was copied from


@dataclass(frozen=True)
class Extension:
    """What the local engine accepts beyond one of AWS's shapes, and why."""

    shape: str
    why: str
    members: Mapping[str, str] = field(default_factory=dict)  # member -> shape name: added, or wider than AWS's
    optional: tuple[str, ...] = ()  # members AWS requires that the local engine defaults
    nullable: tuple[str, ...] = ()  # members that may be null
    enum: tuple[str, ...] = ()  # values added to a string enum


LOCAL_EXTENSIONS = (
    Extension(
        "CreateComputeEnvironmentRequest",
        "a local compute environment is this machine: its type may be left out (describe says MANAGED)",
        optional=("type",),
    ),
    Extension(
        "ComputeResource",
        "every type runs on this machine, capped by maxvCpus and the added maxMemoryMiB (registry._capacity); "
        "type LOCAL (the default) may leave maxvCpus out (the whole machine) or give a fraction; AWS's types keep "
        "AWS's whole vCPUs, and their other members (subnets, instanceTypes...) are echoed by describe",
        members={"maxvCpus": "Double", "maxMemoryMiB": "Integer"},
        optional=("type", "maxvCpus"),
    ),
    Extension("CRType", "the local engine's compute resource type", enum=("LOCAL",)),
    Extension("RegisterJobDefinitionRequest", "type defaults to container", optional=("type",)),
    Extension(
        "ContainerProperties",
        "the engine schedules fractional vCPUs; a null image runs the job on the host (--runtime host)",
        members={"vcpus": "Double"},
        nullable=("image",),
    ),
    Extension(
        "ContainerOverrides",
        "fractional vCPUs; each job mounts its own inputs without a job definition per job (model.parse_mounts)",
        members={"vcpus": "Double", "mountPoints": "MountPoints"},
    ),
    Extension(
        "MountPoint",
        "a host path mounted without declaring a volume (model.parse_mounts)",
        members={"sourcePath": "String"},
    ),
    Extension(
        "JobDependency",
        "submit-jobs: a job of the same batch, by its jobName (jobs.submit_jobs; submit-job refuses it)",
        members={"jobName": "String"},
    ),
)

# The local engine's own operations, in the model's format: submit-jobs submits a graph in one transaction.
LOCAL_OPERATIONS = {"SubmitJobs": "SubmitJobsRequest"}
LOCAL_HTTP = {"SubmitJobs": {"method": "POST", "requestUri": "/v1/genobatch/submitjobs"}}
LOCAL_SHAPES: dict[str, dict[str, Any]] = {
    "SubmitJobsRequest": {"type": "structure", "required": ["jobs"], "members": {"jobs": {"shape": "SubmitJobsList"}}},
    "SubmitJobsList": {"type": "list", "member": {"shape": "SubmitJobRequest"}},
}

# AWS documents evaluateOnExit's action as case-insensitive; every other enum is matched exactly.
CASE_INSENSITIVE_ENUMS = frozenset({"RetryAction"})

# The Python types each model type accepts, as botocore's ParamValidator has them.
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "structure": (dict,),
    "map": (dict,),
    "list": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "double": (float, decimal.Decimal, int),
    "float": (float, decimal.Decimal, int),
    "blob": (bytes, bytearray, str),
    "timestamp": (datetime.datetime, str),
}
_NULLABLE = "genobatchNullable"  # where an extended structure shape keeps its nullable members


@dataclass
class _Report:
    """What is wrong with a request: ``early`` is what botocore refuses before sending, ``service`` the rest."""

    early: list[str] = field(default_factory=list)
    service: list[str] = field(default_factory=list)


def closest(word: str, choices: list[str]) -> str | None:
    """The valid name a typo most likely meant (ignoring case), or None."""
    by_lower = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def _shown(name: str) -> str:
    """botocore's way of naming a parameter: ``input`` for the request, no leading dot otherwise."""
    return name[1:] if name.startswith(".") else name or "input"


class ShapeModel:
    """The service model's input shapes with ``LOCAL_EXTENSIONS`` applied, and a validator walking them."""

    def __init__(self, service: Mapping[str, Any]) -> None:
        self.service = service
        self.shapes: dict[str, dict[str, Any]] = {**service["shapes"], **LOCAL_SHAPES}
        self.operations: dict[str, str] = {
            name: operation["input"]["shape"]
            for name, operation in service["operations"].items()
            if "input" in operation
        }
        self.operations.update(LOCAL_OPERATIONS)
        for extension in LOCAL_EXTENSIONS:
            self.shapes[extension.shape] = _extended(self.shapes[extension.shape], extension)

    def validate(self, operation: str, request: Mapping[str, Any]) -> None:
        """Raise ``ParamValidationError`` (or ``ClientException``) naming every problem of the request."""
        report = _Report()
        self._check(request, self.operations[operation], "", report)
        if report.early:
            raise ParamValidationError("Parameter validation failed:\n" + "\n".join(report.early))
        if report.service:
            raise ClientException("\n".join(report.service))

    def _check(self, value: Any, shape_name: str, name: str, report: _Report) -> None:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if not _has_type(value, kind, name, report):
            return
        if kind == "structure":
            self._check_structure(value, shape, name, report)
        elif kind == "list":
            _check_range(len(value), shape, name, "length", report)
            for i, item in enumerate(value):
                self._check(item, shape["member"]["shape"], f"{name}[{i}]", report)
        elif kind == "map":
            no_min = {"max": shape["max"]} if "max" in shape else {}  # botocore checks no map's minimum
            _check_range(len(value), no_min, name, "length", report)
            for key, item in value.items():
                self._check(key, shape["key"]["shape"], f"{name} (key: {key})", report)
                self._check(item, shape["value"]["shape"], f"{name}.{key}", report)
        elif kind == "string":
            _check_range(len(value), shape, name, "length", report)
            _check_enum(value, shape_name, shape, name, report)
        elif kind in ("integer", "long", "double", "float"):
            _check_range(value, shape, name, "value", report)

    def _check_structure(self, params: dict[Any, Any], shape: dict[str, Any], name: str, report: _Report) -> None:
        """botocore's order: missing required members, then unknown ones, then each known member in depth."""
        members: dict[str, Any] = shape["members"]
        for required in shape.get("required", []):
            if required not in params:
                report.early.append(f'Missing required parameter in {_shown(name)}: "{required}"')
        for key in params:
            if key not in members:
                guess = closest(key, list(members))
                report.early.append(
                    f'Unknown parameter in {_shown(name)}: "{key}", must be one of: {", ".join(members)}'
                    + (f"; did you mean {guess}?" if guess else "")
                )
        for key, value in params.items():
            if key in members and not (value is None and key in shape.get(_NULLABLE, ())):
                self._check(value, members[key]["shape"], f"{name}.{key}", report)

    def service_description(self) -> dict[str, Any]:
        """The service model with the extensions applied, in botocore's format (for ``botocore.model.ServiceModel``:
        the CLI reads arguments with it as the AWS CLI does)."""
        operations = dict(self.service["operations"])
        for name, shape in LOCAL_OPERATIONS.items():
            operations[name] = {"name": name, "http": LOCAL_HTTP[name], "input": {"shape": shape}}
        return {**self.service, "operations": operations, "shapes": self.shapes}


def _has_type(value: object, kind: str, name: str, report: _Report) -> bool:
    valid = PYTHON_TYPES[kind]
    if isinstance(value, valid):
        return True
    report.early.append(
        f"Invalid type for parameter {_shown(name)}, value: {value}, type: {type(value)}, "
        f"valid types: {', '.join(str(t) for t in valid)}"
    )
    return False


def _extended(shape: dict[str, Any], extension: Extension) -> dict[str, Any]:
    """A copy of ``shape`` with an extension applied (the model itself is never changed)."""
    out = dict(shape)
    if extension.members:
        out["members"] = {**shape["members"], **{k: {"shape": v} for k, v in extension.members.items()}}
    if extension.optional:
        out["required"] = [name for name in shape.get("required", []) if name not in extension.optional]
    if extension.nullable:
        out[_NULLABLE] = extension.nullable
    if extension.enum:
        out["enum"] = [*shape["enum"], *extension.enum]
    return out


def _check_range(measure: Any, shape: Mapping[str, Any], name: str, what: str, report: _Report) -> None:
    """``min`` as botocore checks it; ``max``, which botocore leaves to the service, as the service would."""
    if "min" in shape and measure < shape["min"]:
        report.early.append(
            f"Invalid {what} for parameter {_shown(name)}, value: {measure}, valid min {what}: {shape['min']}"
        )
    if "max" in shape and measure > shape["max"]:
        report.service.append(
            f"Invalid {what} for parameter {_shown(name)}, value: {measure}, valid max {what}: {shape['max']}"
        )


def _check_enum(value: str, shape_name: str, shape: Mapping[str, Any], name: str, report: _Report) -> None:
    allowed: list[str] = shape.get("enum") or []
    if not allowed or value in allowed:
        return
    if shape_name in CASE_INSENSITIVE_ENUMS and value.upper() in (a.upper() for a in allowed):
        return
    guess = closest(value, allowed)
    report.service.append(
        f"Invalid value for parameter {_shown(name)}, value: {value}, valid values: {', '.join(allowed)}"
        + (f"; did you mean {guess}?" if guess else "")
    )


def vendored_model() -> dict[str, Any]:
    """botocore's Batch service model, as vendored in ``data/``."""
    raw = resources.files(__package__).joinpath("data", MODEL_FILE).read_bytes()
    model: dict[str, Any] = json.loads(gzip.decompress(raw))
    return model


@functools.cache
def shape_model() -> ShapeModel:
    """Read once per process, on the first request (about 5 ms), not on import."""
    return ShapeModel(vendored_model())


def validate(operation: str, request: Mapping[str, Any]) -> None:
    """Check one request to ``operation`` (``SubmitJob``...) against AWS Batch's shapes and ``LOCAL_EXTENSIONS``."""
    shape_model().validate(operation, request)


P = ParamSpec("P")
R = TypeVar("R")


def validated(method: Callable[P, R]) -> Callable[P, R]:
    """Decorate a ``BatchClient`` verb: its request (keyword and positional arguments) is checked against the
    operation named like the method (``submit_job`` -> ``SubmitJob``) before the method runs."""
    operation = "".join(part.title() for part in method.__name__.split("_"))
    parameters = list(inspect.signature(method).parameters.values())[1:]  # after self
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        validate(operation, {**dict(zip(positional, args[1:], strict=False)), **kwargs})
        return method(*args, **kwargs)

    checked.aws_operation = operation  # type: ignore[attr-defined]  # for tests: which verbs are checked
    return checked
