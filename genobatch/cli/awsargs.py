"""The AWS CLI's argument conventions for ``genobatch batch``, by the AWS CLI's own code: ``genobatch batch VERB``
parses a command line exactly as ``aws batch VERB`` does.

The flags of a verb are the members of its operation's input shape in AWS Batch's service model (the one
``genobatch.batch.shapes`` vendors, with its local extensions), named as the AWS CLI names them
(``computeResources`` -> ``--compute-resources``; a boolean also gets ``--no-...``). Their values are read by
awscli's own pieces, as ``aws`` runs them: ``file://`` and ``fileb://`` (``awscli.paramfile``), then shorthand
(``awscli.shorthand``: ``type=EC2,maxvCpus=4,instanceTypes=t3.micro,t3.small,tags={Name=x}``, lists of
structures, nested maps) or JSON, typed from the model (``awscli.argprocess``). ``--cli-input-json`` (and AWS CLI
v2's ``--cli-input-yaml``) fill in what no flag gave. ``--query`` and ``--output`` print the response as ``aws``
does (``awscli.formatter``). awscli is imported only when a verb runs (about 0.1 s).

Differences from ``aws``: a missing required member is reported by the request check (``shapes.validate``,
worded as botocore words it) instead of by argparse; ``http://`` and ``https://`` values are not fetched (as in
AWS CLI v2). Exit codes follow the AWS CLI: 252 for a malformed command line, 254 when the request is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import importlib
import json
import re
import sys
from typing import Any

import yaml

from genobatch.batch import shapes

EXIT_USAGE = 252
OUTPUTS = ("json", "text", "table")  # aws --output (AWS CLI v2's yaml is not in awscli 1.x)
EXIT_CLIENT_ERROR = 254
DEST_PREFIX = "aws:"  # argparse destinations of model flags: never clash with genobatch's own options
# The argparse type of a flag's raw value by model type, as awscli.arguments.CLIArgument.TYPE_MAP has it.
RAW_TYPES: dict[str, type] = {"float": float, "double": float, "long": int}


class UsageError(Exception):
    """The command line is malformed (bad JSON or shorthand, unreadable file...)."""


def cli_name(member: str) -> str:
    """botocore's ``xform_name(member, "-")`` (the AWS CLI's flag names), without importing botocore."""
    if "-" in member:
        return member
    partial = re.sub(r"([a-z])([A-Z][a-z])", r"\1-\2", member) if member else member
    partial = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", partial)
    return partial.lower()


def _help(documentation: str) -> str | None:
    """The first sentence of the model's documentation, as plain text."""
    text = html.unescape(re.sub(r"<[^>]+>", "", documentation or "")).strip()
    first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    return first.replace("%", "%%") or None


def add_operation_flags(parser: argparse.ArgumentParser, operation: str) -> None:
    """One flag per member of the operation's input shape, as the AWS CLI builds its argument table."""
    model = shapes.shape_model()
    members: dict[str, Any] = model.shapes[model.operations[operation]]["members"]
    for member, ref in members.items():
        kind = model.shapes[ref["shape"]]["type"]
        name, dest, doc = cli_name(member), DEST_PREFIX + member, _help(ref.get("documentation", ""))
        if kind == "boolean":  # awscli.arguments.BooleanArgument: --name and --no-name
            parser.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=doc)
            parser.add_argument(f"--no-{name}", dest=dest, action="store_false", default=None, help=argparse.SUPPRESS)
        else:  # awscli.arguments.ListArgument takes nargs="*"
            nargs = "*" if kind == "list" else None
            kwargs: dict[str, Any] = {"nargs": nargs, "type": RAW_TYPES.get(kind, str), "metavar": "<value>"}
            parser.add_argument(f"--{name}", dest=dest, help=doc, **kwargs)
    parser.add_argument("--cli-input-json", help="the whole request as JSON (or file://path); flags win")
    parser.add_argument("--cli-input-yaml", help="the whole request as YAML (or file://path); flags win")
    parser.add_argument("--query", metavar="<JMESPath>", help="a JMESPath query on the response, as aws --query")
    parser.add_argument("--output", choices=OUTPUTS, default="json", help="the response as aws prints it (json)")


def print_response(operation: str, response: dict[str, Any], query: str | None, output: str) -> None:
    """The response as ``aws --query Q --output O`` prints it, by awscli's own formatters (its tables too)."""
    if query is None and output == "json":  # the common case, without importing awscli
        json.dump(response, sys.stdout, indent=4)
        sys.stdout.write("\n")
        return
    _load_awscli()
    import jmespath  # type: ignore[import-untyped]
    from awscli.formatter import get_formatter  # type: ignore[import-untyped]

    try:
        compiled = jmespath.compile(query) if query is not None else None
    except jmespath.exceptions.JMESPathError as exc:
        raise UsageError(f"Bad value for --query {query}: {exc}") from None
    get_formatter(output, argparse.Namespace(query=compiled, color="off"))(operation, response, sys.stdout)


