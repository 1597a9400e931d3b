"""Checks of a run's options and places before anything is read or written: where results and work go, and
whether the resources given let each step run at all. Each problem is reported with the option (or file) it
comes from and the fix, together with the input files' problems, before any compute starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from genobatch.problems import Problem
from genobatch.storage import s3 as storage

from .declarations import Step
from .settings import StepSettings

MIN_REGION_BASES = 1000  # --regions may not cut the reference finer than this: more jobs than work


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable_folder(flag: str, path: Path, what: str) -> list[Problem]:
    """``path`` is (or can be made as) a folder this process can write in."""
    existing = _nearest_existing(path)
    if existing == path and not path.is_dir():
        return [Problem(Path(flag), None, f"{path} exists and is not a folder", f"give a folder for {what}")]
    if not existing.is_dir():
        return [Problem(Path(flag), None, f"{existing} is not a folder", f"give a folder for {what}")]
    if not os.access(existing, os.W_OK | os.X_OK):  # access() also says EROFS for a read-only mount
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        why = "is on a read-only file system" if read_only else "is not writable"
        return [Problem(Path(flag), None, f"{existing} {why}", f"give {flag} a folder you can write to")]
    return []


def check_places(outdir: str, work: Path) -> list[Problem]:
    """The outdir and the work directory: given, folders, writable, and apart from each other."""
    if not outdir.strip():
        return [Problem(Path("--outdir"), None, "--outdir is empty", "give the folder for results, e.g. results")]
    problems = _writable_folder("--work-dir", work, "the work directory (cache, engine state, logs)")
    if storage.is_s3(outdir):
        return problems
    results = Path(outdir).resolve()
    problems += _writable_folder("--outdir", results, "results")
    if results == work or results.is_relative_to(work):
        problems.append(
            Problem(
                Path("--outdir"),
                None,
                f"{results} is inside the work directory {work}",
                "keep results apart from the work directory, e.g. --outdir results --work-dir work",
            )
        )
    return problems


def check_resources(steps: list[Step], max_memory_mib: int | None, settings: dict[str, StepSettings]) -> list[Problem]:
    """Each step gets at least the memory its tool cannot run without (``min_memory`` in its declaration)."""
    problems = []
    for step in steps:
        given = settings.get(step.name, StepSettings()).memory_mib or step.memory_mib
        memory = min(given, max_memory_mib or given)
        if memory < step.min_memory_mib:
            source = "--max-memory" if max_memory_mib and max_memory_mib < given else "-c (the settings file)"
            problems.append(
                Problem(
                    Path(source),
                    None,
                    f"step {step.name} would get {memory} MiB, but it cannot run in less than "
                    f"{step.min_memory_mib} MiB ({step.source.name})",
                    f"give {source} {step.min_memory_mib}MB or more, or leave the step out (--skip-tools {step.name})",
                )
            )
    return problems


def check_regions(regions: int, contigs: list[tuple[str, int]], fasta: Path) -> list[Problem]:
    """--regions must leave each region at least MIN_REGION_BASES long."""
    total = sum(length for _, length in contigs)
    most = max(1, total // MIN_REGION_BASES)
    if regions <= most:
        return []
    message = f"--regions {regions} would cut the {total:,}-base reference ({fasta.name}) into regions of "
    message += f"{total // regions:,} bases"
    fix = f"give --regions {most} or fewer (regions of at least {MIN_REGION_BASES} bases), or 0 for the default"
    return [Problem(Path("--regions"), None, message, fix)]
