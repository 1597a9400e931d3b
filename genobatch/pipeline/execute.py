"""``genobatch run``: check the inputs, plan the tasks, run what is not cached on the engine, publish.

The work directory (``--work-dir``, default ``./work``) holds everything that is not a result:
``cache/`` (task outputs by content key), ``engine/`` (the batch engine's state and job logs),
``tasks/`` (the task files jobs run), ``inputs.json`` (remembered input checks) and ``index.json``
(what each task's key was made of in the last run, for ``--explain``).

What runs is decided by the step declarations (``library``), planned by ``planner``, sequenced by
``workflow`` and run by ``driver``; this module wires them to the run's inputs, cache and outdir.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import gc
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genobatch import __version__
from genobatch.batch.model import JobStatus
from genobatch.executors import chunks, registry, runtimes
from genobatch.executors.base import Executor, RunContext
from genobatch.executors.contract import JobState, Recoveries
from genobatch.executors.runtimes import RunRuntime
from genobatch.executors.task import Task
from genobatch.problems import InputError, Problem
from genobatch.report.html import RunSummary, write_report
from genobatch.report.trace import RAN, TraceFile, TraceRow, root_failures
from genobatch.storage import s3 as storage

from . import estimate, preflight
from .declarations import Step
from .describe import describe_plan, explain
from .driver import Driver
from .inputs import FastaFacts, FileFacts, Sample, check_fasta, check_inputs, parse_sample_sheet
from .library import Library, needs
from .planner import Graph, Limits, Params, Planner, RunInputs
from .progress import Progress
from .remote_inputs import Localiser
from .runinfo import RunRecord, new_run_id, software_versions, write_if_changed
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
    verbose: bool = False  # --dry-run lists every job, not one per step
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
    command: str = ""  # the command line, for the report and `genobatch runs`
    on_start: Callable[[str], None] | None = None  # told the run's name once its inputs held, before any job


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """Python's cycle collector paused: planning makes millions of objects and keeps them (10,000 samples: 80,000
    tasks), so each of its passes over them frees nothing: they took over a quarter of the planning time. Then
    they are frozen (``gc.freeze``): they live as long as the run, and the collector, back on, does not go
    over them again (its first passes would, for about a second). Reference counting still frees what is
    dropped; only cycles among them would wait for the end of the process (a dropped plan leaves a few hundred
    objects in cycles). A plan that fails (bad input) is not frozen: it is dropped, and its cycles with it."""
    enabled = gc.isenabled()
    gc.disable()
    made = False
    try:
        yield
        made = True
    finally:
        if enabled:
            if made:
                gc.freeze()
            gc.enable()


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
        self.run_id = new_run_id(self.work, time.time())  # names its pipeline_info files, tags its jobs
        self.recoveries = Recoveries()  # what the backend did on its own: reclaims, more memory...
        outdir = str(options.outdir)
        self.outdir = outdir if storage.is_s3(outdir) else str(Path(outdir).resolve())

    # --- planning -----------------------------------------------------------------------------------------
    def plan(self) -> Plan:
        """Check all inputs (raises InputError) and work out what must run."""
        with no_collection(), self.facts.unchanging():
            return self._plan()

    def _plan(self) -> Plan:
        self._check_extras()
        self.library = library = self.library or Library.load(self.o.steps)
        steps = library.select(self.o.tools, self.o.skip_tools)
        settings = load_settings(self.o.settings, library.steps) if self.o.settings else {}
        localiser = Localiser(self.work, self.o.endpoint_url)  # s3:// inputs: local copies, fetched once
        sheet, reference = localiser.sheet(self.o.input), localiser.fasta(self.o.fasta)
        problems = preflight.check_places(str(self.o.outdir), self.work)
        problems += preflight.check_resources(steps, self.o.max_memory_mib, settings)
        samples, sheet_problems = parse_sample_sheet(sheet)
        fasta = self._reference(reference, problems)
        batch_bases = [step.batch_bases for step in steps if step.scatter == "chunk"]
        with concurrent.futures.ThreadPoolExecutor(1) as probing:  # see _checked_inputs
            runtime = probing.submit(runtimes.choose, self.o.runtime, needs(steps, library.image_names))
            counts = self._checked_inputs(sheet, samples, problems + sheet_problems, batch_bases, runtime)
            self.runtime = runtime.result()
        self._executor = self._open_executor(self.runtime)
        refused = [(step, self.executor.refuse_image(step.image)) for step in steps]
        if any(why for _, why in refused):
            raise InputError([step.problem("image", f"step {step.name}: {why}") for step, why in refused if why])
        reads = {lane.fastq_1: counts[lane.fastq_1] for sample in samples for lane in sample.lanes}
        run = RunInputs(samples, reference, fasta.contigs, reads, self._chunks, self._provenance(steps))
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

    def _checked_inputs(
        self,
        sheet: Path,
        samples: list[Sample],
        problems: list[Problem],
        batch_bases: list[int],
        runtime: concurrent.futures.Future[RunRuntime],
    ) -> dict[Path, int]:
        """``check_inputs`` while ``runtime`` is chosen beside it: the tools' version probes (MultiQC's
        ``--version`` alone takes 0.7 s) run while the FASTQs are read. A bad input and a missing tool (or image)
        are reported together."""
        try:
            return check_inputs(sheet, samples, self.facts, problems, batch_bases)
        except InputError as exc:
            chosen = runtime.exception()  # once it is chosen
            more = chosen.problems if isinstance(chosen, InputError) else []
            raise InputError([*exc.problems, *more]) from None

    def _reference(self, reference: Path, problems: list[Problem]) -> FastaFacts:
        """The reference's contigs (remembered per file); its problems join ``problems``."""
        try:
            fasta = check_fasta(reference, self.facts)
        except InputError as exc:
            problems.extend(exc.problems)
            return FastaFacts([])
        problems.extend(preflight.check_regions(self.o.params.regions, fasta.contigs, reference))
        return fasta

    def _check_extras(self) -> None:
        """s3:// paths need boto3, an optional extra: say so before anything is read."""
        problems = []
        for flag, value in {"--input": self.o.input, "--fasta": self.o.fasta, "--outdir": self.o.outdir}.items():
            try:
                if storage.is_s3(str(value)):
                    registry.import_extra("aws", "boto3", f"{flag} {value}")
            except registry.MissingExtra as exc:
                problems.append(Problem(Path(flag), None, str(exc)))
        if problems:
            raise InputError(problems)

    def _decide(self, graph: Graph, keys: dict[str, str], samples: set[str]) -> tuple[list[Task], set[str]]:
        """What of the samples' tasks must run, with the tasks over all of them in view."""
        assert self.planner is not None
        summary = self.planner.summary(samples)
        self.keys(summary.tasks, dict(keys))
        return decide_samples(graph, summary, self.executor.is_cached)

    def _provenance(self, steps: list[Step]) -> dict[str, str]:
        """For results' headers: the reference as the user gave it, genobatch's version, and the pipeline as a
        command (what shapes results only: not paths or resources, which would rerun work for nothing)."""
        fasta = str(self.o.fasta)
        reference = fasta if storage.is_s3(fasta) else f"file://{Path(fasta).resolve()}"
        p = self.o.params
        flags = [f"--ploidy {p.ploidy}"] + ([f"--max-depth {p.max_depth}"] if p.max_depth else [])
        optional = [s.name for s in steps if s.optional]
        flags += [f"--tools {','.join(optional)}"] if optional else []
        return {"reference": reference, "version": __version__, "command": " ".join(["genobatch run", *flags])}

    def _limits(self) -> Limits:
        return Limits(self.o.max_cpus or len(os.sched_getaffinity(0)), self.o.max_memory_mib)

    def _chunks(self, first: Path, second: Path | None, reads: int, batch_bases: int) -> list[int]:
        """Reads per chunk of a lane, cut at the aligner's batch boundaries (remembered per file)."""
        kind = self.facts.batches_kind(batch_bases, second)
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
            material[task.name] = task.keyed(ups, hashes, versions)
            keys[task.name] = task.key
        return material

    def workflow(self, plan: Plan) -> Workflow:
        assert self.planner is not None
        return Workflow(self.planner, plan, self.keys, self.executor.is_cached, self.o.keep_intermediates)

    # --- the run ---------------------------------------------------------------------------------------------
    def execute(self) -> int:
        """Returns the exit code: 0 when every sample succeeded, 1 otherwise, 130 when interrupted. Bad input
        raises InputError."""
        try:
            return self._execute()
        finally:
            gc.unfreeze()  # the plan frozen by no_collection is the collector's again (long-lived callers: tests)

    def _execute(self) -> int:
        started = time.time()
        with no_collection():
            plan = self.plan()
            self.last_plan = plan
            preview = plan.copy()  # with the tasks over all samples, as if every sample succeeds
            self.workflow(preview).add_summary({s for t in plan.tasks if (s := t.sample) is not None})
        self._tell_damaged(preview.tasks)
        assert self.runtime is not None
        print(f"Runtime: {self.runtime.describe()}")
        if self.o.explain:
            print("\n".join(explain(preview, self.work / "index.json")) or "Nothing to run: every task is cached.")
        if self.o.dry_run:
            with no_collection():
                described = describe_plan(preview, self.executor.capabilities.max_array_size, self.o.verbose)
            print("\n".join(described))
            rates, source = estimate.load_rates(self.work / "rates.json", {s.name: s.rate for s in plan.steps})
            seconds = estimate.vcpu_seconds(preview.needed, preview.sample_mb, rates)
            print("\n".join(estimate.cost_lines(seconds, self.executor.prices(), source)))
            return 0
        if not preview.needed:
            print(f"Nothing to run: every output of the {len(preview.tasks)} tasks is cached or not needed.")
        live = self.o.live_progress if preview.needed else False  # no empty live table when all is cached
        if self.o.on_start is not None:
            self.o.on_start(self.run_id)
        return self._run(plan, started, live)

    def _tell_damaged(self, tasks: list[Task]) -> None:
        """Cached outputs found changed since their task wrote them (they run again): say which and why."""
        names = {t.key: t.name for t in tasks}
        for key, why in self.executor.damaged.items():
            print(f"Cache: {names.get(key, key)} runs again: {why}", file=sys.stderr)
        self.executor.damaged.clear()

    def _run(self, plan: Plan, started: float, live: bool | None) -> int:
        """Run the plan's waves; the trace grows as attempts end, and the report and the run's record are
        written however the run ends (finished, failed, interrupted)."""
        info = self.work / "pipeline_info" if storage.is_s3(self.outdir) else Path(self.outdir) / "pipeline_info"
        record = RunRecord(
            self.run_id, self.o.command, str(self.work), str(self.outdir), str(info), started, os.getpid()
        )
        record.save(self.work)
        self.trace_file = TraceFile(record.trace, workdir=self.executor.workdir)
        for task in plan.tasks:
            if task.name in plan.cached:
                self._row(TraceRow.cached(task))
        workflow = self.workflow(plan)
        status = "failed"
        try:
            self._drive(workflow, live)
            self.errors = workflow.errors
            self._publish(workflow.plan, workflow.failed_samples)
            status = "failed" if self.errors else "succeeded"
        except KeyboardInterrupt:
            status = "interrupted"
        except BaseException:  # e.g. a full disk: report what can be, then let the caller say why it stopped
            self.errors = workflow.errors
            try:
                self._write_info(workflow.plan, record, "failed")
            except OSError as exc:
                where = f": {exc.filename}" if exc.filename else ""
                print(f"genobatch: could not write the report: {exc.strerror or exc}{where}", file=sys.stderr)
            raise
        self.errors = workflow.errors
        self._write_info(workflow.plan, record, status)
        if status == "interrupted":
            kept = sum(1 for row in self.trace if row.status == "COMPLETED")
            print(
                f"Interrupted: {kept} task(s) finished and are kept in {self.work}; the report is {record.report}. "
                "Run the same command again to resume.",
                file=sys.stderr,
            )
            return 130
        return self._summarise(workflow.failed_samples)

    def _drive(self, workflow: Workflow, live: bool | None) -> None:
        backend = self.executor.backend()
        ended: set[str] = set()
        steps = [s.name for s in workflow.plan.steps]
        try:
            with Progress(steps, live=live, eta=lambda: self._eta(workflow, ended)) as progress:
                driver = Driver(self.executor, backend, progress, self.run_id, on_row=self._row)

                def on_end(task: Task, state: JobState) -> None:
                    ended.add(task.name)
                    ok = state.status is JobStatus.SUCCEEDED
                    for key in workflow.finished(task, ok, "" if ok else driver.why_failed(state)):
                        self.executor.remove(key)

                while (todo := workflow.next_tasks()) is not None:  # the samples' wave, then the summary's
                    self._tell_damaged(workflow.plan.tasks)
                    driver.run(todo, workflow.plan.tasks, workflow.plan.cached, on_end)
        finally:
            self.recoveries = backend.recoveries()
            backend.close()
        if self.recoveries.describe():
            print(f"Recovered by the backend: {self.recoveries.describe()}")

    def _eta(self, workflow: Workflow, ended: set[str]) -> float | None:
        """Seconds the tasks still to end should take on the run's vCPUs, from the learnt (or declared) rates."""
        plan = workflow.plan
        remaining = [t for t in plan.needed if t.name not in ended]
        rates, _ = estimate.load_rates(self.work / "rates.json", {s.name: s.rate for s in plan.steps})
        return estimate.vcpu_seconds(remaining, plan.sample_mb, rates) / self._limits().vcpus

    def _row(self, row: TraceRow) -> None:
        self.trace.append(row)
        self.trace_file.add(row)

    def _publish(self, plan: Plan, failed_samples: set[str | None]) -> None:
        by_name = {t.name: t for t in plan.tasks}
        for item in plan.published:
            task = by_name[item.task]
            if task.sample in failed_samples or task.name in self.errors or not self.executor.is_cached(task.key):
                continue
            self.executor.publish(task.key, item.files, self.outdir)
        self.executor.published.save()

    def _write_info(self, plan: Plan, record: RunRecord, status: str) -> None:
        written = {row.name for row in self.trace}
        for task in plan.tasks:  # the tasks over all samples that were cached
            if task.name in plan.cached and task.name not in written:
                self._row(TraceRow.cached(task))
        self.trace_file.close()
        info = Path(record.info)
        params = info / f"params_{self.run_id}.json"
        params.write_text(json.dumps(self._params(), indent=2) + "\n")
        write_if_changed(
            info / "software_versions.yml", software_versions(self._versions(plan), self._workflow_facts())
        )
        write_report(record.report, self.trace, self._summary(plan, record, status))
        record.status, record.finished = status, time.time()
        record.ran = sum(1 for row in self.trace if row.status in RAN)
        record.cached = sum(1 for row in self.trace if row.status == "CACHED")
        record.failed = len(root_failures(self.trace, self.errors))
        record.save(self.work)
        if storage.is_s3(self.outdir):
            s3 = storage.client(self.o.endpoint_url)
            for path in (record.trace, record.report, params, info / "software_versions.yml"):
                storage.upload(s3, path, f"{self.outdir}/pipeline_info/{path.name}")
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

    def _versions(self, plan: Plan) -> dict[str, dict[str, str]]:
        """Each step's tools and their versions, as they key the cache."""
        return {s.name: {t: plan.versions.get(t, "?") for t in s.tools} for s in plan.steps if s.tools}

    def _workflow_facts(self) -> dict[str, Any]:
        assert self.runtime is not None
        return {"genobatch": __version__, "executor": self.o.executor, "runtime": self.runtime.name,
                "images": dict(self.runtime.images)}  # fmt: skip

    def _summary(self, plan: Plan, record: RunRecord, status: str) -> RunSummary:
        assert self.runtime is not None
        by_name = {t.name: t for t in plan.tasks}
        commands = {
            name: "\n".join(" | ".join(shlex.join(argv) for argv in pipe.argv) for pipe in by_name[name].pipes)
            for name in self.errors
            if name in by_name
        }
        return RunSummary(
            record.run_id, status, record.started, time.time(), self.o.command or "genobatch run", str(self.work),
            str(self.o.outdir), __version__, self.o.executor, self.runtime.describe(), [s.name for s in plan.steps],
            {s.name: s.colour for s in plan.steps}, self._versions(plan), self._params(), dict(self.errors), commands,
        )  # fmt: skip

    def _params(self) -> dict[str, Any]:
        """The options the user gave (nothing of genobatch's own making)."""
        settings = self.o.executor_settings
        return {
            "input": str(self.o.input),
            "fasta": str(self.o.fasta),
            "outdir": str(self.o.outdir),
            "work_dir": str(self.work),
            "tools": self.o.tools,
            "skip_tools": self.o.skip_tools,
            "steps": [str(p) for p in self.o.steps],
            "config": str(self.o.settings or ""),
            **dataclasses.asdict(self.o.params),
            "max_cpus": self.o.max_cpus,
            "max_memory_mib": self.o.max_memory_mib,
            "runtime": self.o.runtime,
            "executor": self.o.executor,
            **(dataclasses.asdict(settings) if settings else {}),
            "keep_intermediates": self.o.keep_intermediates,
        }

    def _summarise(self, failed_samples: set[str | None]) -> int:
        ran = sum(1 for row in self.trace if row.status in RAN)
        cached = sum(1 for row in self.trace if row.status == "CACHED")
        print(f"{ran} task(s) ran, {cached} cached; results in {self.o.outdir}")
        if not self.errors:
            return 0
        roots = root_failures(self.trace, self.errors)
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
            self.work,
            runtime,
            self.facts.sha256,
            images,
            self.o.max_cpus,
            self.o.max_memory_mib,
            self.o.endpoint_url,
            self.o.dry_run,
        )
        try:
            executor: Executor = module.open_executor(context, self.o.executor_settings or module.Settings())
        except registry.MissingExtra as exc:
            raise InputError([Problem(Path("--executor"), None, str(exc))]) from exc
        return executor