@functools.cache
def _load_awscli() -> None:
    """Import botocore and awscli in the order that keeps this process's botocore the installed one.

    awscli 1.46 vendors botocore and, once imported, makes a later top-level ``import botocore`` (or s3transfer)
    load its vendored copy. So the installed botocore (boto3's) is imported first when there is one, and
    awscli's import hook is removed afterwards; without one, awscli's copy serves (only its model classes are
    used here)."""
    with contextlib.suppress(ImportError):
        importlib.import_module("botocore")  # the installed one, if any
    for module in ("awscli.argprocess", "awscli.arguments", "awscli.paramfile", "botocore.hooks", "botocore.model"):
        importlib.import_module(module)  # awscli first brings botocore in: its vendored copy if none is installed

    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "TopLevelImportAliasFinder"]


@functools.cache
def _operation_model(operation: str) -> Any:
    from botocore.model import ServiceModel

    return ServiceModel(shapes.shape_model().service_description(), "batch").operation_model(operation)


@functools.cache
def _emitter() -> Any:
    """The two handlers ``aws`` registers for argument values (awscli.handlers): files, then shorthand."""
    from awscli.argprocess import ParamShorthandParser  # type: ignore[import-untyped]
    from awscli.paramfile import LOCAL_PREFIX_MAP, URIArgumentHandler  # type: ignore[import-untyped]
    from botocore.hooks import HierarchicalEmitter

    emitter = HierarchicalEmitter()
    emitter.register("load-cli-arg", URIArgumentHandler(dict(LOCAL_PREFIX_MAP)))
    emitter.register("process-cli-arg", ParamShorthandParser())
    return emitter


def build_request(args: argparse.Namespace, operation: str) -> dict[str, Any]:
    """The request ``aws batch`` would send for this command line (before its parameter validation)."""
    _load_awscli()
    from awscli.argprocess import ParamError, ParamSyntaxError, ParamUnknownKeyError
    from awscli.arguments import BooleanArgument, CLIArgument, ListArgument  # type: ignore[import-untyped]

    arg_types: dict[str, type[CLIArgument]] = {"list": ListArgument, "boolean": BooleanArgument}
    model, emitter = _operation_model(operation), _emitter()
    verb = cli_name(operation)
    request: dict[str, Any] = {}
    try:
        for member, shape in model.input_shape.members.items():
            value = getattr(args, DEST_PREFIX + member, None)
            if value is None:
                continue
            name = cli_name(member)
            argument = arg_types.get(shape.type_name, CLIArgument)(name, shape, model, emitter, serialized_name=member)
            loaded = emitter.emit_until_response(
                f"load-cli-arg.batch.{verb}.{name}", param=argument, value=value, service_name="batch",
                operation_name=verb, parsed_globals=None,
            )[1]  # fmt: skip
            argument.add_to_params(request, value if loaded is None else loaded)
        _add_cli_input(request, args)
    except (ParamError, ParamSyntaxError, ParamUnknownKeyError) as exc:
        raise UsageError(str(exc)) from None
    return request


def _add_cli_input(request: dict[str, Any], args: argparse.Namespace) -> None:
    """--cli-input-json / --cli-input-yaml: their members that no flag set (awscli.customizations.cliinputjson)."""
    from awscli.argprocess import ParamError
    from awscli.paramfile import LOCAL_PREFIX_MAP, get_paramfile

    given = [(flag, raw) for flag, raw in (("json", args.cli_input_json), ("yaml", args.cli_input_yaml)) if raw]
    if not given:
        return
    if len(given) > 1:
        raise UsageError("give --cli-input-json or --cli-input-yaml, not both")
    flag, raw = given[0]
    text = get_paramfile(raw, LOCAL_PREFIX_MAP)
    text = raw if text is None else text
    try:
        loaded = yaml.safe_load(text) if flag == "yaml" else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ParamError(
            f"--cli-input-{flag}", f"Invalid {flag.upper()}: {exc}\n{flag.upper()} received: {text}"
        ) from None
    if not isinstance(loaded, dict):
        raise UsageError(f"Error parsing parameter '--cli-input-{flag}': expected an object of request members")
    for key, value in loaded.items():
        request.setdefault(key, value)
