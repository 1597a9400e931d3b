"""Input checks' throughput: MB of uncompressed FASTQ checked per second, before and after whole-file checks.

Not a test: it prints and saves JSON (``bench/results/input_checks.json``).

    python -m bench.input_checks [--size-mb 200] [--before 6e3e5ea]

Files: a generated R1 and R2 of --size-mb each (150 bp reads, Illumina names with Casava comments, random
bases and qualities), plain and gzip (``gzip -6``), and the repository's data/ FASTQs. Per file, best of 3:

- ``before``: the check of --before (genobatch/pipeline/inputs.py at that commit, loaded as it was: syntax
  and R1/R2 names of the first 1,000 reads only, the read count of all), plus the separate SHA-256 read of
  the file that the cache keys needed then (FileFacts.sha256);
- ``after``: ``check_fastq`` now (every read; the SHA-256 taken on the way);
- ``read_only``: reading (and decompressing) the file and nothing else: the most any check could reach.

Then a whole sample sheet (the generated pairs, plain and gzip: 4 files) through ``check_inputs``: in one
process (as before) and with worker processes (one file per core).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from genobatch import __version__
from genobatch.pipeline import input_stream, inputs
from genobatch.problems import Problem

RESULTS = Path(__file__).parent / "results" / "input_checks.json"
DATA = Path(__file__).resolve().parent.parent / "data"
BEFORE = "6e3e5ea"  # the last commit that checked only the first 1,000 reads
REPEAT = 3


def old_inputs(revision: str) -> ModuleType:
    """genobatch/pipeline/inputs.py as it was at ``revision``, importable on its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:genobatch/pipeline/inputs.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout
    spec = importlib.util.spec_from_loader("inputs_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["inputs_before"] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:inputs.py", "exec"), module.__dict__)
    return module


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
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def file_case(path: Path, before: ModuleType) -> dict[str, Any]:
    megabytes = sum(map(len, input_stream.blocks(path))) / 1e6
    sheet = path.with_name("samples.csv")

    def old() -> None:
        result = before.check_fastq(path, sheet, 2)
        assert not isinstance(result, Problem), result
        with open(path, "rb") as handle:
            hashlib.file_digest(handle, "sha256")

    def new() -> None:
        result = inputs.check_fastq(path, sheet, 2)
        assert not isinstance(result, Problem), result

    seconds = {
        "before": best(old),
        "after": best(new),
        "read_only": best(lambda: sum(map(len, input_stream.blocks(path)))),
    }
    return {
        "file": str(path.relative_to(DATA)) if path.is_relative_to(DATA) else path.name,
        "uncompressed_mb": round(megabytes, 1),
        **{f"{name}_mb_per_s": round(megabytes / s, 1) for name, s in seconds.items()},
        "after_over_read_only": round(seconds["read_only"] / seconds["after"], 2),
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


def environment() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "unknown",
    )
    return {
        "genobatch": __version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "gzip": shutil.which("gzip"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200, help="of each generated FASTQ (uncompressed)")
    parser.add_argument("--before", default=BEFORE, help="the commit whose check is 'before'")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    before = old_inputs(args.before)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="genobatch-bench-") as tmp:
        generated = generate(Path(tmp), args.size_mb)
        for path in [*generated, *sorted(DATA.glob("*/*.fastq.gz"))]:
            results.append(file_case(path, before))
            print(json.dumps(results[-1]), flush=True)
        results.append(sheet_case(generated, before, Path(tmp)))
        print(json.dumps(results[-1]), flush=True)
    report = {
        "benchmark": "input_checks",
        "goal": "whole files checked at the speed of reading them (read_only)",
        "before": args.before,
        "measured_at": time.strftime("%F %T"),
        "environment": environment(),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
