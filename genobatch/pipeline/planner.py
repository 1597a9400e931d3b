"""The planner: step declarations + a run's inputs -> the graph of tasks, with no I/O and no knowledge of any
particular pipeline (the germline pipeline is only the steps in ``genobatch/steps/``).

Data flows by type. The run's inputs give ``fasta`` (the reference file), ``fastq`` (each FASTQ file) and
``reads`` (each lane's FASTQ files). A step's typed outputs become what later steps of the order read:
for each sample and type the newest items win, so a step that reads and writes ``bam`` (markdup) replaces
the BAM that steps after it see. Items have an ``id``: the sample's name, or ``sample.label`` for a
labelled producer (freebayes' VCF beside bcftools'); a step runs once per id of its first input.

Steps scattered per chunk or region make parts; right after such a step, the step that ``gathers`` the type
joins each sample's parts into one item (merge for bam, concat for vcf). Steps over ``all_samples``
(MultiQC, the joint call) are planned separately (``summary``), over the samples that succeeded.
The items it binds to a task's inputs, and the binding itself, are in ``binding``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genobatch import __version__
from genobatch.executors.task import Task
from genobatch.problems import InputError, Problem

from .binding import Binder, Context, Item, LaneFacts, Ref, Store, file_name
from .declarations import PARTS, Step
from .inputs import Sample
from .settings import StepSettings
from .templates import OUT, STEP_VALUES, Region, StepTemplates, Words

RUN_INPUTS = ("fasta", "fastq", "reads")  # types the run's inputs provide
MULTIQC = "multiqc"  # the type of every output a step marks `multiqc: true`
AUTO_CPUS_MAX = 4  # cpus: auto gives a scattered step's tasks at most this many threads
NO_SETTINGS = StepSettings()  # a step's settings when the settings file has none for it


@dataclass(frozen=True)
class Params:
    """The run's parameters, as templates see them (``{{ params.ploidy }}``)."""

    ploidy: int = 2
    chunk_reads: int = 500_000  # read pairs (or reads) per alignment chunk
    regions: int = 0  # regions over the whole reference (0: one per Mb, at most 8)
    max_depth: int | None = None  # bcftools mpileup -d (bcftools' default when None)


@dataclass(frozen=True)
class Limits:
    """What the run may use: every task's request is capped to it."""

    vcpus: int
    memory_mib: int | None = None


@dataclass(frozen=True)
class RunInputs:
    samples: list[Sample]
    fasta: Path
    contigs: list[tuple[str, int]]
    reads: dict[Path, int]  # reads (pairs) per lane, by its fastq_1
    # reads per chunk of a lane (fastq_1, fastq_2, its reads, the aligner's batch bases): read from the files
    chunker: Callable[[Path, Path | None, int, int], list[int]] = field(compare=False)
    # where results come from, for their headers ({{ run.reference }}, {{ run.version }}, {{ run.command }})
    provenance: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass
class Published:
    """Where a task's outputs go in the outdir (output file name -> path relative to the outdir)."""

    task: str
    files: dict[str, str]


@dataclass
class Graph:
    steps: list[Step]  # in order
    tasks: list[Task]  # in dependency order
    published: list[Published]


