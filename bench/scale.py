"""Planning at scale: wall time, peak memory and output of ``genobatch run --dry-run`` at 100, 1,000 and 10,000
samples, and the longest command any job gets (issue 14's goals: under 10 s and 500 MB at 10,000 samples; no
command line that grows with the samples).

Not a test: it prints and saves JSON (``bench/results/scale.json``).

    python -m bench.scale [--samples 100,1000,10000] [--real 1000] [--runtime host] [--steps-samples 10000]

Each sample has its own tiny pair of gzip FASTQ files (10 read pairs of 50 bp): planning cost is per sample
and per task, not per base. Each count is planned twice in a fresh process: ``first`` (every FASTQ checked
and hashed) and ``again`` (the work directory remembers the checks, as a resumed run does). Peak memory is the
process's own maximum RSS (``wait4``).

``--real 1000`` also runs the germline pipeline end to end on 1,000 samples of real reads (the measles demo's two
read pairs, hard-linked under each sample's own folder, so that every file is checked as a copy would be), with
MultiQC over all of them, then again (everything cached). FastQC's cache key is made of its command, its
output names and its FASTQ's content: a file of the same name and content under another sample is the same
task, run once. Every other step's command names its sample (the read group), so each sample aligns and calls
its own. Peak memory there is genobatch's own process (polled ``VmHWM``); the tools' largest is ``wait4``'s.
``--steps-samples 10000`` runs a pipeline of trivial user steps end to end: 10 tasks per sample (100,000 at
10,000 samples), against the same commands through ``xargs -P 2`` (``bench/scale_steps.py``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import environment, save
from .scale_steps import run_steps

RESULTS = Path(__file__).parent / "results" / "scale.json"
DATA = Path(__file__).resolve().parent.parent / "data"
REFERENCE = DATA / "sarscov2" / "MN908947.3.fa"
MEASLES = DATA / "measles"
MEASLES_RUNS = ("SRR7517490", "SRR7517498")


def make_samples(folder: Path, count: int) -> Path:
    """``count`` samples with a tiny FASTQ pair each, and their sheet."""
    rng = random.Random(count)
    rows = ["sample,fastq_1,fastq_2"]
    for i in range(count):
        name = f"S{i:05d}"
        for mate in (1, 2):
            path = folder / f"{name}_R{mate}.fastq.gz"
            if not path.exists():
                reads = "".join(
                    f"@r{j}/{mate}\n{''.join(rng.choice('ACGT') for _ in range(50))}\n+\n{'I' * 50}\n"
                    for j in range(10)
                )
                path.write_bytes(gzip.compress(reads.encode(), 1))
        rows.append(f"{name},{name}_R1.fastq.gz,{name}_R2.fastq.gz")
    sheet = folder / f"samples_{count}.csv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def plan_once(sheet: Path, work: Path, outdir: Path) -> dict[str, Any]:
    """One ``--dry-run`` in its own process: wall seconds, peak RSS (MB), bytes printed."""
    argv = [sys.executable, "-m", "genobatch", "run", "--input", str(sheet), "--fasta", str(REFERENCE)]
    argv += ["--outdir", str(outdir), "--work-dir", str(work), "--runtime", "host", "--dry-run"]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(argv, stdout=output, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        printed = output.seek(0, os.SEEK_END)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode() if proc.stderr else ""
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "printed_bytes": printed}


def longest_command(count: int) -> dict[str, Any]:
    """The longest job command, resolved as the job runner gets it, for ``count`` samples (the planner alone)."""
    from genobatch.executors.task import runner_spec
    from tests.test_planner import plan, sample  # the planner on the built-in steps, no files read

    graph, summary = plan(tools=["joint"], samples=[sample(f"S{i:05d}") for i in range(count)], reads=10)
    tasks = graph.tasks + summary.tasks
    keys = {t.name: f"{i:032x}" for i, t in enumerate(tasks)}
    for task in tasks:
        task.key = keys[task.name]
    size, name = max(
        (sum(len(w) + 1 for p in runner_spec(t, Path("/w/cache"), keys)["pipes"] for a in p["argv"] for w in a), t.name)
        for t in tasks
    )
    return {"bytes": size, "task": name}


def make_real_samples(folder: Path, count: int) -> Path:
    """``count`` samples of the measles demo's reads, each in its own folder (hard links: no disk used)."""
    rows = ["sample,fastq_1,fastq_2"]
    for i in range(count):
        name, run = f"M{i:04d}", MEASLES_RUNS[i % len(MEASLES_RUNS)]
        (folder / "reads" / name).mkdir(parents=True, exist_ok=True)
        for mate in (1, 2):
            source = MEASLES / f"{run}_R{mate}.fastq.gz"
            target = folder / "reads" / name / source.name
            if not target.exists():
                try:
                    os.link(source, target)
                except OSError:  # another file system
                    shutil.copyfile(source, target)
        rows.append(f"{name},reads/{name}/{run}_R1.fastq.gz,reads/{name}/{run}_R2.fastq.gz")
    sheet = folder / f"measles_{count}.csv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def run_once(argv: list[str], log: Path) -> dict[str, Any]:
    """A real run in its own process: wall seconds, genobatch's own peak RSS (its ``VmHWM``, read each
    second), the largest peak RSS in its process tree (``wait4``: a tool's), and what it said it ran."""
    started = time.perf_counter()
    peak = [0]
    with open(log, "w") as output:
        proc = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
        done = threading.Event()

        def watch() -> None:
            status = Path(f"/proc/{proc.pid}/status")
            while not done.wait(1):
                try:
                    hwm = [
                        int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:")
                    ]
                    peak[0] = max([peak[0], *hwm])
                except (OSError, ValueError):
                    pass

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        watcher.join()
    wall = time.perf_counter() - started
    said = next((line for line in log.read_text().splitlines() if "task(s) ran" in line), "")
    return {"exit": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 1),
            "genobatch_peak_rss_mb": round(peak[0] / 1024, 1),
            "largest_process_peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "summary": said}  # fmt: skip


