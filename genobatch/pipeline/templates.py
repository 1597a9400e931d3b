"""A step's command templates (Jinja2) rendered into the pipes the job runner executes.

A command reads like a shell line: words, ``|`` between the processes of a pipe and ``> FILE`` for the last
one's output. No shell ever runs it: the rendered text is split into words (``shlex``), and every value
put in by ``{{ }}`` is quoted first, so a path with a space or a sample name can never turn into syntax.
Inputs, ``{{ out }}`` and ``{{ cpus }}`` render as placeholders (``{in:TASK}/file``, ``{file:N}``,
``{out}``, ``{threads}``) that each executor resolves to its own paths when it submits the task; the cache
key is taken over the placeholders, so it does not depend on where the work directory is, nor on the
number of threads (which changes how fast a tool runs, not what it writes).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError, meta, pass_context
from jinja2.sandbox import SandboxedEnvironment

from genobatch.executors.publish import inside
from genobatch.executors.task import Pipe
from genobatch.problems import InputError

from .declarations import Step

OUT, THREADS, MEMORY = "{out}", "{threads}", "{memory_mib}"
LANE = {"unit", "library", "platform"}  # a lane's read group: PU, LB, PL
COMMON = {"out", "cpus", "memory_mib", "heap_mib", "params", "run", "args", "args2", "args3", "scatter"}
BY_SCATTER = {  # what else a command of each scatter may use, besides its inputs
    "once": {"renames"},
    "all_samples": {"renames"},
    "sample": {"sample", "id"},
    "file": {"sample", "id", "lane", "paired", "mate", *LANE},
    "lane": {"sample", "id", "lane", "paired", *LANE},
    "chunk": {"sample", "id", "lane", "paired", "chunk", *LANE},
    "region": {"sample", "id", "region"},
}


class Words(list[str]):
    """Several words in a command (an input's files, extra arguments). For files, ``names`` are their file
    names (the words themselves are placeholders), so that ``.name`` and ``.stem`` give the first one's."""

    def __init__(self, words: Iterable[str] = (), names: Iterable[str] = ()) -> None:
        super().__init__(words)
        self.names = list(names)

    @property
    def name(self) -> str:
        return self.names[0] if self.names else ""

    @property
    def stem(self) -> str:
        """The file name without .gz, .fastq or .fq, as FastQC names its reports."""
        return self.name.removesuffix(".gz").removesuffix(".fastq").removesuffix(".fq")


@dataclass(frozen=True)
class Region:
    """A region of the reference, 1-based inclusive; ``padded`` starts ``padding`` bases earlier."""

    contig: str
    start: int
    end: int
    padding: int = 0

    def __str__(self) -> str:
        return f"{self.contig}:{self.start}-{self.end}"

    @property
    def padded(self) -> str:
        return f"{self.contig}:{max(1, self.start - self.padding)}-{self.end}"


def _finalize(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(shlex.quote(str(v)) for v in value)
    return "" if value is None else shlex.quote(str(value))


LISTS = "_lists"  # the render context's dict where ``as_file`` leaves a task's lists (file name -> lines)
LIST_NAME = re.compile(r"^\.?[A-Za-z0-9][A-Za-z0-9._-]*$")


@pass_context
def _as_file(context: Any, value: Any, name: str) -> str:
    """``{{ reports | as_file('.reports.txt') }}``: the words, one per line, in a file of the task's own
    directory (the job runner writes it before the commands), and that file's path in the command instead: a
    step over all samples has a command line that does not grow with them (Linux caps one at 2 MB)."""
    if not isinstance(name, str) or not LIST_NAME.match(name):
        raise ValueError(f"as_file({name!r}): give a plain file name, e.g. as_file('.files.txt')")
    lines = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    context[LISTS][name] = lines
    return f"{OUT}/{name}"


ENV = SandboxedEnvironment(undefined=StrictUndefined, finalize=_finalize, autoescape=False)
ENV.filters["as_file"] = _as_file


_EXPRESSION = re.compile(r"\{\{\s*([A-Za-z]\w*(?:\.[A-Za-z]\w*)*)\s*\}\}")  # {{ name }}, {{ name.attr }}


class _Simple:
    """A template of text and ``{{ name.attr }}`` only (most output paths: ``{{ id }}.bam``), rendered as
    Jinja would render it without Jinja's per-render set-up: planning 10,000 samples renders 220,000."""

    def __init__(self, text: str) -> None:
        self.pieces = _EXPRESSION.split(text)  # text, expression, text, ...

    def render(self, context: dict[str, Any]) -> str:
        out = []
        for i, piece in enumerate(self.pieces):
            out.append(_finalize(self._value(piece, context)) if i % 2 else piece)
        return "".join(out)

    @staticmethod
    def _value(expression: str, context: dict[str, Any]) -> Any:
        name, *attributes = expression.split(".")
        if name not in context:
            raise UndefinedError(f"'{name}' is undefined")
        value = context[name]
        for attribute in attributes:  # Jinja's order: an attribute, else an item
            if hasattr(value, attribute):
                value = getattr(value, attribute)
            elif isinstance(value, dict) and attribute in value:
                value = value[attribute]
            else:
                raise UndefinedError(f"{expression!r} is undefined")
        return value


def _simple(text: str) -> _Simple | None:
    """A fast renderer when the template needs nothing of Jinja but substitution."""
    bare = _EXPRESSION.sub("", text)
    return None if "{{" in bare or "{%" in bare or "{#" in bare or "}}" in bare else _Simple(text)


class StepTemplates:
    """A step's templates, compiled once and checked against the variables its scatter provides."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.commands = [self._compile(text, "command") for text in step.commands]
        self.paths = {o.name: self._compile(o.path, "outputs") for o in step.outputs}
        self.publish = {o.name: self._compile(o.publish, "outputs") for o in step.outputs if o.publish}

    def _fail(self, key: str, message: str, fix: str) -> InputError:
        return InputError([self.step.problem(key, f"step {self.step.name}: {message}", fix)])

    def _compile(self, text: str, key: str) -> tuple[Any, str]:
        try:
            parsed = ENV.parse(text)
            used = meta.find_undeclared_variables(parsed)
            compiled = ENV.from_string(parsed)
        except TemplateError as exc:
            raise self._fail(key, str(exc), "fix the {{ }} template") from None
        others = COMMON | BY_SCATTER[self.step.scatter]
        unknown = sorted(used - others - set(self.step.inputs))
        if unknown:
            message = f"uses {', '.join(unknown)}: a {self.step.scatter} step has no such value"
            inputs = ", ".join(self.step.inputs) or "none"
            raise self._fail(key, message, f"use its inputs ({inputs}) or {', '.join(sorted(others))}")
        return _simple(text) or compiled, text

    def uses(self, variable: str) -> bool:
        return any(variable in meta.find_undeclared_variables(ENV.parse(text)) for _, text in self.commands)

    def _render(self, template: tuple[Any, str], context: dict[str, Any], key: str) -> list[str]:
        try:
            return split_words(template[0].render(context))
        except (TemplateError, ValueError, TypeError) as exc:
            raise self._fail(key, str(exc), "fix the template") from None

    def pipes(self, context: dict[str, Any]) -> tuple[list[Pipe], dict[str, list[str]]]:
        """The commands' pipes, and the files of lines their ``as_file`` filters ask for."""
        lists: dict[str, list[str]] = {}
        rendered = [self._pipe(self._render(t, {**context, LISTS: lists}, "command")) for t in self.commands]
        return rendered, lists

    def files(self, output: str, context: dict[str, Any]) -> list[str]:
        return self._render(self.paths[output], context, "outputs")

    def published(self, output: str, file: str, context: dict[str, Any]) -> str | None:
        if output not in self.publish:
            return None
        words = self._render(self.publish[output], context, "outputs")
        target = (words[0] + file if words[0].endswith("/") else words[0]) if len(words) == 1 else ""
        try:
            return str(inside(Path(), target))  # normalised, and never above --outdir
        except ValueError:
            fix = "e.g. {{ sample }}/"
            raise self._fail("outputs", f"publish {words} is not one path under --outdir", fix) from None

    def _pipe(self, words: list[str]) -> Pipe:
        stdout = None
        if ">" in words:
            at = words.index(">")
            if len(words) != at + 2:
                raise self._fail("command", "'>' must end a command, with one file", "> {{ out }}/file")
            stdout = words[at + 1].removeprefix(OUT + "/")
            words = words[:at]
        argv: list[list[str]] = [[]]
        for word in words:
            if word == "|":
                argv.append([])
            else:
                argv[-1].append(word)
        if not all(argv):
            raise self._fail("command", "an empty command in a pipe", "a command on each side of |")
        return Pipe(argv, stdout)


# Words as ``shlex.shlex(text, posix=True, punctuation_chars="|>")`` with ``whitespace_split`` splits them, by
# regular expressions: shlex reads a character at a time, and planning 10,000 samples splits 300,000 commands.
# tests/test_templates.py proves the two equal on random text (quotes, escapes, comments, pipes, errors).
_PART = r"""[^ \t\r\n'"\\|>#]+|'[^']*'|"(?:[^"\\]|\\.)*"|\\."""  # plain, 'single', "double", \x
_TOKEN = re.compile(rf"""[ \t\r\n]+|#[^\n]*\n?|[|>]+|(?:{_PART})+|(?P<open>['"\\])""", re.DOTALL)
_PARTS = re.compile(_PART, re.DOTALL)
_DOUBLE_QUOTED_ESCAPE = re.compile(r'\\(["\\])')  # in "...", a backslash escapes only " and itself


def _unquote(word: str) -> str:
    out = []
    for part in _PARTS.findall(word):
        if part[0] == "'":
            out.append(part[1:-1])
        elif part[0] == '"':
            out.append(_DOUBLE_QUOTED_ESCAPE.sub(r"\1", part[1:-1]))
        elif part[0] == "\\":
            out.append(part[1:])
        else:
            out.append(part)
    return "".join(out)


def _unfinished(rest: str) -> str:
    """shlex's error for a quote left open or a backslash at the end (inside "...", an odd run of trailing
    backslashes is an escape left unfinished)."""
    trailing = len(rest) - len(rest.rstrip("\\"))
    if rest == "\\" or (rest[0] == '"' and trailing % 2 == 1 and len(rest) > trailing):
        return "No escaped character"
    return "No closing quotation"


def split_words(text: str) -> list[str]:
    """Words as a shell splits them, with ``|`` and ``>`` as words of their own even without spaces; ValueError
    for an unclosed quote, as shlex."""
    words = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if match.group("open") is not None:
            raise ValueError(_unfinished(text[match.start() :]))
        if token[0] in " \t\r\n#":
            continue
        plain = token[0] in "|>" or not ("'" in token or '"' in token or "\\" in token)
        words.append(token if plain else _unquote(token))
    return words


def arguments(text: str) -> Words:
    """Extra arguments from the settings file, split as a shell would split them."""
    return Words(shlex.split(text))
