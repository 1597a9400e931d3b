"""What running the jobs in containers costs: the germline pipeline on the bundled demo data, host tools against
the podman images, in the same run (alternating, ``--repeat`` times), cold caches each time.

Not a test: it prints and saves JSON (``bench/results/containers.json``).

    python -m bench.containers [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import environment, save

DATA = Path(__file__).resolve().parents[1] / "data"
RESULTS = Path(__file__).parent / "results" / "containers.json"
DATASETS = {"measles": "MH356245.1.reference.fasta", "sarscov2": "MN908947.3.fa"}


def one_run(runtime: str, folder: Path) -> float:
    start = time.perf_counter()
    for name, fasta in DATASETS.items():
        command = [sys.executable, "-m", "genobatch", "run", "--input", str(DATA / name / "samples.csv")]
        command += ["--fasta", str(DATA / name / fasta), "--outdir", str(folder / f"out-{name}")]
        command += ["--work-dir", str(folder / "work"), "--ploidy", "1", "--runtime", runtime]
        subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"host": [], "podman": []}
    for _ in range(args.repeat):
        for runtime in walls:
            with tempfile.TemporaryDirectory() as folder:
                walls[runtime].append(round(one_run(runtime, Path(folder)), 2))
    best = {runtime: min(times) for runtime, times in walls.items()}
    result: dict[str, Any] = {
        "benchmark": "containers",
        "what": "both demo datasets (4 samples, 36 tasks), cold cache, host tools vs podman images",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "wall_seconds": walls,
        "best_ratio_podman_to_host": round(best["podman"] / best["host"], 3),
        "environment": environment(
            podman=subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
        ),
    }
    print(json.dumps(result, indent=2))
    save(result, RESULTS)


if __name__ == "__main__":
    main()