class Planner:
    def __init__(
        self,
        steps: list[Step],
        run: RunInputs,
        params: Params,
        limits: Limits,
        settings: dict[str, StepSettings] | None = None,
    ) -> None:
        self.steps, self.run, self.params, self.limits = steps, run, params, limits
        self.settings = settings or {}
        self.templates = {s.name: StepTemplates(s) for s in steps}
        self._common: dict[str, dict[str, Any]] = {}  # step -> the variables all its tasks share
        self._last_summary: tuple[frozenset[str], Graph] | None = None
        self.gatherer = {s.gathers: s for s in steps if s.gathers}
        self.store: Store = defaultdict(dict)
        self.reports: list[Item] = []  # outputs MultiQC reads
        self.tasks: dict[str, Task] = {}
        self.provenance = {"reference": f"file://{run.fasta}", "version": __version__, "command": "genobatch run"}
        self.provenance.update(run.provenance)
        self.publications: dict[str, tuple[str, str]] = {}  # outdir path -> (task, file)
        self._add_run_inputs()

    # --- the two phases ---------------------------------------------------------------------------------------
    def samples(self) -> Graph:
        """Every task of the steps that are not over all samples, in dependency order."""
        for step in self.steps:
            if step.gathers or step.scatter == "all_samples":
                continue
            produced = self._plan_step(step)
            for type_, items in produced.items():
                self.store[type_].update(items)
                gatherer = self.gatherer.get(type_)
                if step.scatter in PARTS and gatherer is not None:
                    self.store[type_].update(self._gather(gatherer, items))
        return Graph(self.steps, list(self.tasks.values()), self._published(self.publications, self.tasks))

    def summary(self, samples: set[str]) -> Graph:
        """The tasks over all (these) samples: planned after the others, without changing this planner. The last
        one is kept: a run asks for the same one to decide what runs, to show it, and to run it."""
        if self._last_summary is not None and self._last_summary[0] == samples:
            return self._last_summary[1]
        graph = self._summary(samples)
        self._last_summary = (frozenset(samples), graph)
        return graph

    def _summary(self, samples: set[str]) -> Graph:
        before, published, reports = dict(self.tasks), dict(self.publications), list(self.reports)
        try:
            for step in self.steps:
                if step.scatter == "all_samples":
                    self._plan_step(step, samples)
            added = {name: task for name, task in self.tasks.items() if name not in before}
            summary_only = {path: v for path, v in self.publications.items() if v[0] in added}
            return Graph(self.steps, list(added.values()), self._published(summary_only, added))
        finally:
            self.tasks, self.publications, self.reports = before, published, reports

    # --- inputs of the run ------------------------------------------------------------------------------------
    def _add_run_inputs(self) -> None:
        self.store["fasta"][(None, "")] = [Item("fasta", None, "", [Ref(None, self.run.fasta)])]
        for sample in self.run.samples:
            key = (sample.name, sample.name)
            for number, lane in enumerate(sample.lanes, start=1):
                files = [f for f in (lane.fastq_1, lane.fastq_2) if f is not None]
                facts = LaneFacts(
                    number,
                    self.run.reads[lane.fastq_1],
                    tuple(files),
                    lane.unit or str(number),
                    lane.library or sample.name,
                    lane.platform or "ILLUMINA",
                )
                for mate, file in enumerate(files, start=1):
                    fastq = Item("fastq", sample.name, sample.name, [Ref(None, file)], facts, mate)
                    self.store["fastq"].setdefault(key, []).append(fastq)
                reads = Item("reads", sample.name, sample.name, [Ref(None, f) for f in files], facts)
                self.store["reads"].setdefault(key, []).append(reads)

    # --- one step ---------------------------------------------------------------------------------------------
    def _plan_step(self, step: Step, samples: set[str] | None = None) -> Store:
        produced: Store = defaultdict(dict)
        made: list[Task] = []
        for context in self._contexts(step, samples):
            made.append(self._task(step, context, produced))
        if step.cpus is None and self.settings.get(step.name, NO_SETTINGS).cpus is None:
            # auto: threads from how many tasks share the machine
            threads = (
                1
                if len(made) >= self.limits.vcpus
                else max(1, min(AUTO_CPUS_MAX, self.limits.vcpus // max(1, len(made))))
            )
            for task in made:
                task.vcpus = threads
        return produced

    def _contexts(self, step: Step, samples: set[str] | None) -> list[Context]:
        """One context per task of the step: its sample, id, scatter position and the items of its inputs."""
        if step.scatter in ("once", "all_samples"):
            bound = {name: self._all_items(type_, samples) for name, type_ in step.inputs.items()}
            empty = step.inputs and not all(bound.values())  # e.g. every sample failed: no MultiQC of nothing
            return [] if empty else [Context(step.name, None, step.name, bound)]
        primary = next(iter(step.inputs.items()), None)
        if primary is None:
            raise InputError([step.problem("inputs", f"step {step.name} has no input to scatter over", "add one")])
        contexts = []
        for (owner, id_), items in list(self.store[primary[1]].items()):  # in the samples' order
            if owner is not None and (samples is None or owner in samples):
                contexts += self._scatter(step, owner, id_, items)
        return contexts

    def _scatter(self, step: Step, sample: str, id_: str, items: list[Item]) -> list[Context]:
        name = f"{step.name}:{id_}"
        primary = next(iter(step.inputs))
        if step.scatter == "sample":
            return [self._context(step, name, sample, id_, {primary: items})]
        if step.scatter == "region":
            return [
                self._context(step, f"{name}:{r}", sample, id_, {primary: items}, region=Region(*region, step.padding))
                for r, region in enumerate(self._regions())
            ]
        contexts = []
        for item in items:  # file, lane, chunk: one per file or lane
            number = item.lane.number if item.lane else 0
            where = f"{name}:{number}" + (f":{file_name(item.refs[0].name)}" if step.scatter == "file" else "")
            if step.scatter != "chunk":
                contexts.append(self._context(step, where, sample, id_, {primary: [item]}, item=item))
                continue
            sizes = self._chunk_sizes(step, item)
            for c in range(len(sizes)):
                contexts.append(
                    self._context(step, f"{where}:{c}", sample, id_, {primary: [item]}, item=item, chunk=(c, sizes))
                )
        return contexts

    def _context(
        self,
        step: Step,
        name: str,
        sample: str,
        id_: str,
        bound: dict[str, list[Item]],
        item: Item | None = None,
        region: Region | None = None,
        chunk: tuple[int, list[int]] | None = None,
    ) -> Context:
        for input_name, type_ in list(step.inputs.items())[len(bound) :]:
            bound[input_name] = self._items_for(step, type_, sample, id_)
        return Context(name, sample, id_, bound, item, region, chunk)

    def _items_for(self, step: Step, type_: str, sample: str, id_: str) -> list[Item]:
        """A secondary input: the sample's item of the same id, else of the sample's own id, else the run's."""
        by_key = self.store[type_]
        for key in ((sample, id_), (sample, sample), (None, "")):
            if key in by_key:
                return by_key[key]
        message = f"step {step.name} needs a {type_} for {sample}, and no step makes one"
        raise InputError([step.problem("inputs", message)])

    def _all_items(self, type_: str, samples: set[str] | None) -> list[Item]:
        if type_ == MULTIQC:
            return [i for i in self.reports if samples is None or i.sample is None or i.sample in samples]
        order = {s.name: n for n, s in enumerate(self.run.samples)}
        keys = [k for k in self.store[type_] if k[0] is None or samples is None or k[0] in samples]
        keys.sort(key=lambda k: (-1 if k[0] is None else order[k[0]], k[1]))
        return [item for key in keys for item in self.store[type_][key]]

    # --- building a task --------------------------------------------------------------------------------------
    def _task(self, step: Step, context: Context, produced: Store) -> Task:
        templates = self.templates[step.name]
        binder = Binder()
        variables = self._variables(step, context)
        for name, items in context.bound.items():
            refs = [ref for item in items for ref in item.refs]
            variables[name] = Words([binder.bind(ref) for ref in refs], [file_name(ref.name) for ref in refs])
        builtin = None
        if context.chunk is not None and len(context.chunk[1]) > 1:
            builtin, variables[next(iter(step.inputs))] = self._chunk_builtin(step, context, variables)
        settings = self.settings.get(step.name, NO_SETTINGS)
        outputs = {o.name: templates.files(o.name, variables) for o in step.outputs}
        pipes, lists = templates.pipes(variables)
        task = Task(
            context.name,
            step.name,
            context.sample,
            pipes,
            [
                f
                for o in step.outputs
                for name in outputs[o.name]
                for f in (name, *([name + o.index] if o.index else []))
            ],
            vcpus=min(settings.cpus or step.cpus or 1, self.limits.vcpus),
            memory_mib=min(settings.memory_mib or step.memory_mib, self.limits.memory_mib or 1 << 40),
            upstream=binder.upstream,
            files=binder.files,
            builtin=builtin,
            tools=list(step.tools) + ([f"image {step.image}"] if step.foreign_image else []),
            image=step.image,
            intermediate=step.intermediate,
            group=f"{step.name}:{context.id}" if step.scatter in PARTS else None,
            timeout_seconds=settings.timeout_seconds,
            executor_args=settings.executor_args,
            lists=lists,
        )
        if task.name in self.tasks:
            raise InputError([step.problem("name", f"two tasks are named {task.name}", "rename a sample or file")])
        self.tasks[task.name] = task
        self._register(step, context, task, outputs, variables, produced)
        return task

    def _step_variables(self, step: Step) -> dict[str, Any]:
        """What every task of a step sees alike, made once: the same objects let its templates be evaluated once
        per step (``templates._Template``)."""
        if step.name not in self._common:
            settings = self.settings.get(step.name, NO_SETTINGS)
            self._common[step.name] = {
                "out": OUT,
                "cpus": "{threads}",
                "memory_mib": "{memory_mib}",
                "heap_mib": "{heap_mib}",
                "params": asdict(self.params),
                "run": self.provenance,
                "scatter": {"padding": step.padding, "batch_bases": step.batch_bases},
                **{key: Words(settings.args.get(key, [])) for key in ("args", "args2", "args3")},
            }
            self._common[step.name][STEP_VALUES] = object()  # stands for these values: the same for every task
        return self._common[step.name]

    def _variables(self, step: Step, context: Context) -> dict[str, Any]:
        variables = dict(self._step_variables(step))
        if context.sample is not None:
            variables.update(sample=context.sample, id=context.id)
        else:  # over the run: what its FASTQ files are called in the sheet's words, for reports (MultiQC)
            variables["renames"] = Words(self._renames(context))
        if context.item is not None and context.item.lane is not None:
            lane = context.item.lane
            variables.update(lane=lane.number, paired=len(lane.raw) == 2, mate=context.item.mate)
            variables.update(unit=lane.unit, library=lane.library, platform=lane.platform)
        if context.region is not None:
            variables["region"] = context.region
        if context.chunk is not None:
            variables["chunk"] = context.chunk[0]
        return variables

    def _renames(self, context: Context) -> list[str]:
        """``file stem<TAB>sample[_L<lane>][_R<mate>]`` for the FASTQ files behind the items (MultiQC's
        ``--replace-names`` file, with ``as_file``)."""
        lanes = {s.name: len(s.lanes) for s in self.run.samples}
        pairs: dict[str, str] = {}
        for item in (i for items in context.bound.values() for i in items):
            if item.mate is None or item.lane is None or item.sample is None:
                continue
            name = item.sample + (f"_L{item.lane.number}" if lanes.get(item.sample, 1) > 1 else "")
            name += f"_R{item.mate}" if len(item.lane.raw) == 2 else ""
            stem = Words([], [item.lane.raw[item.mate - 1].name]).stem
            pairs.setdefault(stem, name)
        return [f"{stem}\t{name}" for stem, name in pairs.items()]

    def _register(
        self,
        step: Step,
        context: Context,
        task: Task,
        outputs: dict[str, list[str]],
        variables: dict[str, Any],
        produced: Store,
    ) -> None:
        """The task's outputs as items for later steps, for MultiQC, and as files to publish."""
        out_id = f"{context.sample}.{step.label}" if step.label and context.sample else context.id
        templates = self.templates[step.name]
        for output in step.outputs:
            refs = [Ref(task.name, f) for f in outputs[output.name]]
            if output.type:
                key = (context.sample, out_id if context.sample else "")
                lane = context.item.lane if context.item else None  # a lane's trimmed reads keep its facts
                produced[output.type].setdefault(key, []).append(Item(output.type, context.sample, out_id, refs, lane))
            if output.multiqc:  # a FastQC report keeps its FASTQ's lane and mate: MultiQC learns the sheet's name
                item = context.item
                lane, mate = (item.lane, item.mate) if item else (None, None)
                self.reports.append(Item(MULTIQC, context.sample, out_id, refs, lane, mate))
            for file in outputs[output.name]:
                target = templates.published(output.name, file, variables)
                if target is not None:
                    self._publish(target, task.name, file)
                    if output.index:
                        self._publish(target + output.index, task.name, file + output.index)

    def _publish(self, target: str, task: str, file: str) -> None:
        """A later task may replace an earlier one's file only if it descends from it (markdup after merge)."""
        earlier = self.publications.get(target)
        if earlier is not None and not self._descends(task, earlier[0]):
            raise InputError(
                [Problem(Path(target), None, f"{earlier[0]} and {task} would both publish {target}", "rename one")]
            )
        self.publications[target] = (task, file)

    def _descends(self, task: str, ancestor: str) -> bool:
        stack, seen = [task], set()
        while stack:
            name = stack.pop()
            if name == ancestor:
                return True
            if name not in seen:
                seen.add(name)
                stack.extend(self.tasks[name].upstream if name in self.tasks else [])
        return False

    @staticmethod
    def _published(publications: dict[str, tuple[str, str]], tasks: dict[str, Task]) -> list[Published]:
        per_task: dict[str, dict[str, str]] = defaultdict(dict)
        for target, (task, file) in publications.items():
            per_task[task][file] = target
        return [Published(name, per_task[name]) for name in tasks if name in per_task]

    # --- scatter and gather -----------------------------------------------------------------------------------
    def _gather(
        self, step: Step, parts: dict[tuple[str | None, str], list[Item]]
    ) -> dict[tuple[str | None, str], list[Item]]:
        produced: Store = defaultdict(dict)
        for (sample, id_), items in parts.items():
            assert sample is not None
            self._task(step, Context(f"{step.name}:{id_}", sample, id_, {next(iter(step.inputs)): items}), produced)
        return produced[step.gathers or ""]

    def _regions(self) -> list[tuple[str, int, int]]:
        """About --regions regions of similar length, never crossing a contig; 1-based inclusive."""
        total = sum(length for _, length in self.run.contigs)
        count = self.params.regions or max(1, min(8, math.ceil(total / 1_000_000)))
        size = max(1, math.ceil(total / count))
        return [
            (name, start, min(start + size - 1, length))
            for name, length in self.run.contigs
            for start in range(1, length + 1, size)
        ]

    def _chunk_sizes(self, step: Step, item: Item) -> list[int]:
        """Reads per chunk, cut at the aligner's batch boundaries of the lane's FASTQ files. Reads an earlier
        step made (trimmed) are cut when their task runs: zeros here, as many chunks as the files' cut has
        (trimming only shortens reads, so they hold no more batches)."""
        lane = item.lane
        if lane is None or lane.reads <= self.params.chunk_reads:
            return [lane.reads if lane else 0]
        second = lane.raw[1] if len(lane.raw) > 1 else None
        sizes = self.run.chunker(lane.raw[0], second, lane.reads, step.batch_bases)
        return sizes if item.refs[0].task is None else [0] * len(sizes)

    def _chunk_builtin(self, step: Step, context: Context, variables: dict[str, Any]) -> tuple[dict[str, Any], Words]:
        """A chunk of a lane's reads, cut by the job runner into the task's directory before its commands."""
        assert context.chunk is not None
        index, sizes = context.chunk
        sources = variables[next(iter(step.inputs))]
        names = [f".chunk_R{m}.fastq" for m in range(1, len(sources) + 1)]
        builtin = {
            "op": "fastq_chunk",
            "files": list(sources),
            "names": names,
            "index": index,
            "sizes": sizes if any(sizes) else None,
            "chunks": len(sizes),
            "batch_bases": step.batch_bases,
        }
        return builtin, Words(f"{OUT}/{n}" for n in names)
