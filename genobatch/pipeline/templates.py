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

import itertools
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError, meta, nodes, pass_context
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
    if isinstance(value, _Marker):
        return value.token()
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


class _Marker:
    """Stands for a task's own value (``sample``, ``reads``, ``fastq.stem``) while a template is evaluated once
    for all the tasks of a step: it renders as its path between NULs, where each task's value goes."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __getattr__(self, name: str) -> _Marker:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Marker(f"{self.path}.{name}")

    def __getitem__(self, index: int) -> _Marker:
        return _Marker(f"{self.path}.[{index}]")

    def token(self) -> str:
        return f"\0{self.path}\0"


class _Simple:
    """Text and the paths of values (``fastq.stem``, ``reads.[0]``) to put between it, each rendered as Jinja
    renders ``{{ fastq.stem }}``: a template with its step's part already evaluated, for one task."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces  # text, path, text, ...
        self.paths = [(p, p.split(".")) for p in pieces[1::2]]
        self.split = _presplit(pieces)

    def render(self, context: dict[str, Any]) -> str:
        out = list(self.pieces)
        for i, (path, names) in enumerate(self.paths):
            out[2 * i + 1] = _finalize(self._value(path, names, context))
        return "".join(out)

    def words(self, context: dict[str, Any]) -> list[str] | None:
        """``split_words(self.render(context))`` from the text split once (``_presplit``); None when it cannot
        be (several words of a value joined to text)."""
        if self.split is None:
            return None
        values = [self._value(path, names, context) for path, names in self.paths]
        words: list[str] = []
        for word in self.split:
            if isinstance(word, str):
                words.append(word)
            elif isinstance(word, int):  # a value alone: its words (a list's), none for None
                value = values[word]
                if isinstance(value, list):
                    words.extend(str(v) for v in value)
                elif value is not None:
                    words.append(str(value))
            else:
                out = [str(word[0])]
                for at in range(1, len(word), 2):
                    value = values[int(word[at])]
                    if isinstance(value, list):
                        if len(value) > 1:
                            return None
                        value = value[0] if value else None
                    out += ["" if value is None else str(value), str(word[at + 1])]
                words.append("".join(out))
        return words

    @staticmethod
    def _value(path: str, names: list[str], context: dict[str, Any]) -> Any:
        if names[0] not in context:
            raise UndefinedError(f"'{names[0]}' is undefined")
        value = context[names[0]]
        for attribute in names[1:]:  # Jinja's order: an attribute, else an item
            if attribute[0] == "[":
                try:
                    value = value[int(attribute[1:-1])]
                except (IndexError, KeyError, TypeError):
                    raise UndefinedError(f"{path!r} is undefined") from None
            elif hasattr(value, attribute):
                value = getattr(value, attribute)
            elif isinstance(value, dict) and attribute in value:
                value = value[attribute]
            else:
                raise UndefinedError(f"{path!r} is undefined")
        return value


PLACE = "\x01"  # marks where a value goes in a template's text while it is split into words


def _presplit(pieces: list[str]) -> list[str | int | tuple[str | int, ...]] | None:
    """The words of ``pieces`` (text, path, text...) with each value's place in them: a word (str), a value
    alone (int: its index), or a word of text and values (text, index, text...). A value put in by ``_finalize``
    (quoted) then splits into its own words exactly: None when a value's place is inside quotes or a comment of
    the text, where its quoting would not."""
    text = pieces[0] + "".join(f"{PLACE}{i}{PLACE}{after}" for i, after in enumerate(pieces[2::2]))
    if any(PLACE in piece for piece in pieces[::2]):
        return None
    if any(a[-1:] and a[-1:] in "|>" and b[:1] and b[:1] in "|>" for a, b in itertools.pairwise(pieces[::2])):
        return None  # an empty value would join the two into one word ("||")
    words: list[str | int | tuple[str | int, ...]] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if match.group("open") is not None or (token[0] == "#" and PLACE in token):
            return None
        if token[0] in " \t\r\n#":
            continue
        plain = token[0] in "|>" or not ("'" in token or '"' in token or "\\" in token)
        if PLACE not in token:
            words.append(token if plain else _unquote(token))
        elif any(part[0] in "'\"\\" and PLACE in part for part in _PARTS.findall(token)):
            return None
        else:
            parts = (token if plain else _unquote(token)).split(PLACE)
            if len(parts) == 3 and parts[0] == parts[2] == "" and token == f"{PLACE}{parts[1]}{PLACE}":
                words.append(int(parts[1]))
            elif plain and not any(parts[::2]):
                return None  # values alone side by side: empty ones would leave no word, not an empty one
            else:
                words.append(tuple(int(p) if i % 2 else p for i, p in enumerate(parts)))
    return words


def _substituted(parsed: nodes.Template) -> tuple[set[str], set[str]] | None:
    """The names a template only substitutes (``{{ x }}``, ``{{ x.a }}``, ``{{ x[0] }}``) and those it uses
    otherwise (in ``{% if %}``, filters...); None when it cannot be evaluated once per step (it sets names,
    writes lists with ``as_file``, or changes what its ``{{ }}`` print: a filter or autoescape block, a macro's
    ``caller()``, where a task's value would be changed with the text around it)."""
    if any(n.ctx != "load" for n in parsed.find_all(nodes.Name)):
        return None
    if any(True for _ in parsed.find_all(_REWRITES_OUTPUT)):
        return None
    if any(f.name == "as_file" for f in parsed.find_all(nodes.Filter)):
        return None
    plain: set[int] = set()
    for output in parsed.find_all(nodes.Output):
        for node in output.nodes:
            while isinstance(node, nodes.Getattr) or (
                isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and type(node.arg.value) is int
            ):
                node = node.node
            if isinstance(node, nodes.Name):
                plain.add(id(node))
    substituted: set[str] = set()
    other: set[str] = set()
    for name in parsed.find_all(nodes.Name):
        (substituted if id(name) in plain else other).add(name.name)
    return substituted - other, other


