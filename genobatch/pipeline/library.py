"""The step library: the built-in steps (``genobatch/steps/*.yaml``) plus any a user loads with ``--steps``,
checked together, and the pipeline a run selects from them (``--tools``, ``--skip-tools``), in order.

The order comes from the data: a step that makes a type comes before a step that changes it (reads and
writes it, like markdup for ``bam``), which comes before the steps that only read it; ``after:`` settles
what types do not. Everything else that lists steps (the progress table, the report's colours, the
estimate's rates, the images to build, the tools to check) is derived from the selection.
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Sequence
from pathlib import Path

from genobatch.executors.runtimes import Needs
from genobatch.executors.task import HOST
from genobatch.images import ImageSpec
from genobatch.problems import InputError, Problem

from .declarations import SCATTERS, Step, load_step
from .planner import MULTIQC, RUN_INPUTS
from .templates import StepTemplates

BUILT_IN = Path(__file__).resolve().parent.parent / "steps"


class Library:
    def __init__(self, steps: list[Step], image_names: set[str]) -> None:
        self.steps = {s.name: s for s in steps}
        self.image_names = image_names  # images genobatch builds (images/<name>/Containerfile)
        _check(steps, image_names)

    @classmethod
    def load(cls, user_paths: Sequence[Path] = (), images_dir: Path | None = None) -> Library:
        """The built-in steps and the user's (files, or folders of *.yaml), every problem reported at once."""
        files, problems = sorted(BUILT_IN.glob("*.yaml")), []
        for path in user_paths:
            found = sorted(path.glob("*.yaml")) if path.is_dir() else [path] if path.is_file() else []
            if not found:
                problems.append(
                    Problem(path, None, "no step declaration here", "give a step's .yaml file, or a folder of them")
                )
            files += found
        steps: list[Step] = []
        for path in files:
            try:
                step = load_step(path)
                StepTemplates(step)  # compiles every template: unknown variables are refused now
                steps.append(step)
            except InputError as exc:
                problems += exc.problems
        seen: dict[str, Path] = {}
        for step in steps:
            if step.name in seen:
                problems.append(
                    step.problem("name", f"a step {step.name!r} is already in {seen[step.name]}", "rename it")
                )
            seen.setdefault(step.name, step.source)
        if problems:
            raise InputError(problems)
        images = images_dir or BUILT_IN.parent.parent / "images"
        return cls(steps, {p.parent.name for p in images.glob("*/Containerfile")})

    @property
    def images(self) -> list[ImageSpec]:
        """The genobatch images every loaded step needs (what ``genobatch images build`` builds)."""
        return needs(list(self.steps.values()), self.image_names).images

    @property
    def optional(self) -> list[str]:
        return sorted(name for name, step in self.steps.items() if step.optional)

    def select(self, tools: Sequence[str] = (), skip: Sequence[str] = ()) -> list[Step]:
        """The steps a run uses, in order: the default ones, plus ``tools``, minus ``skip``."""
        problems = [self._unknown(name, "--tools") for name in tools if name not in self.steps]
        problems += [self._unknown(name, "--skip-tools") for name in skip if name not in self.steps]
        if any(problems):
            raise InputError([p for p in problems if p])
        chosen = [s for s in self.steps.values() if (not s.optional or s.name in tools) and s.name not in skip]
        _check_inputs(chosen, self.steps)
        return order(chosen)

    def _unknown(self, name: str, flag: str) -> Problem:
        close = difflib.get_close_matches(name, list(self.steps), n=1)
        fix = f"did you mean {close[0]!r}? " if close else ""
        return Problem(
            Path(flag), None, f"there is no step {name!r}", fix + f"optional steps: {', '.join(self.optional)}"
        )


def order(steps: list[Step]) -> list[Step]:
    """Steps in the order they run: makers, then changers, then readers of each type; gathers follow the
    first step whose parts they gather; ties go to the coarser scatter, then the name."""
    plain = [s for s in steps if not s.gathers]
    names = {s.name for s in plain}
    before: dict[str, set[str]] = {s.name: {a for a in s.after if a in names} for s in plain}
    for type_ in {t for s in plain for t in _makes(s) | set(s.inputs.values())}:
        makers = [s.name for s in plain if type_ in _makes(s) and type_ not in s.inputs.values()]
        changers = [s.name for s in plain if type_ in _makes(s) and type_ in s.inputs.values()]
        readers = [s.name for s in plain if type_ in s.inputs.values() and type_ not in _makes(s)]
        for name in changers + readers:
            before[name].update(makers)
        for name in readers:
            before[name].update(changers)
        _check_changers([s for s in plain if s.name in changers])
    result: list[Step] = []
    for step in _topological(plain, before):
        result.append(step)
        result += [g for g in steps if g.gathers and g.gathers in step.produces and g not in result]
    return result