def real_run(folder: Path, count: int, runtime: str) -> dict[str, Any]:
    """The germline pipeline on ``count`` samples of real reads, end to end with MultiQC; then again."""
    sheet = make_real_samples(folder, count)
    argv = [sys.executable, "-m", "genobatch", "run", "--input", str(sheet), "--ploidy", "1"]
    argv += ["--fasta", str(MEASLES / "MH356245.1.reference.fasta"), "--outdir", str(folder / "results")]
    argv += ["--work-dir", str(folder / "work"), "--runtime", runtime]
    first = run_once(argv, folder / "first.log")
    print(json.dumps({"real_first": first}), flush=True)
    again = run_once(argv, folder / "again.log")
    report = folder / "results" / "multiqc" / "multiqc_report.html"
    samples_in_report = sum(1 for i in range(count) if f"M{i:04d}" in report.read_text()) if report.exists() else 0
    return {"samples": count, "runtime": runtime, "first": first, "again": again,
            "samples_in_multiqc_report": samples_in_report}  # fmt: skip


def _saved() -> dict[str, Any]:
    try:
        return dict(json.loads(RESULTS.read_text()))
    except (OSError, ValueError):
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", default="100,1000,10000", help="plans to time ('' for none)")
    parser.add_argument("--real", type=int, default=0, help="samples of a real run end to end (0: none)")
    parser.add_argument("--runtime", default="host", help="the real run's --runtime")
    parser.add_argument("--keep", type=Path, help="a folder to run in and keep (default: a temporary one)")
    parser.add_argument("--steps-samples", type=int, default=0, help="samples of the trivial-step run (0: none)")
    args = parser.parse_args()
    counts = [int(c) for c in args.samples.split(",") if c]
    measured: dict[str, Any] = {}
    env = environment()
    with tempfile.TemporaryDirectory(prefix="genobatch-scale-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if counts:
            measured["results"] = [plan_case(folder, count) for count in counts]
            measured["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        if args.real:
            measured["real_run"] = {**real_run(folder / "real", args.real, args.runtime),
                                    "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
        if args.steps_samples:
            steps = folder / "steps_run"
            steps.mkdir()
            sheet = make_samples(steps, args.steps_samples)
            measured["trivial_steps_run"] = {**run_steps(steps, sheet, REFERENCE, args.steps_samples),
                                             "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
            print(json.dumps(measured["trivial_steps_run"]), flush=True)
    report = {**_saved(), **measured}  # a part not run now keeps its last numbers
    report.update(
        benchmark="scale",
        goal="plan 10,000 samples in under 10 s and 500 MB; no command grows with the samples",
        environment=env,
        load_average_at_end=[round(x, 2) for x in os.getloadavg()],
    )
    save(report, RESULTS)


def plan_case(folder: Path, count: int) -> dict[str, Any]:
    sheet = make_samples(folder, count)
    work = folder / f"work_{count}"
    first = plan_once(sheet, work, folder / "out")
    again = plan_once(sheet, work, folder / "out")
    row = {"samples": count, "first": first, "again": again, "longest_command": longest_command(count)}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
