"""The driver's own overhead at scale: a pipeline of trivial user steps (``touch`` a file), run end to end,
against the same commands through ``xargs -P 2`` in the same run (``bench/scale.py --steps-samples N``).

The steps are users' own YAML declarations, as ``--steps`` loads them, and every default step is skipped:
two steps per FASTQ file (``scatter: file``), then a chain of six per sample (``scatter: sample``, each reading
the one before; the first reads both file steps' outputs), so N samples make 10 x N tasks with dependencies
(10,000 samples: 100,000 tasks). The last step of each chain publishes its file, so every task is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from genobatch.report.trace import read_trace

FILE_STEPS = ("filea", "fileb")
CHAIN = tuple(f"s{i}" for i in range(1, 7))
TASKS_PER_SAMPLE = 2 * len(FILE_STEPS) + len(CHAIN)
DEFAULT_STEPS = "reference,fastqc,align,merge,bamstats,call,concat,vcfstats,multiqc"
STEP = """name: {name}
description: Does nothing but touch a file (driver overhead benchmark).
scatter: {scatter}
inputs:
{inputs}
command: touch {{{{ out }}}}/done
outputs:
  done: {{path: done, type: {output}{publish}}}
image: host
tools: []
resources: {{cpus: 1, memory: 64 MB}}  # the job runner (Python) itself takes ~20 MB
rate: 0.0001
colour: "#999999"
"""


def write_steps(folder: Path) -> Path:
    """The eight step declarations: ``filea``/``fileb`` per FASTQ, ``s1``..``s6`` a chain per sample."""
    steps = folder / "steps"
    steps.mkdir(parents=True, exist_ok=True)
    declared = [(name, "file", "  x: fastq", f"t_{name}", False) for name in FILE_STEPS]
    inputs = ["\n".join(f"  {x}: t_{name}" for x, name in zip("xy", FILE_STEPS, strict=True))]
    inputs += [f"  x: t_{name}" for name in CHAIN[:-1]]
    declared += [(name, "sample", up, f"t_{name}", name == CHAIN[-1]) for name, up in zip(CHAIN, inputs, strict=True)]
    for name, scatter, up, out, publish in declared:
        target = ', publish: "{{ sample }}/' + name + '/"' if publish else ""
        text = STEP.format(name=name, scatter=scatter, inputs=up, output=out, publish=target)
        (steps / f"{name}.yaml").write_text(text)
    return steps


def time_xargs(folder: Path, tasks: int) -> float:
    """The same work without genobatch: ``tasks`` ``touch`` commands, two at a time."""
    target = folder / "xargs"
    target.mkdir(exist_ok=True)
    paths = "\n".join(str(target / f"t{i}") for i in range(tasks)).encode()
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", "2", "-n", "1", "touch"], input=paths, check=True)
    return time.perf_counter() - start


def run_steps(folder: Path, sheet: Path, reference: Path, samples: int) -> dict[str, Any]:
    """Run the trivial pipeline over ``sheet`` once (cold work directory); wall, peak RSS and the xargs ratio."""
    steps = write_steps(folder)
    argv = [sys.executable, "-m", "genobatch", "run", "--input", str(sheet), "--fasta", str(reference)]
    argv += ["--outdir", str(folder / "out"), "--work-dir", str(folder / "work"), "--steps", str(steps)]
    argv += ["--skip-tools", DEFAULT_STEPS, "--runtime", "host"]
    log = folder / "run.log"
    start = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the trivial-step run failed; see {log}:\n{log.read_text()[-2000:]}")
    tasks = samples * TASKS_PER_SAMPLE
    xargs = time_xargs(folder, tasks)
    all_cpu = usage.ru_utime + usage.ru_stime  # genobatch and every job it reaped
    jobs_cpu = job_cpu_seconds(folder / "out")
    return {
        "samples": samples,
        "tasks": tasks,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "xargs_s": round(xargs, 2),
        "ratio_to_xargs": round(wall / xargs, 2),
        "ms_per_task": round(1000 * wall / tasks, 3),
        "job_cpu_ms_per_task": round(1000 * jobs_cpu / tasks, 2),  # the job runner (Python) and its touch
        "driver_engine_cpu_ms_per_task": round(1000 * (all_cpu - jobs_cpu) / tasks, 2),
    }


def job_cpu_seconds(outdir: Path) -> float:
    """The jobs' own CPU seconds (runner and tool), summed from the run's trace."""
    (trace,) = (outdir / "pipeline_info").glob("execution_trace_*.txt")
    return sum(float(row["cpu_seconds"]) for row in read_trace(trace) if row["cpu_seconds"] not in ("", "-"))
