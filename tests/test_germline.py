"""The germline pipeline with the real tools on the real demo data.

Equality with the plain by-hand pipeline is checked for every sample at several chunk/region counts:
region boundaries (and read chunks) are where scatter/gather pipelines classically change results.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import genobatch

from .pipeline_helpers import (
    DATA,
    DATASETS,
    by_hand,
    failing_bwa,
    needs_tools,
    ran,
    records,
    report,
    run_pipeline,
    trace,
)

pytestmark = needs_tools


@pytest.fixture(scope="module")
def sheets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each dataset's sample sheet; measles also gets "combined" (both runs' reads, ~13 Mb: two bwa batches,
    so that alignment is really split into chunks)."""
    folder = tmp_path_factory.mktemp("sheets")
    out = {}
    for dataset in DATASETS:
        lines = [line.split(",") for line in (DATA / dataset / "samples.csv").read_text().splitlines()[1:]]
        rows = [f"{sample},{DATA / dataset / r1},{DATA / dataset / r2}" for sample, r1, r2 in lines]
        if dataset == "measles":
            for mate in ("R1", "R2"):
                joined = b"".join(
                    (DATA / dataset / f"{run}_{mate}.fastq.gz").read_bytes() for run in ("SRR7517490", "SRR7517498")
                )
                (folder / f"combined_{mate}.fastq.gz").write_bytes(joined)
            rows.append(f"combined,{folder / 'combined_R1.fastq.gz'},{folder / 'combined_R2.fastq.gz'}")
        out[dataset] = folder / f"{dataset}.csv"
        out[dataset].write_text("sample,fastq_1,fastq_2\n" + "\n".join(rows) + "\n")
    return out


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory, sheets: dict[str, Path]) -> dict[str, list[str]]:
    """By-hand VCF records of every sample."""
    out = {}
    for dataset, (reference, ploidy) in DATASETS.items():
        work = tmp_path_factory.mktemp(f"byhand-{dataset}")
        for line in sheets[dataset].read_text().splitlines()[1:]:
            sample, r1, r2 = line.split(",")
            out[sample] = by_hand(sample, Path(r1), Path(r2), DATA / dataset / reference, ploidy, work)
    return out


@pytest.mark.parametrize("chunk_reads, regions", [(1_000_000, 1), (1, 3), (1, 7)])
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_vcf_records_equal_the_by_hand_pipeline(
    dataset: str,
    chunk_reads: int,
    regions: int,
    tmp_path: Path,
    sheets: dict[str, Path],
    expected: dict[str, list[str]],
) -> None:
    reference, ploidy = DATASETS[dataset]
    outdir = tmp_path / "results"
    run_pipeline(
        sheets[dataset],
        DATA / dataset / reference,
        outdir,
        tmp_path / "work",
        "--ploidy",
        str(ploidy),
        "--chunk-reads",
        str(chunk_reads),
        "--regions",
        str(regions),
    )
    samples = [line.split(",")[0] for line in sheets[dataset].read_text().splitlines()[1:]]
    rows = ran(outdir)
    for sample in samples:
        assert records(outdir / sample / f"{sample}.vcf.gz") == expected[sample], f"{sample} differs"
        subprocess.run(["samtools", "quickcheck", str(outdir / sample / f"{sample}.bam")], check=True)
        assert (outdir / sample / f"{sample}.bam.bai").is_file()
        assert (outdir / sample / f"{sample}.vcf.gz.tbi").is_file()
        calls = [r for r in rows if r["step"] == "call" and r["sample"] == sample]
        assert len(calls) == regions, "one calling task per region"
    if dataset == "measles" and chunk_reads == 1:
        aligned = [r for r in rows if r["step"] == "align" and r["sample"] == "combined"]
        assert len(aligned) == 2, "the combined sample was aligned in two chunks"
    assert (outdir / "multiqc" / "multiqc_report.html").stat().st_size > 10_000
    assert "timeline" in report(outdir).lower()
    versions = yaml.safe_load((outdir / "pipeline_info" / "software_versions.yml").read_text())
    assert versions["align"]["bwa"].startswith("0.7.17") and versions["call"]["bcftools"] == "1.16", versions
    assert versions["Workflow"]["genobatch"] == genobatch.__version__ and versions["Workflow"]["runtime"] == "host"


