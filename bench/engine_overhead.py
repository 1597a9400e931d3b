"""Engine overhead: N jobs running ``true`` at 1 vCPU on a 2-vCPU environment, against ``xargs -P 2``.

Not a test: it prints and saves JSON (``bench/results/engine_overhead.json``). Each case is timed in the
same run as its ``xargs`` baseline, so the ratio is meaningful on a shared, noisy machine.

    python -m bench.engine_overhead [--jobs 10000] [--repeat 1] [--children 100000] [--dir /dev/shm]

Cases: N independent jobs (submitted in one ``submit-jobs`` transaction), and one N-child array job.
Timing covers submission plus the engine running everything (the engine runs as its own process, as
``genobatch engine run`` does; its peak RSS and its CPU time, with its attempts', come from the kernel via wait4).
``--children M`` adds one run of M array children (as arrays of at most 10,000, AWS Batch's limit) to show that
the engine's memory stays flat: its peak RSS at M children against the N-child array's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from genobatch.batch import BatchClient
from genobatch.batch.model import MAX_ARRAY_SIZE

from . import environment, save

RESULTS = Path(__file__).parent / "results" / "engine_overhead.json"
VCPUS = 2


def time_xargs(jobs: int) -> tuple[float, float]:
    """(seconds, CPU seconds) of ``xargs -P 2`` running ``true`` ``jobs`` times."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(VCPUS), "-I{}", "true"], input="\n".join(map(str, range(jobs))).encode(), check=True
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


# The engine alone (no endpoint, as ``genobatch engine run --no-endpoint --idle-exit 0``), printing its own peak
# RSS when done: VmHWM, because the kernel's ru_maxrss starts an exec'd process at its parent's peak (here the
# bench's, which held 10,000 requests), so it would measure the bench, not the engine.
ENGINE = (
    "import sys; from genobatch.batch.engine import Engine; Engine(sys.argv[1]).run(until_idle=True); "
    "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))"
)


def run_engine(state_dir: Path) -> tuple[float, int, float]:
    """Run an engine process until the queue is empty; returns (seconds, its peak RSS in KiB, CPU seconds of it
    and its attempts, from wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(state_dir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    peak_kib = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"engine exited {proc.returncode}")
    return time.perf_counter() - start, int(peak_kib), usage.ru_utime + usage.ru_stime


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


def submit(client: BatchClient, kind: str, jobs: int) -> None:
    if kind == "independent":
        client.submit_jobs([{"jobName": f"j{i}", "jobQueue": "bench", "jobDefinition": "true"} for i in range(jobs)])
        return
    for n, first in enumerate(range(0, jobs, MAX_ARRAY_SIZE)):  # arrays of at most 10,000 children, as on AWS
        size = min(MAX_ARRAY_SIZE, jobs - first)
        properties = {"size": size} if size > 1 else None
        client.submit_job(
            jobName=f"array{n}",
            jobQueue="bench",
            jobDefinition="true",
            **({"arrayProperties": properties} if properties else {}),
        )


def case(kind: str, jobs: int, workdir: Path, baseline: bool = True) -> dict[str, Any]:
    state_dir = workdir / kind
    client = setup(state_dir)
    start = time.perf_counter()
    submit(client, kind, jobs)
    client.close()
    submit_seconds = time.perf_counter() - start
    run_seconds, engine_rss, cpu_seconds = run_engine(state_dir)
    check_all_succeeded(state_dir, jobs)
    total = submit_seconds + run_seconds
    result: dict[str, Any] = {
        "case": kind,
        "jobs": jobs,
        "submit_seconds": round(submit_seconds, 3),
        "run_seconds": round(run_seconds, 3),
        "wall_seconds": round(total, 3),
        "jobs_per_second": round(jobs / total, 1),
        "cpu_ms_per_job": round(cpu_seconds / jobs * 1000, 3),  # the engine's and its attempts'
        "engine_peak_rss_mib": round(engine_rss / 1024, 1),
    }
    if baseline:
        xargs_seconds, xargs_cpu = time_xargs(jobs)
        result |= {
            "xargs_seconds": round(xargs_seconds, 3),
            "xargs_cpu_ms_per_job": round(xargs_cpu / jobs * 1000, 3),
            "ratio_to_xargs": round(total / xargs_seconds, 2),
        }
    shutil.rmtree(state_dir, ignore_errors=True)
    return result


def file_system(path: Path) -> str:
    """The type of the file system holding ``path`` (its mount's), as /proc/self/mounts names it."""
    best, kind = "", "unknown"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, kind = mount, fstype
    return f"{kind} ({best})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--children", type=int, default=0, help="also run this many array children (memory)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the state directories go (e.g. /dev/shm: no disk file system)"
    )
    args = parser.parse_args()
    env = environment()
    results = []
    with tempfile.TemporaryDirectory(prefix="genobatch-bench-", dir=args.dir) as tmp:
        where = file_system(Path(tmp))
        for repeat in range(args.repeat):
            for kind in ("independent", "array"):
                result = case(kind, args.jobs, Path(tmp) / f"r{repeat}")
                print(json.dumps(result), flush=True)
                results.append(result)
        if args.children:
            result = case("array", args.children, Path(tmp) / "children", baseline=False)
            print(json.dumps(result), flush=True)
            results.append(result)
    report = {
        "benchmark": "engine_overhead",
        "goal": "ratio_to_xargs <= 1.2; engine peak RSS flat from 10,000 to 100,000 array children",
        "measured_at": time.strftime("%F %T"),
        "environment": env,
        "state_file_system": where,  # the engine's per-job cost is mostly this file system's (mkdir, create)
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "results": results,
        "bench_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    save(report, args.output)


if __name__ == "__main__":
    main()
