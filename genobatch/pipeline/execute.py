"""``genobatch run``: check the inputs, plan the tasks, run what is not cached on the engine, publish.

The work directory (``--work-dir``, default ``./work``) holds everything that is not a result:
``cache/`` (task outputs by content key), ``engine/`` (the batch engine's state and job logs),
``tasks/`` (the task files jobs run), ``inputs.json`` (remembered input checks) and ``index.json``
(what each task's key was made of in the last run, for ``--explain``).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genobatch.aws.pricing import INSTANCE_FAMILIES
from genobatch.batch.backend import Backend, JobState
from genobatch.report.html import write_report
from genobatch.report.trace import TraceRow, write_trace
from genobatch.storage import s3 as storage

from . import estimate, germline, runtimes
from .germline import Params, Published
from .grouping import Job, jobs_for
from .inputs import (
    FastaFacts,
    FileFacts,
    InputError,
    Problem,
    bwa_batches,
    check_fasta,
    check_inputs,
    chunk_sizes,
    parse_sample_sheet,
)
from .progress import Progress
from .remote_inputs import Localiser
from .runtimes import RunRuntime
from .sites import LocalSite, Site
from .tasks import Task

STUCK_SECONDS = 600  # a job RUNNABLE this long is reported, with the batch system's reason
STEPS = ["reference", "fastqc", "split", "align", "merge", "bamstats", "call", "concat", "vcfstats", "multiqc", "joint"]


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
    backend: str = "local"  # or "awsbatch" (needs aws_stack)
    aws_stack: str | None = None
    endpoint_url: str | None = None


@dataclass
class Plan:
    tasks: list[Task]
    published: list[Published]
    needed: list[Task]  # in dependency order, one task per key
    cached: set[str]  # task names whose outputs are in the cache
    material: dict[str, dict[str, Any]]
    versions: dict[str, str]
    sample_mb: dict[str, float] = field(default_factory=dict)  # each sample's FASTQ input, for estimates


class Run:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.work = options.work_dir.resolve()
        self.cache = self.work / "cache"
        self.facts = FileFacts(self.work / "inputs.json")
        self.trace: list[TraceRow] = []
        self.errors: dict[str, str] = {}  # task name -> why it failed
        self.last_plan: Plan | None = None
        self.runtime: RunRuntime | None = None
        self._site: Site | None = None
        self.run_id = time.strftime("%Y%m%dT%H%M%S")  # tags every job of this run (AWS Batch, cost reports)
        self.warned: set[str] = set()  # jobs already reported as stuck in RUNNABLE
        self.recoveries: dict[str, int] = {}  # spot reclaims, moves to on-demand, OOM resubmissions
        outdir = str(options.outdir)
        self.outdir = outdir if storage.is_s3(outdir) else str(Path(outdir).resolve())

    # --- planning -----------------------------------------------------------------------------------------
    def plan(self) -> Plan:
        """Check all inputs (raises InputError) and work out what must run."""
        p = self.o.params
        if p.ploidy not in (1, 2):
            raise InputError(
                [
                    Problem(
                        Path("--ploidy"),
                        None,
                        f"ploidy {p.ploidy} is not supported",
                        "bcftools call -m handles ploidy 1 (haploid) or 2 (diploid)",
                    )
                ]
            )
        localiser = Localiser(self.work, self.o.endpoint_url)  # s3:// inputs: local copies, fetched once
        sheet, reference = localiser.sheet(self.o.input), localiser.fasta(self.o.fasta)
        samples, problems = parse_sample_sheet(sheet)
        known = self.facts.get(reference, "fasta") if reference.is_file() else None
        fasta = FastaFacts([tuple(c) for c in known]) if known else check_fasta(reference)
        self.facts.put(reference, "fasta", fasta.contigs)
        counts = check_inputs(sheet, samples, self.facts, problems)
        self.runtime = runtimes.choose(self.o.runtime)
        self._site = self._make_site(self.runtime)
        versions = self.runtime.versions
        chunks = {
            lane.fastq_1: self._chunks(lane.fastq_1, lane.fastq_2, counts[lane.fastq_1])
            for sample in samples
            for lane in sample.lanes
        }
        tasks, published = germline.build(samples, reference, fasta.contigs, chunks, p)
        material = self._keys(tasks, versions, {})
        self.facts.save()
        plan = self._decide(tasks, published, material, versions)
        for sample in samples:
            files = [f for lane in sample.lanes for f in (lane.fastq_1, lane.fastq_2) if f is not None]
            plan.sample_mb[sample.name] = sum(f.stat().st_size for f in files) / 1e6
        return plan

    def _chunks(self, first: Path, second: Path | None, reads: int) -> list[int]:
        """Reads per alignment chunk for a lane: one chunk unless it is larger than --chunk-reads."""
        if reads <= self.o.params.chunk_reads:
            return [reads]
        kind = f"bwa_batches:{germline.BWA_BATCH_BASES}:{second.resolve() if second else ''}"
        batches = self.facts.get(first, kind)
        if batches is None:
            batches = bwa_batches(first, second, germline.BWA_BATCH_BASES)
            self.facts.put(first, kind, batches)
        return chunk_sizes(batches, self.o.params.chunk_reads)

    def _keys(self, tasks: list[Task], versions: dict[str, str], keys: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Give each task its key (``keys`` holds those of tasks keyed earlier); returns what each is made of."""
        material = {}
        for task in tasks:  # tasks come in dependency order
            hashes = [self.facts.sha256(path) for path in task.files]
            ups = {name: keys[name] for name in task.upstream}
            keys[task.name] = task.compute_key(ups, hashes, versions)
            material[task.name] = task.explain_material(ups, hashes, versions)
        return material

    def _decide(
        self,
        tasks: list[Task],
        published: list[Published],
        material: dict[str, dict[str, Any]],
        versions: dict[str, str],
    ) -> Plan:
        """A task runs if its output is not cached and it is published or something that runs needs it."""
        by_name = {t.name: t for t in tasks}
        dependents: dict[str, list[str]] = defaultdict(list)
        for task in tasks:
            for up in task.upstream:
                dependents[up].append(task.name)
        cached = {t.name for t in tasks if self.site.is_cached(t.key)}
        wanted = {p.task for p in published}
        needed: set[str] = set()
        for task in reversed(tasks):
            if task.name not in cached and (task.name in wanted or any(d in needed for d in dependents[task.name])):
                needed.add(task.name)
        seen_keys: set[str] = set()
        ordered = []
        for task in tasks:
            if task.name in needed and task.key not in seen_keys:  # same work under two names runs once
                seen_keys.add(task.key)
                ordered.append(task)
        return Plan(list(by_name.values()), published, ordered, cached, material, versions)

    def explain(self, plan: Plan) -> list[str]:
        """Why each task that will run cannot use the cache."""
        try:
            previous = json.loads((self.work / "index.json").read_text())
        except (OSError, ValueError):
            previous = {}
        lines = []
        for task in plan.needed:
            old = previous.get(task.name)
            if old is None:
                reason = "new: never ran in this work directory"
            else:
                changed = [
                    k
                    for k in sorted(set(old) | set(plan.material[task.name]))
                    if old.get(k) != plan.material[task.name].get(k)
                ]
                reason = ("changed: " + ", ".join(changed)) if changed else "same inputs, but the cached output is gone"
            lines.append(f"{task.name}: {reason}")
        return lines

    def describe_plan(self, plan: Plan) -> list[str]:
        per_step: dict[str, Counter[str]] = defaultdict(Counter)
        needed = {t.name for t in plan.needed}
        for task in plan.tasks:
            kind = "run" if task.name in needed else "cached" if task.name in plan.cached else "not needed"
            per_step[task.step][kind] += 1
        lines = [f"{'step':<10} {'tasks':>6} {'run':>5} {'cached':>7}  vCPU  memory"]
        for step in STEPS:
            if step in per_step:
                example = next(t for t in plan.tasks if t.step == step)
                c = per_step[step]
                lines.append(
                    f"{step:<10} {sum(c.values()):>6} {c['run']:>5} {c['cached']:>7}  "
                    f"{example.vcpus:>4}  {example.memory_mib:>5} MiB"
                )
        for job in jobs_for(plan.needed):
            first = job.tasks[0]
            size = f" (array of {len(job.tasks)})" if len(job.tasks) > 1 else ""
            command = " | ".join(" ".join(a) for a in first.pipes[0].argv) if first.pipes else first.builtin
            lines.append(f"  job {job.name}{size}: {first.vcpus} vCPU, {first.memory_mib} MiB: {command}")
        return lines

    # --- the run ---------------------------------------------------------------------------------------------
    def execute(self) -> int:
        """Returns the exit code: 0 when every sample succeeded, 1 otherwise. Bad input raises InputError."""
        started = time.time()
        plan = self.plan()
        self.last_plan = plan
        preview = self._with_summary(plan, plan.tasks)  # with the report tasks, as if every sample succeeds
        assert self.runtime is not None
        print(f"Runtime: {self.runtime.describe()}")
        if self.o.explain:
            print("\n".join(self.explain(preview)) or "Nothing to run: every task is cached.")
        if self.o.dry_run:
            print("\n".join(self.describe_plan(preview)))
            rates, source = estimate.load_rates(self.work / "rates.json")
            seconds = estimate.vcpu_seconds(preview.needed, preview.sample_mb, rates)
            families = list(INSTANCE_FAMILIES) if self.o.backend == "awsbatch" else []
            print("\n".join(estimate.cost_lines(seconds, families, source)))
            return 0
        if not preview.needed:
            print(f"Nothing to run: every output of the {len(preview.tasks)} tasks is cached or not needed.")
        by_name = {t.name: t for t in plan.tasks}
        remaining: Counter[str] = Counter()  # intermediate key -> tasks still to read it
        for task in plan.needed:
            for up in task.upstream:
                if by_name[up].intermediate:
                    remaining[by_name[up].key] += 1

        def on_done(task: Task, state: JobState) -> None:
            if state.status.value != "SUCCEEDED" or self.o.keep_intermediates:
                return
            for up in task.upstream:
                key = by_name[up].key
                if by_name[up].intermediate:
                    remaining[key] -= 1
                    if remaining[key] == 0:
                        self.site.remove(key)

        backend = self.site.backend()
        try:
            with Progress(STEPS, live=self.o.live_progress) as progress:
                if plan.needed:
                    self._run_jobs(backend, plan, plan.needed, progress, on_done)
                failed_samples = {by_name[name].sample for name in self.errors if name in by_name}
                before = len(plan.needed)
                plan = self._with_summary(plan, [t for t in plan.tasks if t.sample not in failed_samples])
                todo = plan.needed[before:]
                if todo:
                    self._run_jobs(backend, plan, todo, progress, on_done)
        finally:
            self.recoveries = backend.retries()
            backend.close()
        if any(self.recoveries.values()):
            print(
                "Recovered by the backend: "
                + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.recoveries.items())
            )
        self._publish(plan, failed_samples)
        self._write_info(plan, started)
        return self._summarise(plan, failed_samples)

    def _with_summary(self, plan: Plan, sample_tasks: list[Task]) -> Plan:
        """The plan plus the report tasks (MultiQC, joint VCF) over ``sample_tasks``' samples."""
        summary, published = germline.build_summary(sample_tasks, self.o.params)
        material = {**plan.material, **self._keys(summary, plan.versions, {t.name: t.key for t in plan.tasks})}
        todo = [t for t in summary if not self.site.is_cached(t.key)]
        return Plan(
            plan.tasks + summary,
            plan.published + published,
            plan.needed + todo,
            plan.cached | {t.name for t in summary if t not in todo},
            material,
            plan.versions,
            plan.sample_mb,
        )

    def _publish(self, plan: Plan, failed_samples: set[str | None]) -> None:
        by_name = {t.name: t for t in plan.tasks}
        for item in plan.published:
            task = by_name[item.task]
            if task.sample in failed_samples or task.name in self.errors or not self.site.is_cached(task.key):
                continue
            self.site.publish(task.key, item.files, self.outdir)

    def _write_info(self, plan: Plan, started: float) -> None:
        remote = storage.is_s3(self.outdir)
        info = self.work / "pipeline_info" if remote else Path(self.outdir) / "pipeline_info"
        info.mkdir(parents=True, exist_ok=True)
        needed = {t.name for t in plan.needed}
        for task in plan.tasks:
            if task.name not in needed and task.name in plan.cached:
                self.trace.append(TraceRow.cached(task, *self._fit(task)))
        write_trace(self.trace, info / "execution_trace.tsv")
        versions = "".join(f"{tool}: {version}\n" for tool, version in sorted(plan.versions.items()))
        (info / "software_versions.yml").write_text(versions)
        params = {
            "input": str(self.o.input),
            "fasta": str(self.o.fasta),
            "outdir": str(self.o.outdir),
            "work_dir": str(self.work),
            "max_cpus": self.o.max_cpus,
            "max_memory_mib": self.o.max_memory_mib,
            "runtime": self.runtime.describe() if self.runtime else "",
            "backend": self.o.backend + (f" (stack {self.o.aws_stack})" if self.o.aws_stack else ""),
            "recovered_by_backend": self.recoveries,
            **self.o.params.__dict__,
        }
        (info / "params.json").write_text(json.dumps(params, indent=2) + "\n")
        write_report(
            info / "execution_report.html", self.trace, plan.versions, params, started, time.time(), self.errors
        )
        if remote:
            storage.upload_dir(storage.client(self.o.endpoint_url), info, f"{self.outdir}/pipeline_info")
        rates, _ = estimate.load_rates(self.work / "rates.json")
        estimate.save_rates(
            self.work / "rates.json", {**rates, **estimate.learn(self.trace, plan.tasks, plan.sample_mb)}
        )
        index_path = self.work / "index.json"
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError):
            index = {}
        for task in plan.tasks:
            if task.name not in self.errors and task.name in plan.material:
                index[task.name] = plan.material[task.name]
        index_path.write_text(json.dumps(index))

    def _summarise(self, plan: Plan, failed_samples: set[str | None]) -> int:
        ran = sum(1 for row in self.trace if row.status != "CACHED")
        cached = sum(1 for row in self.trace if row.status == "CACHED")
        print(f"{ran} task(s) ran, {cached} cached; results in {self.o.outdir}")
        if not self.errors:
            return 0
        roots = {name: why for name, why in self.errors.items() if not why.startswith("Dependent job")}
        print(
            f"FAILED: {len(failed_samples)} sample(s): {', '.join(sorted(str(s) for s in failed_samples))}",
            file=sys.stderr,
        )
        for name, why in (roots or self.errors).items():
            print(f"--- {name}: {why}", file=sys.stderr)
        return 1

    # --- running ------------------------------------------------------------------------------------------
    @property
    def site(self) -> Site:
        assert self._site is not None, "plan() chooses the site"
        return self._site

    def _make_site(self, runtime: RunRuntime) -> Site:
        if self.o.backend == "local":
            return LocalSite(self.work, runtime, self.o.max_cpus, self.o.max_memory_mib)
        from .aws_site import AwsSite  # boto3 and the AWS modules only when asked for

        return AwsSite(self.work, runtime, self.o.aws_stack or "", self.o.endpoint_url, self.facts.sha256)

    def _fit(self, task: Task) -> tuple[float, int]:
        """A task's request, lowered to the run's caps (a 2-vCPU aligner on a 1-vCPU run uses 1)."""
        vcpus = min(task.vcpus, self.o.max_cpus) if self.o.max_cpus else task.vcpus
        memory = min(task.memory_mib, self.o.max_memory_mib) if self.o.max_memory_mib else task.memory_mib
        return vcpus, memory

    def _submit(self, backend: Backend, jobs: list[Job], job_of_key: dict[str, Job], by_name: dict[str, Task]) -> None:
        keys = {t.name: t.key for t in by_name.values()}
        for job in jobs:
            depends = {
                job_of_key[by_name[up].key].job_id
                for t in job.tasks
                for up in t.upstream
                if by_name[up].key in job_of_key and job_of_key[by_name[up].key] is not job
            }
            vcpus, memory = self._fit(job.tasks[0])
            spec = self.site.job_spec(
                job.name,
                job.tasks,
                keys,
                vcpus=vcpus,
                memory_mib=memory,
                depends_on=sorted(depends),
                array_size=len(job.tasks) if len(job.tasks) > 1 else None,
                tags={"run": self.run_id, "step": job.tasks[0].step, "sample": job.tasks[0].sample or ""},
            )
            job.job_id = backend.submit(spec)

    def _run_jobs(self, backend: Backend, plan: Plan, tasks: list[Task], progress: Progress, on_done: Any) -> None:
        """Submit ``tasks`` as jobs and follow them until all have ended."""
        by_name = {t.name: t for t in plan.tasks}
        cached = Counter(by_name[name].step for name in plan.cached)
        jobs = jobs_for(tasks)
        job_of_key = {t.key: job for job in jobs for t in job.tasks}
        self._submit(backend, jobs, job_of_key, by_name)
        children = {
            (job.job_id if len(job.tasks) == 1 else f"{job.job_id}:{i}"): (job, task)
            for job in jobs
            for i, task in enumerate(job.tasks)
        }
        finished: set[str] = set()
        while len(finished) < len(children):
            states = {s.job_id: s for s in backend.poll([c for c in children if c not in finished])}
            for child, state in states.items():
                job, task = children[child]
                if state.done:
                    finished.add(child)
                    self._record(state, job, task)
                    on_done(task, state)
            progress.update(self._counts(cached, children, states, finished))
            for warning in backend.stuck(STUCK_SECONDS):
                job_id = warning.split(" RUNNABLE")[0]
                if job_id not in self.warned:
                    self.warned.add(job_id)
                    print(f"genobatch: waiting: {warning}", file=sys.stderr)
            if len(finished) < len(children):
                time.sleep(0.2)

    def _record(self, state: JobState, job: Job, task: Task) -> None:
        vcpus, memory = self._fit(task)
        for attempt in state.attempts:
            self.trace.append(TraceRow.from_attempt(task, state, attempt, vcpus, memory))
        if not state.attempts:
            self.trace.append(TraceRow.not_run(task, state, vcpus, memory))
        if state.status.value == "FAILED":
            last = state.attempts[-1] if state.attempts else None
            tail = self.site.log_tail(last) if last is not None else ""
            why = (last.container_reason if last else None) or state.status_reason or "failed"
            self.errors[task.name] = why + (f"\n{tail}" if tail else "")

    def _counts(
        self,
        cached: Counter[str],
        children: dict[str, tuple[Job, Task]],
        states: dict[str, JobState],
        finished: set[str],
    ) -> dict[str, Counter[str]]:
        """Tasks per step and state, for the progress display (``cached``: cached tasks per step)."""
        counts: dict[str, Counter[str]] = {step: Counter({"cached": cached[step]}) for step in STEPS}
        for child, (_, task) in children.items():
            if child in finished:
                counts[task.step]["failed" if task.name in self.errors else "done"] += 1
            else:
                state = states.get(child)
                counts[task.step][
                    "running" if state and state.status.value in ("STARTING", "RUNNING") else "waiting"
                ] += 1
        return counts