def test_resume_runs_nothing_and_partial_reruns(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DATA / "sarscov2", data)
    outdir, work = tmp_path / "results", tmp_path / "work"
    args = (data / "samples.csv", data / "MN908947.3.fa", outdir, work, "--ploidy", "1", "--regions", "2")
    run_pipeline(*args)
    first = {r["name"]: r for r in trace(outdir)}
    vcf_before = records(outdir / "subsample2" / "subsample2.vcf.gz")

    again = run_pipeline(*args)
    assert "Nothing to run" in again.stdout
    assert ran(outdir) == [], "a second run runs no job"

    # A content change in one sample's reads reruns that sample only (plus the report over all samples).
    for mate in ("R1", "R2"):
        path = data / f"subsample1_{mate}.fastq.gz"
        lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
        path.write_bytes(gzip.compress(b"".join(lines[:-4])))  # drop the last read of each mate
    run_pipeline(*args)
    rerun = ran(outdir)
    assert rerun and {r["sample"] for r in rerun} == {"subsample1", "-"}, rerun  # "-": over all samples
    assert {r["step"] for r in rerun if r["sample"] == "-"} == {"multiqc"}
    assert records(outdir / "subsample2" / "subsample2.vcf.gz") == vcf_before

    # A changed calling parameter reruns calling and what follows it, not alignment or QC.
    run_pipeline(*args, "--max-depth", "500")
    steps = {r["step"] for r in ran(outdir)}
    assert steps == {"call", "concat", "vcfstats", "multiqc"}, steps
    explain = run_pipeline(*args, "--max-depth", "400", "--dry-run", "--explain")
    assert "call:subsample1:0: changed: command" in explain.stdout
    assert "align" not in explain.stdout.split("step")[0]
    assert first  # the first run's trace had rows


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    result = run_pipeline(
        DATA / "measles" / "samples.csv",
        DATA / "measles" / "MH356245.1.reference.fasta",
        tmp_path / "results",
        tmp_path / "work",
        "--ploidy",
        "1",
        "--dry-run",
        "--regions",
        "3",
    )
    assert "call" in result.stdout and "array of 3" in result.stdout and "bwa mem" in result.stdout
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "work" / "cache").exists()


def test_dry_run_shows_one_job_per_step_unless_verbose(tmp_path: Path) -> None:
    """10,000 samples must print a page, not every job: one job of each step stands for the others."""
    args = [DATA / "sarscov2" / "samples.csv", DATA / "sarscov2" / "MN908947.3.fa", tmp_path / "r", tmp_path / "w"]
    short = run_pipeline(*args, "--ploidy", "1", "--dry-run").stdout
    assert "job align-subsample1" in short and "job align-subsample2" not in short, short
    assert "more job(s) like the one shown of their step" in short and "1 align" in short
    verbose = run_pipeline(*args, "--ploidy", "1", "--dry-run", "--verbose").stdout
    assert "job align-subsample1" in verbose and "job align-subsample2" in verbose
    assert "more job(s)" not in verbose


