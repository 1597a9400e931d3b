"""Slurm benchmark: the 32-sample demo workload (bench.pipeline's ``many`` case) on a Slurm cluster against the
local engine, on the same machine in the same run, and how often genobatch asked the controller.

Not a test: prints and saves JSON (``bench/results/slurm.json``). Needs root and Slurm's packages
(``scripts/slurm-cluster.sh install``): it starts a single-host cluster for the run and stops it after, unless
``SLURM_CONF`` already points at one.

    python -m bench.slurm [--cores 2] [--polls 10,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from genobatch.executors.slurm import Settings
from genobatch.pipeline.execute import Options, Run
from genobatch.pipeline.planner import Params

from . import environment, save
from .pipeline import prepare_many

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "slurm-cluster.sh"
RESULTS = Path(__file__).parent / "results" / "slurm.json"


def run(sheet: Path, ref: Path, folder: Path, cores: int, executor: str, settings: Any = None) -> dict[str, Any]:
    options = Options(
        sheet,
        ref,
        folder / "results",
        folder / "work",
        Params(ploidy=1),
        max_cpus=cores,
        live_progress=False,
        runtime="host",
        executor=executor,
        executor_settings=settings,
    )
    genobatch = Run(options)
    start = time.perf_counter()
    code = genobatch.execute()
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"genobatch run --executor {executor} failed: {genobatch.errors}")
    result: dict[str, Any] = {
        "wall_seconds": round(wall, 1),
        "tasks_run": sum(1 for row in genobatch.trace if row.status == "COMPLETED"),
    }
    for calls in (folder / "work" / "slurm").glob("*/calls.json"):
        result["controller"] = json.loads(calls.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--polls", default="10,2", help="Slurm poll intervals to measure (seconds)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "slurm",
        "what": "32 samples (4 real measles/SARS-CoV-2 samples x 8 names), host tools, same machine, same run",
        "measured_at": time.strftime("%F %T"),
        "cores": args.cores,
        "environment": environment(
            slurm=subprocess.run(["sinfo", "--version"], capture_output=True, text=True).stdout.strip()
        ),
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="genobatch-bench-slurm-") as tmp:
        cluster = None if os.environ.get("SLURM_CONF") else Path(tmp) / "cluster"
        if cluster is not None:
            subprocess.run([str(SCRIPT), "start", str(cluster)], check=True, stdout=subprocess.DEVNULL)
            os.environ["SLURM_CONF"] = str(cluster / "slurm.conf")
        try:
            data = Path(tmp) / "data"
            data.mkdir()
            sheet, ref = prepare_many(data)
            report["runs"]["local"] = run(sheet, ref, Path(tmp) / "local", args.cores, "local")
            print(json.dumps({"local": report["runs"]["local"]}), flush=True)
            for poll in (float(p) for p in args.polls.split(",")):
                name = f"slurm (poll {poll:g} s)"
                settings = Settings(poll_seconds=poll)
                report["runs"][name] = result = run(
                    sheet, ref, Path(tmp) / f"slurm-{poll:g}", args.cores, "slurm", settings
                )
                result["wall_over_local"] = round(result["wall_seconds"] / report["runs"]["local"]["wall_seconds"], 2)
                print(json.dumps({name: result}), flush=True)
        finally:
            if cluster is not None:
                subprocess.run([str(SCRIPT), "stop", str(cluster)], check=False)
    save(report, args.output)


if __name__ == "__main__":
    main()
