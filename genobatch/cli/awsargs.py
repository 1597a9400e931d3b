"""AWS CLI argument conventions: ``--cli-input-json``, JSON or shorthand (``k=v,k2=v2``) values, and
space-separated lists, turned into one AWS request dict.

Exit codes follow the AWS CLI: 252 for a malformed command line, 254 when the service refused the request.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_USAGE = 252
EXIT_CLIENT_ERROR = 254

# Types shorthand ``key=value`` pairs for a request member, as the AWS CLI does from the service model.
Shorthand = Callable[[str, dict[str, str]], Any]  # (request member, pairs as strings) -> its value


class UsageError(Exception):
    """The command line is malformed (bad JSON, unreadable file...)."""


@dataclass(frozen=True)
class Field:
    """One request field: ``--flag-name`` <-> ``requestKey`` and how to read its value."""

    key: str
    kind: str = "str"  # str | int | struct | map | list | structs | json
    help: str = ""

    @property
    def flag(self) -> str:
        return "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", self.key).lower()


def read_value(raw: str, flag: str) -> str:
    """``file://path`` reads the file, as the AWS CLI does."""
    if raw.startswith("file://"):
        path = Path(raw[7:])
        try:
            return path.read_text()
        except OSError as exc:
            raise UsageError(f"Error parsing parameter '{flag}': cannot read {path}: {exc.strerror}") from None
    return raw


def _scalar(text: str) -> Any:
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def parse_structure(
    raw: str, flag: str, keep_strings: bool = False, typed: Callable[[dict[str, str]], Any] | None = None
) -> Any:
    """JSON (``{...}`` / ``[...]``) or shorthand ``key=value,key2=value2`` (typed by ``typed`` when given)."""
    text = read_value(raw, flag).strip()
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"Error parsing parameter '{flag}': Invalid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}\nJSON received: {text[:200]}"
            ) from None
    pairs: dict[str, str] = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise UsageError(f"Error parsing parameter '{flag}': expected key=value pairs or JSON, got {part!r}")
        pairs[key.strip()] = value
    if typed is not None:
        return typed(pairs)
    return pairs if keep_strings else {key: _scalar(value) for key, value in pairs.items()}


def add_fields(parser: argparse.ArgumentParser, fields: list[Field]) -> None:
    parser.add_argument("--cli-input-json", help="the whole request as AWS Batch JSON (or file://path)")
    for field in fields:
        many = field.kind in ("list", "structs")
        parser.add_argument(
            field.flag,
            dest=field.key,
            nargs="+" if many else None,
            type=int if field.kind == "int" else str,
            help=field.help or None,
        )


def build_request(args: argparse.Namespace, fields: list[Field], shorthand: Shorthand | None = None) -> dict[str, Any]:
    """Merge ``--cli-input-json`` with the flags given (flags win, as in the AWS CLI). ``shorthand`` types
    shorthand values from the service model; without it, digits become integers."""
    request: dict[str, Any] = {}
    if args.cli_input_json:
        try:
            loaded = json.loads(read_value(args.cli_input_json, "--cli-input-json"))
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"Error parsing parameter '--cli-input-json': Invalid JSON: {exc.msg} at line "
                f"{exc.lineno} column {exc.colno}"
            ) from None
        if not isinstance(loaded, dict):
            raise UsageError("Error parsing parameter '--cli-input-json': expected a JSON object")
        request.update(loaded)
    for field in fields:
        value = getattr(args, field.key, None)
        if value is None:
            continue
        typed = None if shorthand is None else functools.partial(shorthand, field.key)
        if field.kind in ("struct", "json"):
            value = parse_structure(value, field.flag, typed=typed)
        elif field.kind == "map":
            value = parse_structure(value, field.flag, keep_strings=True)
        elif field.kind == "structs":
            items = [parse_structure(v, field.flag, typed=typed) for v in value]
            value = items[0] if len(items) == 1 and isinstance(items[0], list) else items
        request[field.key] = value
    return request