def _check_changers(changers: list[Step]) -> None:
    """Two steps that change the same type (read it and write it) must say which comes first."""
    for i, first in enumerate(changers):
        for second in changers[i + 1 :]:
            if first.name not in second.after and second.name not in first.after:
                message = f"{first.name} and {second.name} both change the same type: which comes first?"
                fix = f"add  after: [{first.name}]  to {second.name} (or the reverse)"
                raise InputError([second.problem("inputs", message, fix)])


def _makes(step: Step) -> set[str]:
    return step.produces | ({MULTIQC} if any(o.multiqc for o in step.outputs) else set())


def _topological(steps: list[Step], before: dict[str, set[str]]) -> list[Step]:
    by_name = {s.name: s for s in steps}
    waiting = {s.name: set(before[s.name]) - {s.name} for s in steps}
    ready = [(SCATTERS.index(s.scatter), s.name) for s in steps if not waiting[s.name]]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, name = heapq.heappop(ready)
        ordered.append(by_name[name])
        for other, needs in waiting.items():
            if name in needs:
                needs.discard(name)
                if not needs and by_name[other] not in ordered:
                    heapq.heappush(ready, (SCATTERS.index(by_name[other].scatter), other))
    if len(ordered) < len(steps):
        stuck = sorted(set(by_name) - {s.name for s in ordered})
        message = f"steps wait for each other: {', '.join(stuck)}"
        raise InputError([by_name[stuck[0]].problem("after", message, "fix their after:")])
    return ordered


def _check(steps: list[Step], image_names: set[str]) -> None:
    """Facts that span steps: one version command per tool, images that exist, one gatherer per type."""
    problems: list[Problem] = []
    version_of: dict[str, tuple[str, Step]] = {}
    gatherer: dict[str, str] = {}
    for step in steps:
        for tool, command in step.tools.items():
            known, first = version_of.setdefault(tool, (command, step))
            if known != command:
                problems.append(step.problem("tools", f"{tool}'s version command differs from {first.source}'s", known))
        if step.image != HOST and not step.foreign_image and step.image not in image_names:
            fix = f"genobatch images: {', '.join(sorted(image_names))}; or an image reference (quay.io/...), or host"
            problems.append(step.problem("image", f"there is no genobatch image {step.image!r}", fix))
        if step.scatter == "chunk" and step.foreign_image:
            fix = "chunks are cut by genobatch's runner: use a genobatch image, or host"
            problems.append(step.problem("image", f"{step.name} cannot cut chunks in {step.image}", fix))
        if step.gathers:
            if step.scatter != "sample" or list(step.inputs.values()) != [step.gathers]:
                fix = "a gather has scatter: sample and one input, of that type"
                problems.append(step.problem("gathers", f"{step.name} cannot gather {step.gathers}", fix))
            if step.gathers in gatherer:
                message = f"{gatherer[step.gathers]} gathers {step.gathers} already"
                problems.append(step.problem("gathers", message, "remove one"))
            gatherer[step.gathers] = step.name
    if problems:
        raise InputError(problems)


def _check_inputs(chosen: list[Step], every: dict[str, Step]) -> None:
    """Every input of a chosen step must be made by a chosen step, or come with the run; two steps that make
    the same type for each sample must be told apart by a label."""
    made = set(RUN_INPUTS) | {t for s in chosen for t in _makes(s) - set(s.inputs.values())}  # not only changed
    problems = []
    for step in chosen:
        for name, type_ in step.inputs.items():
            if type_ not in made:
                makers = sorted(s.name for s in every.values() if type_ in _makes(s) - set(s.inputs.values()))
                fix = (
                    f"made by {', '.join(makers)}: select it (--tools), or do not skip it"
                    if makers
                    else "no step makes it"
                )
                problems.append(step.problem("inputs", f"{step.name}'s input {name} needs a {type_}", fix))
    unlabelled: dict[str, str] = {}
    for step in chosen:
        if step.label or step.gathers:
            continue
        for type_ in step.produces - set(step.inputs.values()):
            if type_ in unlabelled:
                message = f"{unlabelled[type_]} and {step.name} both make a {type_} for each sample"
                problems.append(step.problem("outputs", message, f"tell them apart: add  label: {step.name}"))
            unlabelled.setdefault(type_, step.name)
    if problems:
        raise InputError(problems)


def needs(steps: Sequence[Step], built: set[str]) -> Needs:
    """What these steps need of a runtime: the genobatch images (``built``: the names genobatch builds), each
    with the tools its steps use and their version commands (what ``genobatch images build`` smoke-tests);
    the tools on the host; the images genobatch did not build."""
    tools: dict[str, dict[str, str]] = {}
    for step in steps:
        if step.image in built:
            tools.setdefault(step.image, {}).update(step.tools)
    images = [ImageSpec(name, tuple(sorted(tools[name].items()))) for name in sorted(tools)]
    host = {tool: (command, step.image) for step in steps for tool, command in step.tools.items()}
    host_only = {tool: (command, HOST) for step in steps if step.image == HOST for tool, command in step.tools.items()}
    foreign = {step.image: f"step {step.name} ({step.source})" for step in steps if step.foreign_image}
    return Needs(images, host, host_only, foreign)
