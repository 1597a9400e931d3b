"""``genobatch run``: check the inputs, plan the tasks, run what is not cached on the engine, publish.

The work directory (``--work-dir``, default ``./work``) holds everything that is not a result:
``cache/`` (task outputs by content key), ``engine/`` (the batch engine's state and job logs),
``tasks/`` (the task files jobs run), ``inputs.json`` (remembered input checks) and ``index.json``
(what each task's key was made of in the last run, for ``--explain``).

What runs is decided by the step declarations (``library``), planned by ``planner``, sequenced by
``workflow`` and run by ``driver``; this module wires them to the run's inputs, cache and outdir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genobatch.batch.model import JobStatus
from genobatch.executors import chunks, registry, runtimes
from genobatch.executors.base import Executor, RunContext
from genobatch.executors.contract import JobState, Recoveries
from genobatch.executors.runtimes import RunRuntime
from genobatch.executors.task import Task
from genobatch.problems import InputError
from genobatch.report.html import write_report
from genobatch.report.trace import TraceRow, write_trace
from genobatch.storage import s3 as storage

from . import estimate
from .describe import describe_plan, explain
from .driver import Driver
from .inputs import FastaFacts, FileFacts, check_fasta, check_inputs, parse_sample_sheet
from .library import Library, needs
from .planner import Graph, Limits, Params, Planner, RunInputs
from .progress import Progress
from .remote_inputs import Localiser
from .settings import load_settings
from .workflow import Plan, Workflow, decide_samples


@dataclass
class Options:
    input: Path | str  # a file, or an s3:// URI (fetched once into the work directory)
    fasta: Path | str
    outdir: Path | str  # a directory, or an s3:// URI
    work_dir: Path = Path("work")
    params: Params = field(default_factory=Params)
    max_cpus: int | None = None
    max_memory_mib: int | None = None
    dry_run: bool = False
    explain: bool = False
    keep_intermediates: bool = False
    live_progress: bool | None = None
    runtime: str = "auto"  # see runtimes.CHOICES
    executor: str = "local"  # a name in genobatch.executors.EXECUTORS
    executor_settings: Any = None  # its module's Settings (None: the defaults)
    endpoint_url: str | None = None  # another S3 endpoint, for s3:// inputs and outdirs
    tools: list[str] = field(default_factory=list)  # optional steps to add
    skip_tools: list[str] = field(default_factory=list)  # steps to leave out
    steps: list[Path] = field(default_factory=list)  # the user's own step declarations (files or folders)
    settings: Path | None = None  # per-step settings (cpus, memory, time, args)


class Run:
    def __init__(self, options: Options, library: Library | None = None) -> None:
        self.o = options
        self.library = library
        self.work = options.work_dir.resolve()
        self.facts = FileFacts(self.work / "inputs.json")
        self.trace: list[TraceRow] = []
        self.errors: dict[str, str] = {}  # task name -> why it failed
        self.last_plan: Plan | None = None
        self.runtime: RunRuntime | None = None
        self.planner: Planner | None = None
        self._executor: Executor | None = None
        self.run_id = time.strftime("%Y%m%dT%H%M%S")  # tags every job of this run (AWS Batch, cost reports)
        self.recoveries = Recoveries()  # what the backend did on its own: reclaims, more memory...
        outdir = str(options.outdir)
        self.outdir = outdir if storage.is_s3(outdir) else str(Path(outdir).resolve())

    # --- planning -----------------------------------------------------------------------------------------
    def plan(self) -> Plan:
        """Check all inputs (raises InputError) and work out what must run."""
        self.library = library = self.library or Library.load(self.o.steps)
        steps = library.select(self.o.tools, self.o.skip_tools)
        settings = load_settings(self.o.settings, library.steps) if self.o.settings else {}
        localiser = Localiser(self.work, self.o.endpoint_url)  # s3:// inputs: local copies, fetched once
        sheet, reference = localiser.sheet(self.o.input), localiser.fasta(self.o.fasta)
        samples, problems = parse_sample_sheet(sheet)
        known = self.facts.get(reference, "fasta") if reference.is_file() else None
        fasta = FastaFacts([tuple(c) for c in known]) if known else check_fasta(reference)
        self.facts.put(reference, "fasta", fasta.contigs)
        counts = check_inputs(sheet, samples, self.facts, problems)
        self.runtime = runtimes.choose(self.o.runtime, needs(steps, library.image_names))
        self._executor = self._open_executor(self.runtime)
        refused = [(step, self.executor.refuse_image(step.image)) for step in steps]
        if any(why for _, why in refused):
            raise InputError([step.problem("image", f"step {step.name}: {why}") for step, why in refused if why])
        reads = {lane.fastq_1: counts[lane.fastq_1] for sample in samples for lane in sample.lanes}
        run = RunInputs(samples, reference, fasta.contigs, reads, self._chunks)
        self.planner = Planner(steps, run, self.o.params, self._limits(), settings)
        graph = self.planner.samples()
        keys: dict[str, str] = {}
        material = self.keys(graph.tasks, keys)
        self.facts.save()
        needed, cached = self._decide(graph, keys, {s.name for s in samples})
        plan = Plan(steps, graph.tasks, graph.published, needed, cached, material, self.runtime.versions)
        for sample in samples:
            files = [f for lane in sample.lanes for f in (lane.fastq_1, lane.fastq_2) if f is not None]
            plan.sample_mb[sample.name] = sum(f.stat().st_size for f in files) / 1e6
        return plan

    def _decide(self, graph: Graph, keys: dict[str, str], samples: set[str]) -> tuple[list[Task], set[str]]:
        """What of the samples' tasks must run, with the tasks over all of them in view."""
        assert self.planner is not None
        summary = self.planner.summary(samples)
        self.keys(summary.tasks, dict(keys))
        return decide_samples(graph, summary, self.executor.is_cached)

    def _limits(self) -> Limits:
        return Limits(self.o.max_cpus or len(os.sched_getaffinity(0)), self.o.max_memory_mib)

    def _chunks(self, first: Path, second: Path | None, reads: int, batch_bases: int) -> list[int]:
        """Reads per chunk of a lane, cut at the aligner's batch boundaries (remembered per file)."""
        kind = f"bwa_batches:{batch_bases}:{second.resolve() if second else ''}"
        batches = self.facts.get(first, kind)
        if batches is None:
            batches = chunks.bwa_batches(first, second, batch_bases)
            self.facts.put(first, kind, batches)
        return chunks.chunk_sizes(batches, chunks.chunk_count(reads, self.o.params.chunk_reads))

    def keys(self, tasks: list[Task], keys: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Give each task its key (``keys`` holds those of tasks keyed earlier); returns what each is made of."""
        assert self.runtime is not None
        versions = self.runtime.versions
        material = {}
        for task in tasks:  # tasks come in dependency order
            hashes = [self.facts.sha256(path) for path in task.files]
            ups = {name: keys[name] for name in task.upstream}
            keys[task.name] = task.compute_key(ups, hashes, versions)
            material[task.name] = task.explain_material(ups, hashes, versions)
        return material

    def workflow(self, plan: Plan) -> Workflow:
        assert self.planner is not None
        return Workflow(self.planner, plan, self.keys, self.executor.is_cached, self.o.keep_intermediates)

    # --- the run ---------------------------------------------------------------------------------------------
    def execute(self) -> int:
        """Returns the exit code: 0 when every sample succeeded, 1 otherwise. Bad input raises InputError."""
        started = time.time()
        plan = self.plan()
        self.last_plan = plan
        preview = plan.copy()  # with the tasks over all samples, as if every sample succeeds
        self.workflow(preview).add_summary({s for t in plan.tasks if (s := t.sample) is not None})
        assert self.runtime is not None
        print(f"Runtime: {self.runtime.describe()}")
        if self.o.explain:
            print("\n".join(explain(preview, self.work / "index.json")) or "Nothing to run: every task is cached.")
        if self.o.dry_run:
            print("\n".join(describe_plan(preview, self.executor.capabilities.max_array_size)))
            rates, source = estimate.load_rates(self.work / "rates.json", {s.name: s.rate for s in plan.steps})
            seconds = estimate.vcpu_seconds(preview.needed, preview.sample_mb, rates)
            print("\n".join(estimate.cost_lines(seconds, self.executor.prices(), source)))
            return 0
        if not preview.needed:
            print(f"Nothing to run: every output of the {len(preview.tasks)} tasks is cached or not needed.")
        workflow = self.workflow(plan)
        backend = self.executor.backend()
        try:
            with Progress([s.name for s in plan.steps], live=self.o.live_progress) as progress:
                driver = Driver(self.executor, backend, progress, self.run_id)

                def on_end(task: Task, state: JobState) -> None:
                    ok = state.status is JobStatus.SUCCEEDED
                    for key in workflow.finished(task, ok, "" if ok else driver.why_failed(state)):
                        self.executor.remove(key)

                while todo := workflow.next_tasks():
                    driver.run(todo, workflow.plan.tasks, workflow.plan.cached, on_end)
                self.trace = driver.trace
        finally:
            self.recoveries = backend.recoveries()
            backend.close()
        if self.recoveries.describe():
            print(f"Recovered by the backend: {self.recoveries.describe()}")
        self.errors = workflow.errors
        self._publish(workflow.plan, workflow.failed_samples)
        self._write_info(workflow.plan, started)
        return self._summarise(workflow.failed_samples)

    def _publish(self, plan: Plan, failed_samples: set[str | None]) -> None:
        by_name = {t.name: t for t in plan.tasks}
        for item in plan.published:
            task = by_name[item.task]
            if task.sample in failed_samples or task.name in self.errors or not self.executor.is_cached(task.key):
                continue
            self.executor.publish(task.key, item.files, self.outdir)

    def _write_info(self, plan: Plan, started: float) -> None:
        remote = storage.is_s3(self.outdir)
        info = self.work / "pipeline_info" if remote else Path(self.outdir) / "pipeline_info"
        info.mkdir(parents=True, exist_ok=True)
        needed = {t.name for t in plan.needed}
        for task in plan.tasks:
            if task.name not in needed and task.name in plan.cached:
                self.trace.append(TraceRow.cached(task))
        write_trace(self.trace, info / "execution_trace.tsv")
        versions = "".join(f"{tool}: {version}\n" for tool, version in sorted(plan.versions.items()))
        (info / "software_versions.yml").write_text(versions)
        params = self._params(plan)
        (info / "params.json").write_text(json.dumps(params, indent=2) + "\n")
        colours = {s.name: s.colour for s in plan.steps}
        report = info / "execution_report.html"
        write_report(report, self.trace, plan.versions, params, started, time.time(), self.errors, colours)
        if remote:
            storage.upload_dir(storage.client(self.o.endpoint_url), info, f"{self.outdir}/pipeline_info")
        rates, _ = estimate.load_rates(self.work / "rates.json", {})
        learnt = estimate.learn(self.trace, plan.tasks, plan.sample_mb)
        estimate.save_rates(self.work / "rates.json", {**rates, **learnt})
        index_path = self.work / "index.json"
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError):
            index = {}
        for task in plan.tasks:
            if task.name not in self.errors and task.name in plan.material:
                index[task.name] = plan.material[task.name]
        index_path.write_text(json.dumps(index))

    def _params(self, plan: Plan) -> dict[str, Any]:
        return {
            "input": str(self.o.input),
            "fasta": str(self.o.fasta),
            "outdir": str(self.o.outdir),
            "work_dir": str(self.work),
            "max_cpus": self.o.max_cpus,
            "max_memory_mib": self.o.max_memory_mib,
            "runtime": self.runtime.describe() if self.runtime else "",
            "executor": self.o.executor,
            "executor_settings": dataclasses.asdict(self.o.executor_settings) if self.o.executor_settings else {},
            "steps": [s.name for s in plan.steps],
            "user_steps": [str(p) for p in self.o.steps],
            "settings": str(self.o.settings or ""),
            "recovered_by_backend": self.recoveries.as_dict(),
            **self.o.params.__dict__,
        }

    def _summarise(self, failed_samples: set[str | None]) -> int:
        ran = sum(1 for row in self.trace if row.status != "CACHED")
        cached = sum(1 for row in self.trace if row.status == "CACHED")
        print(f"{ran} task(s) ran, {cached} cached; results in {self.o.outdir}")
        if not self.errors:
            return 0
        roots = {name: why for name, why in self.errors.items() if not why.startswith("Dependent job")}
        samples = sorted(s for s in failed_samples if s is not None)
        print(f"FAILED: {len(samples)} sample(s): {', '.join(samples)}", file=sys.stderr)
        for name, why in (roots or self.errors).items():
            print(f"--- {name}: {why}", file=sys.stderr)
        return 1

    # --- where tasks run ----------------------------------------------------------------------------------
    @property
    def executor(self) -> Executor:
        assert self._executor is not None, "plan() opens the executor"
        return self._executor

    def _open_executor(self, runtime: RunRuntime) -> Executor:
        """The executor the run asked for, imported only now (boto3 only for AWS Batch)."""
        assert self.library is not None
        module = registry.load(self.o.executor)
        images = [spec.name for spec in self.library.images]
        context = RunContext(
            self.work, runtime, self.facts.sha256, images, self.o.max_cpus, self.o.max_memory_mib, self.o.endpoint_url
        )
        executor: Executor = module.open_executor(context, self.o.executor_settings or module.Settings())
        return executor
