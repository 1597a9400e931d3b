"""Helpers for the pipeline tests: running `genobatch run`, the plain by-hand pipeline, reading outputs."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genobatch.executors.tools import host_path
from genobatch.pipeline.library import Library

DATA = Path(__file__).resolve().parent.parent / "data"
DATASETS = {  # dataset -> (reference, ploidy)
    "measles": ("MH356245.1.reference.fasta", 1),
    "sarscov2": ("MN908947.3.fa", 1),
}
TOOLS = sorted({tool for step in Library.load().steps.values() for tool in step.tools})  # what the steps run

needs_tools = pytest.mark.skipif(
    any(shutil.which(t, path=host_path()) is None for t in TOOLS),
    reason="bioinformatics tools not installed: run ./bootstrap test",
)


def failing_bwa(folder: Path, sample: str) -> dict[str, str]:
    """An environment whose ``bwa`` fails for one sample's reads, as bwa fails on reads it cannot pair (input
    checks refuse every bad input before compute, so a tool failing mid-run needs a tool that fails)."""
    folder.mkdir(parents=True, exist_ok=True)
    real = shutil.which("bwa")
    fake = folder / "bwa"
    fake.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *SM:{sample}*) echo "[mem_sam_pe] paired reads have different names" >&2; exit 1 ;; esac\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def run_pipeline(
    sheet: Path | str,
    fasta: Path | str,
    outdir: Path | str,
    work: Path,
    *extra: str,
    expect: int | None = 0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "genobatch",
            "run",
            "--input",
            str(sheet),
            "--fasta",
            str(fasta),
            "--outdir",
            str(outdir),
            "--work-dir",
            str(work),
            *(() if "--runtime" in extra else ("--runtime", "host")),  # host tools unless a test asks otherwise
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if expect is not None:
        assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def records(vcf: Path) -> list[str]:
    """The VCF's data lines (header excluded)."""
    out = subprocess.run(["bcftools", "view", "-H", str(vcf)], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def by_hand(sample: str, r1: Path, r2: Path, fasta: Path, ploidy: int, workdir: Path) -> list[str]:
    """The plain pipeline: bwa mem | samtools sort, samtools index, bcftools mpileup -a AD,DP | call -mv."""
    workdir.mkdir(parents=True, exist_ok=True)
    ref = workdir / "ref.fa"
    if not ref.exists():
        shutil.copyfile(fasta, ref)
        subprocess.run(["bwa", "index", str(ref)], check=True, capture_output=True)
        subprocess.run(["samtools", "faidx", str(ref)], check=True, capture_output=True)
    bam = workdir / f"{sample}.bam"
    rg = f"@RG\\tID:{sample}.1\\tSM:{sample}\\tPL:ILLUMINA"
    script = 'bwa mem -R "$1" "$2" "$3" "$4" | samtools sort -o "$5" - && samtools index "$5"'
    subprocess.run(
        ["sh", "-c", script, "sh", rg, str(ref), str(r1), str(r2), str(bam)], check=True, capture_output=True
    )
    ploidy_args = ["--ploidy", "1"] if ploidy == 1 else []
    script = 'r=$1; b=$2; shift 2; bcftools mpileup -f "$r" -a AD,DP "$b" | bcftools call -mv "$@"'
    call = subprocess.run(
        ["sh", "-c", script, "sh", str(ref), str(bam), *ploidy_args], check=True, capture_output=True, text=True
    )
    return [line for line in call.stdout.splitlines() if not line.startswith("#")]


def newest(outdir: Path, pattern: str) -> Path:
    """The last run's file of ``pipeline_info`` (names carry the run's start time, so they sort by it)."""
    found = sorted((outdir / "pipeline_info").glob(pattern))
    assert found, f"no {pattern} in {outdir / 'pipeline_info'}"
    return found[-1]


def trace(outdir: Path) -> list[dict[str, str]]:
    """The last run's trace rows, by Nextflow's column names (and genobatch's after them)."""
    with open(newest(outdir, "execution_trace_*.txt")) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def report(outdir: Path) -> str:
    return newest(outdir, "execution_report_*.html").read_text()


def ran(outdir: Path) -> list[dict[str, str]]:
    """Trace rows of tasks that really ran in the last run."""
    return [row for row in trace(outdir) if row["status"] != "CACHED"]
