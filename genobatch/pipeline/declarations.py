"""A step's declaration: one YAML file holds everything about a step (after nf-core modules).

Built-in steps live in ``genobatch/steps/``; users load their own with ``--steps``. Both are read here, the
same way, and every fact is checked when the file is loaded: a missing or misspelt key is refused with the
file, the line and the fix. See the README ("Add your own step") for the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genobatch.batch.model import MIN_MEMORY_MIB
from genobatch.executors.task import HOST
from genobatch.problems import InputError, Problem

from .units import memory_mib, step_memory_mib
from .yamlfile import Located, load, unknown_keys

# How a step's tasks are cut: one task for the run, per FASTQ file, per lane, per chunk of a lane's reads, per
# sample, per region of the reference (for each sample), or one over all samples (after they have finished).
SCATTERS = ("once", "file", "lane", "chunk", "sample", "region", "all_samples")
PARTS = ("chunk", "region")  # scatters whose outputs are parts of a sample's whole, joined by a `gathers` step
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
REQUIRED = ["name", "description", "scatter", "inputs", "outputs", "command", "image", "tools", "resources"]
REQUIRED += ["rate", "colour"]
OPTIONAL = ["optional", "label", "after", "gathers", "intermediate"]
OUTPUT_KEYS = ["path", "type", "index", "publish", "multiqc"]
SCATTER_KEYS = ["by", "padding", "batch_bases"]
RESOURCE_KEYS = ["cpus", "memory", "min_memory"]  # min_memory: below it the tool cannot run at all
EXAMPLES = {
    "name": "name: mystep",
    "description": "description: what the step does, in one sentence",
    "scatter": f"scatter: sample   (one of {', '.join(SCATTERS)})",
    "inputs": "inputs: {bam: bam}   (input name: type; {} for none)",
    "outputs": 'outputs: {report: {path: "{{ id }}.txt", publish: "{{ sample }}/mystep/"}}',
    "command": "command: mytool {{ bam }} > {{ out }}/{{ id }}.txt",
    "image": "image: samtools   (a genobatch image, an image reference, or host)",
    "tools": "tools: [mytool]   (their versions key the cache; [] for none)",
    "resources": "resources: {cpus: 1, memory: 1 GB}",
    "rate": "rate: 0.1   (vCPU-seconds per MB of a sample's FASTQ, for --dry-run estimates)",
    "colour": 'colour: "#1f77b4"   (its colour in the report)',
}


@dataclass(frozen=True)
class Output:
    """A file (or files: ``path`` may render to several words) that each task of the step leaves in ``{out}``."""

    name: str
    path: str  # template of the file name(s)
    type: str | None = None  # what later steps can consume it as ("bam", "vcf", ...)
    index: str | None = None  # suffix of a companion index that travels with it (".bai", ".tbi")
    publish: str | None = None  # template of where it goes under --outdir; a trailing "/" keeps the file name
    multiqc: bool = False  # MultiQC reads it


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    source: Path  # the declaration file
    scatter: str
    inputs: dict[str, str]  # input name -> type
    outputs: tuple[Output, ...]
    commands: tuple[str, ...]  # templates: words, "|" pipes, "> file" for stdout; no shell involved
    image: str  # a genobatch image name, an image reference, or "host"
    tools: dict[str, str]  # tool -> the command that prints its version (the version is part of every cache key)
    cpus: int | None  # None: "auto", from how many tasks share the machine
    memory_mib: int
    min_memory_mib: int  # the least the tool runs in (a JVM's fixed needs): a smaller --max-memory is refused
    rate: float  # vCPU-seconds per MB of a sample's FASTQ (per task for steps of no sample): --dry-run estimates
    colour: str  # in the report's timeline
    optional: bool = False  # runs only when selected with --tools
    label: str | None = None  # names this step's items apart from another producer's of the same type
    after: tuple[str, ...] = ()  # steps that must come before this one (when the types do not say)
    gathers: str | None = None  # joins each sample's parts of this type into one
    intermediate: bool = False  # outputs deleted once gathered
    padding: int = 0  # region scatter: bases read before each region (calls kept only inside it)
    batch_bases: int = 0  # chunk scatter: the aligner's batch size; chunks are cut only between batches
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # key -> line in ``source``

    def problem(self, key: str, message: str, fix: str = "") -> Problem:
        """A problem with this step, at the line of ``key`` in its declaration."""
        return Problem(self.source, self.lines.get(key), message, fix)

    @property
    def foreign_image(self) -> bool:
        """Runs in an image genobatch does not build: a reference such as quay.io/biocontainers/x:1.0."""
        return self.image != HOST and ("/" in self.image or ":" in self.image)

    @property
    def produces(self) -> set[str]:
        return {o.type for o in self.outputs if o.type}


def load_step(path: Path) -> Step:
    """Read and check one declaration; InputError lists every problem with its line and fix."""
    data = load(path, "step declaration")
    name = data.get("name") if isinstance(data.get("name"), str) else path.stem
    problems = unknown_keys(data, [*REQUIRED, *OPTIONAL], path, f"step {name}")
    for key in REQUIRED:
        if key not in data:
            problems.append(Problem(path, data.line, f"step {name} has no {key!r}", f"add  {EXAMPLES[key]}"))
    if problems:
        raise InputError(problems)
    checker = _Checker(path, data, problems)
    step = checker.step()
    if problems:
        raise InputError(problems)
    return step


class _Checker:
    """Turns a declaration's mapping into a ``Step``, collecting a problem (with its line) per bad value."""

    def __init__(self, path: Path, data: Located, problems: list[Problem]) -> None:
        self.path, self.data, self.problems = path, data, problems

    def bad(self, key: str, message: str, fix: str, line: int | None = None) -> None:
        self.problems.append(Problem(self.path, line or self.data.line_of(key), message, fix))

    def text(self, key: str, pattern: re.Pattern[str] | None = None, fix: str = "") -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not value.strip() or (pattern and not pattern.match(value)):
            self.bad(key, f"{key} {value!r} is not valid", fix or f"write  {EXAMPLES.get(key, key)}")
            return ""
        return value.strip()

    def step(self) -> Step:
        d = self.data
        name = self.text("name", NAME, "a lower-case name: letters, digits and '_', starting with a letter")
        scatter, padding, batch_bases = self.scatter()
        cpus, memory, least = self.resources()
        commands = d["command"] if isinstance(d["command"], list) else [d["command"]]
        if not commands or not all(isinstance(c, str) and c.strip() for c in commands):
            self.bad("command", "command must be a text or a list of texts", f"write  {EXAMPLES['command']}")
        return Step(
            name=name,
            description=self.text("description"),
            source=self.path,
            scatter=scatter,
            inputs=self.inputs(),
            outputs=self.outputs(),
            commands=tuple(str(c) for c in commands),
            image=self.text("image"),
            tools=self.tools(),
            cpus=cpus,
            memory_mib=memory,
            min_memory_mib=least,
            rate=self.number("rate"),
            colour=self.text("colour", COLOUR, 'a colour as "#rrggbb", quoted'),
            optional=self.flag("optional"),
            label=self.text("label", NAME, "a lower-case name") if "label" in d else None,
            after=tuple(self.names("after")),
            gathers=self.text("gathers", NAME, "the type it gathers, e.g. vcf") if "gathers" in d else None,
            intermediate=self.flag("intermediate"),
            padding=padding,
            batch_bases=batch_bases,
            lines=dict(d.lines),
        )

    def scatter(self) -> tuple[str, int, int]:
        value = self.data["scatter"]
        options = value if isinstance(value, Located) else Located([("by", value)], self.data.line_of("scatter"), {})
        self.problems.extend(unknown_keys(options, SCATTER_KEYS, self.path, "scatter"))
        by = options.get("by")
        if by not in SCATTERS:
            self.bad("scatter", f"scatter {by!r} is not one of {', '.join(SCATTERS)}", f"write  {EXAMPLES['scatter']}")
        numbers = []
        for key, applies in (("padding", "region"), ("batch_bases", "chunk")):
            number = options.get(key, 0)
            if not isinstance(number, int) or number < 0 or (number and by != applies):
                self.bad(
                    "scatter", f"scatter {key} {number!r} is not valid", f"{key} is a count of bases, for {applies}"
                )
                number = 0
            numbers.append(number)
        return str(by), numbers[0], numbers[1]

    def inputs(self) -> dict[str, str]:
        value = self.data["inputs"]
        if not isinstance(value, dict) or not all(
            NAME.match(str(k)) and isinstance(t, str) and NAME.match(t) for k, t in value.items()
        ):
            self.bad("inputs", "inputs must map input names to types", f"write  {EXAMPLES['inputs']}")
            return {}
        return {str(k): str(t) for k, t in value.items()}

    def outputs(self) -> tuple[Output, ...]:
        value = self.data["outputs"]
        if not isinstance(value, Located) or not value:
            self.bad("outputs", "outputs must map output names to files", f"write  {EXAMPLES['outputs']}")
            return ()
        outputs = []
        for name, spec in value.items():
            line = value.line_of(name)
            if not isinstance(spec, Located) or not isinstance(spec.get("path"), str) or not NAME.match(name):
                self.bad("outputs", f"output {name!r} needs a path", 'write  name: {path: "{{ id }}.txt"}', line)
                continue
            self.problems.extend(unknown_keys(spec, OUTPUT_KEYS, self.path, f"output {name}"))
            outputs.append(
                Output(
                    name,
                    spec["path"],
                    type=_optional_text(spec.get("type")),
                    index=_optional_text(spec.get("index")),
                    publish=_optional_text(spec.get("publish")),
                    multiqc=spec.get("multiqc") is True,
                )
            )
        return tuple(outputs)

    def tools(self) -> dict[str, str]:
        value = self.data["tools"]
        if isinstance(value, list) and all(isinstance(t, str) and t for t in value):
            return {tool: f"{tool} --version" for tool in value}
        if isinstance(value, dict) and all(isinstance(c, str) and c for c in value.values()):
            return {str(tool): command for tool, command in value.items()}
        self.bad("tools", "tools must be a list of tool names, or tool: version command", f"write  {EXAMPLES['tools']}")
        return {}

    def resources(self) -> tuple[int | None, int, int]:
        """cpus (None: auto), memory and the least memory the tool can run in (MiB)."""
        value = self.data["resources"]
        if not isinstance(value, Located) or "cpus" not in value or "memory" not in value:
            self.bad("resources", "resources need cpus and memory", f"write  {EXAMPLES['resources']}")
            return 1, 1024, MIN_MEMORY_MIB
        self.problems.extend(unknown_keys(value, RESOURCE_KEYS, self.path, "resources"))
        cpus = value["cpus"]
        if cpus != "auto" and (not isinstance(cpus, int) or cpus < 1):
            self.bad(
                "resources", f"cpus {cpus!r} is not valid", "a whole number of vCPUs, or auto", value.line_of("cpus")
            )
            cpus = 1
        memory, least = 1024, MIN_MEMORY_MIB
        try:
            memory = step_memory_mib(value["memory"])
            least = memory_mib(value.get("min_memory", MIN_MEMORY_MIB))
        except ValueError as exc:
            self.bad("resources", str(exc), "e.g. memory: 2 GB", value.line_of("memory"))
        if least > memory:
            self.bad("resources", "min_memory is more than memory", "min_memory: the least the tool runs in")
        return (None if cpus == "auto" else cpus), memory, least

    def number(self, key: str) -> float:
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.bad(key, f"{key} {value!r} is not a number >= 0", f"write  {EXAMPLES[key]}")
            return 0.0
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            self.bad(key, f"{key} {value!r} is not true or false", f"write  {key}: true")
            return False
        return value

    def names(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) and NAME.match(v) for v in value):
            self.bad(key, f"{key} must be a list of step names", f"write  {key}: [markdup]")
            return []
        return list(value)


def _optional_text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
