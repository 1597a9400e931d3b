"""Planning at scale: wall time, peak memory and output of ``genobatch run --dry-run`` at 100, 1,000 and 10,000
samples, and the longest command any job gets (issue 14's goals: under 10 s and 500 MB at 10,000 samples; no
command line that grows with the samples).

Not a test: it prints and saves JSON (``bench/results/scale.json``).

    python -m bench.scale [--samples 100,1000,10000] [--repeat 2]

Each sample has its own tiny pair of gzip FASTQ files (10 read pairs of 50 bp): planning cost is per sample
and per task, not per base. Each count is planned twice in a fresh process: ``first`` (every FASTQ checked
and hashed) and ``again`` (the work directory remembers the checks, as a resumed run does). Peak memory is the
process's own maximum RSS (``wait4``). Not measured here yet: a 100,000-task pipeline of trivial user steps
run end to end, and a real 1,000-sample run (issue 14 asks for both).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from genobatch import __version__

RESULTS = Path(__file__).parent / "results" / "scale.json"
REFERENCE = Path(__file__).resolve().parent.parent / "data" / "sarscov2" / "MN908947.3.fa"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", default="100,1000,10000")
    args = parser.parse_args()
    counts = [int(c) for c in args.samples.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="genobatch-scale-") as tmp:
        folder = Path(tmp)
        for count in counts:
            sheet = make_samples(folder, count)
            work = folder / f"work_{count}"
            first = plan_once(sheet, work, folder / "out")
            again = plan_once(sheet, work, folder / "out")
            row = {"samples": count, "first": first, "again": again, "longest_command": longest_command(count)}
            print(json.dumps(row), flush=True)
            results.append(row)
    report = {
        "benchmark": "scale",
        "goal": "plan 10,000 samples in under 10 s and 500 MB; no command grows with the samples",
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "environment": {
            "genobatch": __version__,
            "python": platform.python_version(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
        },
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
