"""The benchmarks (``python -m bench.<name>``): scripts that print their measurements and save them as JSON
under ``bench/results/``. What they all do alike lives here, once."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
from pathlib import Path
from typing import Any

from genobatch import __version__


def save(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` as indented JSON to ``path`` (making its folder) and say where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {path}")


def environment(**tools: str | None) -> dict[str, Any]:
    """The machine and versions a measurement was made with, and how busy the (shared) machine was as it began;
    ``tools``: the versions of what the benchmark compares with or runs on (podman, Snakemake, Slurm...)."""
    return {
        "genobatch": __version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "unknown",
        ),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **tools,
    }