_REWRITES_OUTPUT = (nodes.FilterBlock, nodes.EvalContextModifier, nodes.Macro, nodes.CallBlock)
FAST = True  # evaluate templates once per step (tests turn it off to compare with Jinja's every render)
STEP_VALUES = "_step"  # in a render context: an object that is the same for every task of its step
MAX_VARIANTS = 64  # a template evaluated per value of a task's names it branches on: at most this many


class _Template:
    """A compiled template. Rendered for many tasks of a step, it is evaluated by Jinja once per step (once per
    value of the task names its ``{% if %}`` reads: ``paired``) and then only has each task's values put in
    (planning 10,000 samples renders 400,000 templates): the same text as Jinja's every render, tested."""

    def __init__(self, text: str, parsed: nodes.Template, own: Iterable[str] = ()) -> None:
        """``own``: names each task gives its own value, even among ``COMMON`` (a step's input named ``args``)."""
        self.text = text
        self.jinja = ENV.from_string(parsed)
        names = _substituted(parsed) if FAST and "\0" not in text else None  # (NULs split the evaluated text)
        self.substituted, branched = names if names else (set(), set())
        step_names = COMMON - set(own)
        self.branched = sorted(branched - step_names)  # a task's own names the template branches on
        self.common = sorted(step_names & (self.substituted | branched))  # the same for every task of a step
        self.marked = self.substituted - step_names  # a task's own names the template substitutes
        self.fast = names is not None
        self._step_values: list[Any] = []
        self._shared: Any = None  # the context's STEP_VALUES when the step's values were last compared
        self._variants: dict[tuple[Any, ...], _Simple] = {}

    def render(self, context: dict[str, Any]) -> str:
        variant = self._variant(context)
        return variant.render(context) if variant else str(self.jinja.render(context))

    def words(self, context: dict[str, Any]) -> list[str]:
        """The rendered text's words (``split_words``)."""
        variant = self._variant(context)
        if variant is None:
            return split_words(str(self.jinja.render(context)))
        words = variant.words(context)
        return split_words(variant.render(context)) if words is None else words

    def _variant(self, context: dict[str, Any]) -> _Simple | None:
        """The template evaluated for the step and the values it branches on; None: Jinja renders this one."""
        if not self.fast:
            return None
        shared = context.get(STEP_VALUES)
        if shared is None or shared is not self._shared:  # the step's values may have changed: compare them
            values = [context.get(name) for name in self.common]
            if len(values) != len(self._step_values) or any(
                a is not b for a, b in zip(values, self._step_values, strict=True)
            ):
                self._step_values, self._variants = values, {}  # another step's values (a new planner): start again
            self._shared = shared
        try:
            key = tuple((type(v), v) for v in (context.get(name) for name in self.branched))
            variant = self._variants.get(key)
        except TypeError:  # a list to branch on: no variant, Jinja renders it
            return None
        if variant is None:
            if len(self._variants) >= MAX_VARIANTS:  # it branches on a value each task has its own of
                return None
            marked = {**context, **{name: _Marker(name) for name in self.marked}}
            pieces = str(self.jinja.render(marked)).split("\0")
            if len(pieces) % 2 == 0 or any(p.partition(".")[0] not in self.marked for p in pieces[1::2]):
                return None  # a step's value held a NUL of its own (no command can): Jinja says what it says
            variant = self._variants[key] = _Simple(pieces)
        return variant


class StepTemplates:
    """A step's templates, compiled once and checked against the variables its scatter provides."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.commands = [self._compile(text, "command") for text in step.commands]
        self.paths = {o.name: self._compile(o.path, "outputs") for o in step.outputs}
        self.publish = {o.name: self._compile(o.publish, "outputs") for o in step.outputs if o.publish}

    def _fail(self, key: str, message: str, fix: str) -> InputError:
        return InputError([self.step.problem(key, f"step {self.step.name}: {message}", fix)])

    def _compile(self, text: str, key: str) -> _Template:
        try:
            parsed = ENV.parse(text)
            used = meta.find_undeclared_variables(parsed)
            compiled = _Template(text, parsed, self.step.inputs)
        except TemplateError as exc:
            raise self._fail(key, str(exc), "fix the {{ }} template") from None
        others = COMMON | BY_SCATTER[self.step.scatter]
        unknown = sorted(used - others - set(self.step.inputs))
        if unknown:
            message = f"uses {', '.join(unknown)}: a {self.step.scatter} step has no such value"
            inputs = ", ".join(self.step.inputs) or "none"
            raise self._fail(key, message, f"use its inputs ({inputs}) or {', '.join(sorted(others))}")
        return compiled

    def uses(self, variable: str) -> bool:
        return any(variable in meta.find_undeclared_variables(ENV.parse(t.text)) for t in self.commands)

    def _render(self, template: _Template, context: dict[str, Any], key: str) -> list[str]:
        try:
            return template.words(context)
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
