"""YAML (and JSON, which YAML reads too) that remembers where each key was, so that an error can name the
file, the line and the fix: step declarations, the step settings file (``-c``) and ``-params-file``."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from genobatch.problems import InputError, Problem


class Located(dict[str, Any]):
    """A mapping from a YAML file: ``line`` is where it starts, ``lines[key]`` where each key is (1-based)."""

    def __init__(self, pairs: list[tuple[str, Any]], line: int, lines: dict[str, int]) -> None:
        super().__init__(pairs)
        self.line = line
        self.lines = lines

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    pairs: list[tuple[str, Any]] = []
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.MarkedYAMLError(problem=f"the key {key!r} is not a name", problem_mark=key_node.start_mark)
        if key in lines:
            raise yaml.MarkedYAMLError(
                problem=f"{key!r} appears twice (first on line {lines[key]})", problem_mark=key_node.start_mark
            )
        lines[key] = key_node.start_mark.line + 1
        pairs.append((key, loader.construct_object(value_node, deep=True)))
    return Located(pairs, node.start_mark.line + 1, lines)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(path: Path, what: str) -> Located:
    """The file's top-level mapping; InputError (file, line, fix) when it is not readable YAML/JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InputError([Problem(path, None, f"cannot read the {what}: {reason}", "check the path")]) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise InputError(
            [Problem(path, line, f"not valid YAML: {exc.problem}", "fix the syntax (YAML or JSON)")]
        ) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(path, None, f"not valid YAML: {exc}", "fix the syntax (YAML or JSON)")]) from None
    if not isinstance(data, Located):
        raise InputError([Problem(path, 1, f"the {what} must be a mapping of names to values", "see the README")])
    return data


def unknown_keys(mapping: Located, known: list[str], path: Path, where: str) -> list[Problem]:
    """A problem per key that is not in ``known``, suggesting the closest known one."""
    problems = []
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            problems.append(Problem(path, mapping.line_of(key), f"{where}: unknown key {key!r}", hint))
    return problems