def test_sigkill_mid_run_then_rerun_finishes_without_rerunning_finished_tasks(tmp_path: Path) -> None:
    outdir, work = tmp_path / "results", tmp_path / "work"
    args = [
        "--input",
        str(DATA / "measles" / "samples.csv"),
        "--fasta",
        str(DATA / "measles" / "MH356245.1.reference.fasta"),
        "--outdir",
        str(outdir),
        "--work-dir",
        str(work),
        "--ploidy",
        "1",
        "--regions",
        "3",
        "--keep-intermediates",
        "--runtime",
        "host",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "genobatch", "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cache = work / "cache"
    deadline = time.monotonic() + 120
    while len(list(cache.glob("*/*/out"))) < 5:  # some tasks done, others not
        assert time.monotonic() < deadline and proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name for p in cache.glob("*/*/out")}
    result = subprocess.run(
        [sys.executable, "-m", "genobatch", "run", *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    rerun_keys = {r["hash"] for r in ran(outdir)}  # Nextflow's short form: ab/cdef12
    assert not {f"{key[:2]}/{key[2:8]}" for key in finished} & rerun_keys, "a task finished before the kill ran again"
    leftovers = subprocess.run(["pgrep", "-f", str(work / "tasks")], capture_output=True, text=True).stdout.split()
    assert leftovers == []
    reference = tmp_path / "reference-run"
    run_pipeline(
        DATA / "measles" / "samples.csv",
        DATA / "measles" / "MH356245.1.reference.fasta",
        reference / "results",
        reference / "work",
        "--ploidy",
        "1",
        "--regions",
        "3",
    )
    for sample in ("SRR7517490", "SRR7517498"):
        assert records(outdir / sample / f"{sample}.vcf.gz") == records(
            reference / "results" / sample / f"{sample}.vcf.gz"
        )


def test_a_failing_tool_fails_its_sample_and_the_others_finish(tmp_path: Path) -> None:
    data = DATA / "sarscov2"
    env = failing_bwa(tmp_path / "bin", "subsample1")  # bwa fails on subsample1's reads
    outdir = tmp_path / "results"
    result = run_pipeline(
        data / "samples.csv", data / "MN908947.3.fa", outdir, tmp_path / "work", "--ploidy", "1", expect=1, env=env
    )
    assert "FAILED: 1 sample(s): subsample1" in result.stderr
    assert "align:subsample1" in result.stderr and "paired reads have different names" in result.stderr
    assert (outdir / "subsample2" / "subsample2.vcf.gz").is_file()
    assert not (outdir / "subsample1").exists(), "nothing of a failed sample is published"
    assert (outdir / "multiqc" / "multiqc_report.html").is_file()
    assert "paired reads have different names" in report(outdir)


def test_lanes_markdup_joint_and_intermediates(tmp_path: Path) -> None:
    """Two lanes of one sample are merged (one read group each); --markdup marks duplicates; --joint calls
    the samples together; intermediates (chunk BAMs, region VCFs) are gone from the cache afterwards."""
    m = DATA / "measles"
    sheet = tmp_path / "samples.csv"
    sheet.write_text(
        "sample,fastq_1,fastq_2\n"
        f"two_lanes,{m / 'SRR7517490_R1.fastq.gz'},{m / 'SRR7517490_R2.fastq.gz'}\n"
        f"two_lanes,{m / 'SRR7517498_R1.fastq.gz'},{m / 'SRR7517498_R2.fastq.gz'}\n"
        f"single,{m / 'SRR7517490_R1.fastq.gz'},{m / 'SRR7517490_R2.fastq.gz'}\n"
    )
    outdir, work = tmp_path / "results", tmp_path / "work"
    run_pipeline(
        sheet, m / "MH356245.1.reference.fasta", outdir, work, "--ploidy", "1", "--regions", "2", "--markdup", "--joint"
    )
    bam = outdir / "two_lanes" / "two_lanes.bam"
    header = subprocess.run(["samtools", "view", "-H", str(bam)], capture_output=True, text=True, check=True).stdout
    assert [line.split("\t")[1] for line in header.splitlines() if line.startswith("@RG")] == [
        "ID:two_lanes.1",
        "ID:two_lanes.2",
    ]
    flagstat = (outdir / "two_lanes" / "stats" / "two_lanes.flagstat.txt").read_text()
    duplicates = int(next(line for line in flagstat.splitlines() if "duplicates" in line).split()[0])
    assert duplicates > 0, "amplicon reads carry duplicates once marked"
    joint = subprocess.run(
        ["bcftools", "query", "-l", str(outdir / "joint" / "joint.vcf.gz")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert joint == ["two_lanes", "single"]
    joint_header = subprocess.run(
        ["bcftools", "view", "-h", str(outdir / "joint" / "joint.vcf.gz")], capture_output=True, text=True, check=True
    ).stdout
    assert f"##reference=file://{(m / 'MH356245.1.reference.fasta').resolve()}\n" in joint_header
    assert "##source=genobatch-" in joint_header, joint_header
    assert "##genobatchCommand=genobatch run --ploidy 1 --tools markdup,joint; Version=" in joint_header, joint_header
    assert "SN\t0\tnumber of samples:\t2\n" in (outdir / "joint" / "joint.bcftools_stats.txt").read_text()
    in_multiqc = (outdir / "multiqc" / "multiqc_data" / "multiqc_bcftools_stats.txt").read_text().splitlines()
    assert any(line.startswith("joint\t") for line in in_multiqc), in_multiqc[:5]
    left = {json_step(p) for p in (work / "cache").glob("*/*/out")}
    assert not [p for p in (work / "cache").glob("*/*") if not (p / "out").is_dir()], "an intermediate's directory"
    assert "align" not in left and "call" not in left, f"intermediates kept: {left}"
    assert "merge" in left and "concat" in left


def json_step(entry: Path) -> str:
    import json

    step: str = json.loads((entry / ".task.json").read_text())["step"]
    return step
