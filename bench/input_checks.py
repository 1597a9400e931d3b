"""Input checks' throughput: MB of uncompressed FASTQ checked per second, before and after whole-file checks.

Not a test: it prints and saves JSON (``bench/results/input_checks.json``).

    python -m bench.input_checks [--size-mb 200] [--before 6e3e5ea] [--previous 2f3319c]

Files: a generated R1 and R2 of --size-mb each (150 bp reads, Illumina names with Casava comments, random
bases and qualities), plain and gzip (``gzip -6``), and the repository's data/ FASTQs. Per file, best of 3:

- ``before``: the check of --before (genobatch/pipeline/inputs.py at that commit, loaded as it was: syntax
  and R1/R2 names of the first 1,000 reads only, the read count of all), plus the separate SHA-256 read of
  the file that the cache keys needed then (FileFacts.sha256);
- ``previous``: the whole-file check of --previous (input_stream.py and input_fastq.py at that commit, loaded
  as they were: zlib's inflate, the parser before issue 14's gzip work), with the read lengths recorded;
- ``after``: ``check_fastq`` now (every read, its length recorded; the SHA-256 taken on the way; ISA-L's
  inflate when installed);
- ``read_only``: reading (and decompressing, as ``after`` does) the file and nothing else;
- ``zlib_read_only`` (gzip files): reading it as --previous did, with zlib's inflate: the speed issue 14 asks
  for.

Each file's variants run in turn, 3 rounds: the best of each is kept, so that load from other processes on a
shared machine weighs on all alike; each also in CPU seconds (``*_mb_per_cpu_s``: this process's user and
system time, which waiting for a core shared with other work does not count), and ``previous`` and ``after``
in CPU seconds in a process of their own each (``*_in_own_process_*``), as the CLI checks a file: the C
library's reuse of memory differs there. ``after`` is asserted to find the same facts and read lengths as
``previous``.

Then a whole sample sheet (the generated pairs, plain and gzip: 4 files) through ``check_inputs``: in one
process (as before) and with worker processes (one file per core).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from array import array
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

from genobatch.pipeline import input_fastq, input_stream, inputs
from genobatch.problems import Problem

from . import environment, save

RESULTS = Path(__file__).parent / "results" / "input_checks.json"
DATA = Path(__file__).resolve().parent.parent / "data"
BEFORE = "6e3e5ea"  # the last commit that checked only the first 1,000 reads
PREVIOUS = "2f3319c"  # the last commit whose whole-file check inflated with zlib alone
REPEAT = 3


def source_at(revision: str, name: str) -> str:
    """genobatch/pipeline/<name>.py's text at ``revision`` (git show)."""
    return subprocess.run(
        ["git", "show", f"{revision}:genobatch/pipeline/{name}.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout


def old_inputs(revision: str) -> ModuleType:
    """genobatch/pipeline/inputs.py as it was at ``revision``, importable on its own."""
    source = source_at(revision, "inputs")
    spec = importlib.util.spec_from_loader("inputs_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["inputs_before"] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:inputs.py", "exec"), module.__dict__)
    return module


def old_checks(revision: str) -> ModuleType:
    """genobatch/pipeline/input_fastq.py (and the input_stream.py it imports) as they were at ``revision``."""
    package = ModuleType("checks_before")
    package.__path__ = []
    sys.modules[package.__name__] = package
    for name in ("input_stream", "input_fastq"):
        module = ModuleType(f"{package.__name__}.{name}")
        module.__package__ = package.__name__
        sys.modules[module.__name__] = module  # the relative import and dataclasses look it up
        source = source_at(revision, name)
        exec(compile(source, f"{revision}:{name}.py", "exec"), module.__dict__)
    return module


FRESH = """
import resource, sys
from array import array
from pathlib import Path
if sys.argv[2]:
    from bench.input_checks import old_checks
    check = old_checks(sys.argv[2]).check_fastq_file
else:
    from genobatch.pipeline.input_fastq import check_fastq_file as check
start = resource.getrusage(resource.RUSAGE_SELF)
check(Path(sys.argv[1]), array("L"))
end = resource.getrusage(resource.RUSAGE_SELF)
print(end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime)
"""


def fresh_cpu(path: Path, revision: str = "") -> float:
    """CPU seconds of the check (of ``revision``, else now) in a process of its own, as the CLI runs it: the C
    library's memory reuse then starts afresh, as it does not in this long-running process."""
    command = [sys.executable, "-c", FRESH, str(path), revision]
    root = Path(__file__).resolve().parent.parent
    return float(subprocess.run(command, capture_output=True, text=True, check=True, cwd=root).stdout)


def generate(folder: Path, size_mb: int) -> list[Path]:
    """R1 and R2 of ``size_mb`` MB each, plain and gzip."""
    rng = random.Random(1)
    bases = ["".join(rng.choices("ACGT", k=150)) for _ in range(997)]
    qualities = ["".join(rng.choices("#,:FFFFFFF", k=150)) for _ in range(991)]
    reads = (size_mb * 1_000_000) // 360
    files = []
    for mate in (1, 2):
        path = folder / f"big_R{mate}.fastq"
        with open(path, "w") as out:
            for i in range(reads):
                name = f"@A00123:8:H5KJDSXX:1:{1101 + i // 100_000}:{i % 32_000}:{i // 32}"
                out.write(f"{name} {mate}:N:0:ACGTACGT\n{bases[i % 997]}\n+\n{qualities[i % 991]}\n")
        files.append(path)
    gzip_processes = [subprocess.Popen(["gzip", "-6", "-k", str(path)]) for path in files]
    if any(process.wait() for process in gzip_processes):
        raise RuntimeError("gzip failed")
    return files + [path.with_name(path.name + ".gz") for path in files]


def best(action: Callable[[], object]) -> float:
    return best_of({"": action})[0][""]


def best_of(actions: dict[str, Callable[[], object]]) -> tuple[dict[str, float], dict[str, float]]:
    """Each action's best wall time and best CPU time (this process's) over REPEAT rounds, the actions run in
    turn within each round."""
    wall: dict[str, list[float]] = {name: [] for name in actions}
    cpu: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(REPEAT):
        for name, action in actions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            action()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return {name: min(spent) for name, spent in wall.items()}, {name: min(spent) for name, spent in cpu.items()}


def file_case(path: Path, before: ModuleType, previous: ModuleType, revision: str) -> dict[str, Any]:
    """One file's speeds; ``previous`` is the check at ``revision``."""
    megabytes = sum(map(len, input_stream.blocks(path))) / 1e6
    sheet = path.with_name("samples.csv")
    found: dict[str, Any] = {}

    def old() -> None:
        result = before.check_fastq(path, sheet, 2)
        assert not isinstance(result, Problem), result
        with open(path, "rb") as handle:
            hashlib.file_digest(handle, "sha256")

    def new() -> None:
        result = inputs.check_fastq(path, sheet, 2)
        assert not isinstance(result, Problem), result
        found["after"] = input_fastq.check_fastq_file(path, lengths := array("L")).to_json(), lengths

    def last() -> None:
        found["previous"] = previous.check_fastq_file(path, lengths := array("L")).to_json(), lengths

    fresh: dict[str, list[float]] = {"previous": [], "after": []}
    seconds, cpu_seconds = best_of(
        {
            "fresh_previous": lambda: fresh["previous"].append(fresh_cpu(path, revision)),
            "fresh_after": lambda: fresh["after"].append(fresh_cpu(path)),
            "before": old,
            "previous": last,
            "after": lambda: inputs.check_fastq(path, sheet, 2, array("L")),
            "read_only": lambda: sum(map(len, input_stream.blocks(path))),
            **({"zlib_read_only": lambda: sum(map(len, previous.blocks(path)))} if input_stream.is_gzip(path) else {}),
        }
    )
    new()
    assert found["after"] == found["previous"], f"{path}: not the same facts as {revision}"
    return {
        "file": str(path.relative_to(DATA)) if path.is_relative_to(DATA) else path.name,
        "uncompressed_mb": round(megabytes, 1),
        **{f"{name}_mb_per_s": round(megabytes / s, 1) for name, s in seconds.items() if "fresh" not in name},
        **{f"{name}_mb_per_cpu_s": round(megabytes / s, 1) for name, s in cpu_seconds.items() if "fresh" not in name},
        **{f"{name}_in_own_process_mb_per_cpu_s": round(megabytes / min(s), 1) for name, s in fresh.items()},
        "after_over_previous": round(seconds["previous"] / seconds["after"], 2),
        "after_over_read_only": round(seconds["read_only"] / seconds["after"], 2),
        **(
            {
                "after_over_zlib_read_only": round(seconds["zlib_read_only"] / seconds["after"], 2),
                "after_over_zlib_read_only_cpu": round(cpu_seconds["zlib_read_only"] / cpu_seconds["after"], 2),
            }
            if "zlib_read_only" in seconds
            else {}
        ),
        "after_over_previous_cpu": round(cpu_seconds["previous"] / cpu_seconds["after"], 2),
        "after_over_previous_in_own_process_cpu": round(min(fresh["previous"]) / min(fresh["after"]), 2),
    }


def sheet_case(files: list[Path], before: ModuleType, folder: Path) -> dict[str, Any]:
    sheet = folder / "samples.csv"
    sheet.write_text("sample,fastq_1,fastq_2\nplain,big_R1.fastq,big_R2.fastq\ngz,big_R1.fastq.gz,big_R2.fastq.gz\n")
    megabytes = sum(sum(map(len, input_stream.blocks(path))) for path in files) / 1e6

    def old() -> None:
        samples, problems = before.parse_sample_sheet(sheet)
        facts = before.FileFacts(folder / "old.json")
        before.check_inputs(sheet, samples, facts, problems)
        for path in files:
            facts.sha256(path)

    def new(parallel_bytes: int) -> Callable[[], None]:
        def run() -> None:
            inputs.PARALLEL_CHECK_BYTES = parallel_bytes
            samples, problems = inputs.parse_sample_sheet(sheet)
            inputs.check_inputs(sheet, samples, inputs.FileFacts(folder / "new.json"), problems)

        return run

    default = inputs.PARALLEL_CHECK_BYTES
    seconds = {"before": best(old), "after_one_process": best(new(1 << 62)), "after_workers": best(new(default))}
    inputs.PARALLEL_CHECK_BYTES = default
    return {
        "sheet": "2 pairs (plain and gzip)",
        "uncompressed_mb": round(megabytes, 1),
        "workers": min(len(files), len(os.sched_getaffinity(0)), inputs.MAX_CHECK_WORKERS),
        **{f"{name}_mb_per_s": round(megabytes / s, 1) for name, s in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200, help="of each generated FASTQ (uncompressed)")
    parser.add_argument("--before", default=BEFORE, help="the commit whose check is 'before'")
    parser.add_argument("--previous", default=PREVIOUS, help="the commit whose whole-file check is 'previous'")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    before, previous = old_inputs(args.before), old_checks(args.previous)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="genobatch-bench-") as tmp:
        generated = generate(Path(tmp), args.size_mb)
        for path in [*generated, *sorted(DATA.glob("*/*.fastq.gz"))]:
            results.append(file_case(path, before, previous, args.previous))
            print(json.dumps(results[-1]), flush=True)
        results.append(sheet_case(generated, before, Path(tmp)))
        print(json.dumps(results[-1]), flush=True)
    report = {
        "benchmark": "input_checks",
        "goal": "whole files checked at the speed of reading them (read_only); gzip at least at zlib's (issue 14)",
        "before": args.before,
        "previous": args.previous,
        "measured_at": time.strftime("%F %T"),
        "environment": environment(
            gzip=shutil.which("gzip"),
            zlib=zlib.ZLIB_RUNTIME_VERSION,
            isal=version("isal") if input_stream.FAST_ZLIB else None,
        ),
        "results": results,
    }
    save(report, args.output)


if __name__ == "__main__":
    main()
