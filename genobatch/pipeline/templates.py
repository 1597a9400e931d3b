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

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

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


ENV = SandboxedEnvironment(undefined=StrictUndefined, finalize=_finalize, autoescape=False)


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
        return compiled, text

    def uses(self, variable: str) -> bool:
        return any(variable in meta.find_undeclared_variables(ENV.parse(text)) for _, text in self.commands)

    def _render(self, template: tuple[Any, str], context: dict[str, Any], key: str) -> list[str]:
        try:
            return split_words(template[0].render(context))
        except (TemplateError, ValueError, TypeError) as exc:
            raise self._fail(key, str(exc), "fix the template") from None

    def pipes(self, context: dict[str, Any]) -> list[Pipe]:
        return [self._pipe(self._render(t, context, "command")) for t in self.commands]

    def files(self, output: str, context: dict[str, Any]) -> list[str]:
        return self._render(self.paths[output], context, "outputs")

    def published(self, output: str, file: str, context: dict[str, Any]) -> str | None:
        if output not in self.publish:
            return None
        words = self._render(self.publish[output], context, "outputs")
        if len(words) != 1 or words[0].startswith("/") or ".." in Path(words[0]).parts:
            raise self._fail("outputs", f"publish {words} is not one relative path", "a path under --outdir")
        return words[0] + file if words[0].endswith("/") else words[0]

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


def split_words(text: str) -> list[str]:
    """Words as a shell splits them, with ``|`` and ``>`` as words of their own even without spaces."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|>")
    lexer.whitespace_split = True
    return list(lexer)


def arguments(text: str) -> Words:
    """Extra arguments from the settings file, split as a shell would split them."""
    return Words(shlex.split(text))
