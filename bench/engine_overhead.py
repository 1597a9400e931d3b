"""Engine overhead: N jobs running ``true`` at 1 vCPU on a 2-vCPU environment, against ``xargs -P 2``.

Not a test: it prints and saves JSON (``bench/results/engine_overhead.json``). Each case is timed in the
same run as its ``xargs`` baseline, so the ratio is meaningful on a shared, noisy machine.

    python -m bench.engine_overhead [--jobs 10000] [--repeat 1]

Cases: N independent jobs (submitted in one ``submit-jobs`` transaction), and one N-child array job.
Timing covers submission plus the engine running everything (the engine runs as its own process, as
``genobatch engine run`` does; its peak RSS comes from the kernel via wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from genobatch import __version__
from genobatch.batch import BatchClient

RESULTS = Path(__file__).parent / "results" / "engine_overhead.json"
VCPUS = 2


def time_xargs(jobs: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(VCPUS), "-I{}", "true"], input="\n".join(map(str, range(jobs))).encode(), check=True
    )
    return time.perf_counter() - start


def run_engine(state_dir: Path) -> tuple[float, int]:
    """Run an engine process until the queue is empty; returns (seconds, its peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "genobatch", "engine", "run", "--state-dir", str(state_dir), "--idle-exit", "0"],
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"engine exited {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss


def setup(state_dir: Path) -> BatchClient:
    client = BatchClient(state_dir)
    client.create_compute_environment(
        computeEnvironmentName="bench", computeResources={"type": "LOCAL", "maxvCpus": VCPUS}
    )
    client.create_job_queue(
        jobQueueName="bench", priority=10, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "bench"}]
    )
    client.register_job_definition(
        jobDefinitionName="true", type="container", containerProperties={"command": ["true"], "vcpus": 1, "memory": 64}
    )
    return client


def check_all_succeeded(state_dir: Path, expected: int) -> None:
    with sqlite3.connect(state_dir / "state.db") as conn:
        ok = conn.execute(
            "SELECT count(*) FROM jobs WHERE status='SUCCEEDED' AND (array_size IS NULL OR parent_id IS NOT NULL)"
        ).fetchone()[0]
    if ok != expected:
        raise RuntimeError(f"only {ok} of {expected} jobs succeeded")


def case(kind: str, jobs: int, workdir: Path) -> dict[str, Any]:
    state_dir = workdir / kind
    client = setup(state_dir)
    start = time.perf_counter()
    if kind == "independent":
        client.submit_jobs([{"jobName": f"j{i}", "jobQueue": "bench", "jobDefinition": "true"} for i in range(jobs)])
    else:
        client.submit_job(jobName="array", jobQueue="bench", jobDefinition="true", arrayProperties={"size": jobs})
    submit_seconds = time.perf_counter() - start
    run_seconds, engine_rss = run_engine(state_dir)
    check_all_succeeded(state_dir, jobs)
    xargs_seconds = time_xargs(jobs)
    total = submit_seconds + run_seconds
    return {
        "case": kind,
        "jobs": jobs,
        "submit_seconds": round(submit_seconds, 3),
        "run_seconds": round(run_seconds, 3),
        "wall_seconds": round(total, 3),
        "jobs_per_second": round(jobs / total, 1),
        "xargs_seconds": round(xargs_seconds, 3),
        "ratio_to_xargs": round(total / xargs_seconds, 2),
        "engine_peak_rss_mib": round(engine_rss / 1024, 1),
    }


def environment() -> dict[str, Any]:
    return {
        "genobatch": __version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "unknown",
        ),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="genobatch-bench-") as tmp:
        for repeat in range(args.repeat):
            for kind in ("independent", "array"):
                result = case(kind, args.jobs, Path(tmp) / f"r{repeat}")
                print(json.dumps(result))
                results.append(result)
    report = {
        "benchmark": "engine_overhead",
        "goal": "ratio_to_xargs <= 1.5",
        "measured_at": time.strftime("%F %T"),
        "environment": environment(),
        "results": results,
        "bench_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
