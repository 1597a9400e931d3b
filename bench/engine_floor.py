"""What an engine that records every attempt must cost at least: ``engine_overhead``'s case (N jobs running
``true``, two at a time) run by bare Python loops, each adding one layer of what genobatch's engine does per
attempt, and by the engine itself, each against ``xargs -P 2`` timed right after it.

Not a test: prints and saves JSON (``bench/results/engine_floor.json``).

    python -m bench.engine_floor [--jobs 10000] [--repeat 3] [--dir /dev/shm]

Layers, each adding to the one before:
- ``spawn``: ``posix_spawn`` of a wrapper shell in its own session (dash; ``true`` is its builtin, as in the
  engine's bench), a pidfd in epoll, ``wait4``: the loop alone.
- ``files``: the attempt's directory and its ``work``, its two log files, the exit status the wrapper writes.
- ``sqlite``: each pass's ends and launches recorded in one WAL transaction, as the engine's passes (the
  attempt's row, the job's status and an event at the launch and again at the end).
- ``grouped``: the same writes committed at most every ``GROUP_SECONDS`` (launches go on between commits, as
  an engine that records attempts in groups would; one killed meanwhile loses the records of that time).
- ``engine``: genobatch's engine (``engine_overhead.case``, independent jobs). Its time includes submitting
  the jobs (10,000 in 1.5 s, of 12.3 s, in engine_overhead_tmpfs.json), as ``engine_overhead`` counts it;
  the loops' jobs are written before their clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from . import environment, save
from .engine_overhead import case, file_system, time_xargs

RESULTS = Path(__file__).parent / "results" / "engine_floor.json"
LAYERS = ("spawn", "files", "sqlite", "grouped")
GROUP_SECONDS = 0.05  # ``grouped``: a commit at most this often
SLOTS = 2
WRAPPER = '"$@"; s=$?; [ -z "$GB_DIR" ] || printf "%s\\n" $s >"$GB_DIR/exit_status"; exit $s'
SCHEMA = (  # the engine's tables, cut to the columns written here, with their keys and the status index
    "CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, status TEXT, exit_code INT)",
    "CREATE INDEX jobs_status ON jobs (status, seq)",
    "CREATE TABLE attempts (job_id TEXT, number INT, pid INT, exit_code INT, cpu_seconds REAL, "
    "PRIMARY KEY (job_id, number)) WITHOUT ROWID",
    "CREATE TABLE events (job_id TEXT, at INT, status TEXT)",
    "CREATE INDEX events_job ON events (job_id)",
)


class Loop:
    """Runs ``jobs`` attempts, ``SLOTS`` at a time, doing the work of ``layer`` and those before it."""

    def __init__(self, layer: str, folder: Path, jobs: int) -> None:
        self.files, self.sqlite = layer != "spawn", layer in ("sqlite", "grouped")
        self.group = GROUP_SECONDS if layer == "grouped" else 0.0
        self.folder, self.jobs = folder, jobs
        self.db = sqlite3.connect(folder / "state.db", isolation_level=None)
        for statement in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *SCHEMA):
            self.db.execute(statement)
        self.db.executemany("INSERT INTO jobs (id, status) VALUES (?, 'RUNNABLE')", [(f"j{i}",) for i in range(jobs)])
        self.env = dict(os.environ)

    def launch(self, job: str) -> int:
        directory = self.folder / job
        env = self.env
        if self.files:
            os.mkdir(directory)
            os.mkdir(directory / "work")
            for name in ("stdout.log", "stderr.log"):
                os.close(os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644))
            env = {**env, "GB_DIR": str(directory)}
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", WRAPPER, "attempt", "true"], env, setsid=True)
        self._write(
            ("INSERT INTO attempts (job_id, number, pid) VALUES (?, 1, ?)", (job, pid)),
            ("UPDATE jobs SET status='RUNNING' WHERE id=?", (job,)),
            ("INSERT INTO events VALUES (?, ?, 'RUNNING')", (job, time.time_ns() // 10**6)),
        )
        return pid

    def ended(self, job: str, status: int, usage: resource.struct_rusage) -> None:
        code, cpu = os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        self._write(
            ("UPDATE attempts SET exit_code=?, cpu_seconds=? WHERE job_id=? AND number=1", (code, cpu, job)),
            ("UPDATE jobs SET status='SUCCEEDED', exit_code=? WHERE id=?", (code, job)),
            ("INSERT INTO events VALUES (?, ?, 'SUCCEEDED')", (job, time.time_ns() // 10**6)),
        )

    def _write(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        if self.sqlite:
            for sql, values in statements:
                self.db.execute(sql, values)

    def run(self) -> None:
        """Passes as the engine's: the attempts that ended and those launched in their place are recorded in one
        transaction (launched inside it, before the commit)."""
        poller, running = select.epoll(), dict[int, tuple[int, str]]()
        started = finished = 0
        committed = time.monotonic()
        while finished < self.jobs:
            ended = [pidfd for pidfd, _ in (poller.poll() if running else [])]
            if self.sqlite and not self.db.in_transaction:
                self.db.execute("BEGIN")
            for pidfd in ended:
                pid, job = running.pop(pidfd)
                _, status, usage = os.wait4(pid, 0)
                poller.unregister(pidfd)
                os.close(pidfd)
                self.ended(job, status, usage)
            while started < self.jobs and len(running) < SLOTS:
                job = f"j{started}"
                pid = self.launch(job)
                pidfd = os.pidfd_open(pid)
                poller.register(pidfd, select.EPOLLIN)
                running[pidfd] = (pid, job)
                started += 1
            finished += len(ended)
            if self.sqlite and (time.monotonic() - committed >= self.group or finished == self.jobs):
                self.db.execute("COMMIT")
                committed = time.monotonic()


def measure(layer: str, jobs: int, folder: Path) -> dict[str, Any]:
    """One layer's run (or the engine's) and ``xargs`` right after it."""
    folder.mkdir()
    if layer == "engine":
        result = case("independent", jobs, folder, baseline=False)
        seconds, cpu_ms = result["wall_seconds"], result["cpu_ms_per_job"]
    else:
        loop = Loop(layer, folder, jobs)
        before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        start = time.perf_counter()
        loop.run()
        seconds = time.perf_counter() - start
        after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before, strict=True))
        cpu_ms = round(cpu / jobs * 1000, 3)
    xargs_seconds, _ = time_xargs(jobs)
    return {
        "layer": layer,
        "jobs": jobs,
        "seconds": round(seconds, 3),
        "cpu_ms_per_job": cpu_ms,  # the loop's (or engine's) and its attempts'
        "xargs_seconds": round(xargs_seconds, 3),
        "ratio_to_xargs": round(seconds / xargs_seconds, 2),
    }


def medians(results: list[dict[str, Any]]) -> dict[str, float]:
    """Each layer's median ratio to ``xargs`` over the repeats (the same loop's wall varied 20% run to run)."""
    return {
        layer: statistics.median(r["ratio_to_xargs"] for r in results if r["layer"] == layer)
        for layer in dict.fromkeys(r["layer"] for r in results)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every layer, one after the other")
    parser.add_argument("--dir", type=Path, default=None, help="where the state goes (e.g. /dev/shm)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    env, results = environment(), []
    with tempfile.TemporaryDirectory(prefix="genobatch-floor-", dir=args.dir) as tmp:
        where = file_system(Path(tmp))
        Loop("spawn", Path(tmp), 500).run()  # untimed: the first loop of a process ran 20-25% slower
        for repeat in range(args.repeat):
            for layer in (*LAYERS, "engine"):
                results.append(measure(layer, args.jobs, Path(tmp) / f"{layer}{repeat}"))
                print(json.dumps(results[-1]), flush=True)
    report = {
        "benchmark": "engine_floor",
        "measured_at": time.strftime("%F %T"),
        "environment": env,
        "state_file_system": where,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "median_ratio_to_xargs": medians(results),
        "results": results,
    }
    print(json.dumps(report["median_ratio_to_xargs"]))
    save(report, args.output)


if __name__ == "__main__":
    main()
