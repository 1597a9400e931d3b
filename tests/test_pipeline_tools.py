"""Optional steps with the real tools on the demo data: freebayes equals a by-hand freebayes at any region
count; markdup switched on or off reruns only what follows it; fastp's trimmed reads are cut into chunks
without changing the calls; all of them in the tool images."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .pipeline_helpers import DATA, needs_tools, ran, records, run_pipeline, trace

pytestmark = needs_tools
MEASLES = DATA / "measles"
REFERENCE = MEASLES / "MH356245.1.reference.fasta"
SAMPLES = ("SRR7517490", "SRR7517498")


def by_hand_freebayes(bam: Path, folder: Path) -> list[str]:
    """freebayes on the whole BAM at once, variant sites only (as the step keeps them)."""
    ref = folder / "ref.fa"
    if not ref.exists():
        shutil.copyfile(REFERENCE, ref)
        subprocess.run(["samtools", "faidx", str(ref)], check=True)
    script = 'freebayes -f "$1" -p 1 "$2" | bcftools view -H -c 1'
    out = subprocess.run(["sh", "-c", script, "sh", str(ref), str(bam)], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_freebayes_records_equal_a_by_hand_freebayes_at_several_region_counts(tmp_path: Path) -> None:
    outdir, work = tmp_path / "results", tmp_path / "work"
    expected: dict[str, list[str]] = {}
    for regions in (1, 3, 7):
        args = ("--ploidy", "1", "--tools", "freebayes", "--regions", str(regions))
        run_pipeline(MEASLES / "samples.csv", REFERENCE, outdir, work, *args)
        rows = ran(outdir)
        assert len([r for r in rows if r["step"] == "freebayes" and r["sample"] == SAMPLES[0]]) == regions
        if regions > 1:
            assert not {r["step"] for r in rows} & {"align", "merge", "fastqc"}, "regions change calling only"
        for sample in SAMPLES:
            if sample not in expected:
                expected[sample] = by_hand_freebayes(outdir / sample / f"{sample}.bam", tmp_path)
                assert len(expected[sample]) > 200
            assert records(outdir / sample / f"{sample}.freebayes.vcf.gz") == expected[sample], (sample, regions)
            assert (outdir / sample / f"{sample}.freebayes.vcf.gz.tbi").is_file()
            assert (outdir / sample / "stats" / f"{sample}.freebayes.bcftools_stats.txt").is_file()
            assert (outdir / sample / f"{sample}.vcf.gz").is_file(), "bcftools' calls are still there"


def test_markdup_switched_on_or_off_reruns_only_markdup_and_what_follows(tmp_path: Path) -> None:
    outdir, work = tmp_path / "results", tmp_path / "work"
    args = (MEASLES / "samples.csv", REFERENCE, outdir, work, "--ploidy", "1", "--regions", "2")
    run_pipeline(*args)
    plain_bam = (outdir / SAMPLES[0] / f"{SAMPLES[0]}.bam").read_bytes()
    run_pipeline(*args, "--markdup")
    assert {r["step"] for r in ran(outdir)} == {"markdup", "bamstats", "call", "concat", "vcfstats", "multiqc"}
    flagstat = (outdir / SAMPLES[0] / "stats" / f"{SAMPLES[0]}.flagstat.txt").read_text()
    assert int(next(line for line in flagstat.splitlines() if "duplicates" in line).split()[0]) > 0
    header = subprocess.run(
        ["samtools", "view", "-H", str(outdir / SAMPLES[0] / f"{SAMPLES[0]}.bam")], capture_output=True, text=True
    ).stdout
    assert "samtools markdup" in header, "the published BAM is markdup's"
    again = run_pipeline(*args, "--tools", "markdup")
    assert ran(outdir) == [] and "Nothing to run" in again.stdout, "--markdup is --tools markdup"
    run_pipeline(*args)
    assert ran(outdir) == [], "off again: every task of the first run is still cached"
    assert (outdir / SAMPLES[0] / f"{SAMPLES[0]}.bam").read_bytes() == plain_bam


def test_trimmed_reads_cut_into_chunks_give_the_same_calls(tmp_path: Path) -> None:
    """fastp's reads are cut at bwa's batches when the alignment task runs (they do not exist at planning)."""
    sheet = tmp_path / "samples.csv"
    combined = [tmp_path / f"combined_{m}.fastq.gz" for m in ("R1", "R2")]
    for path, mate in zip(combined, ("R1", "R2"), strict=True):  # ~13 Mb: two bwa batches
        path.write_bytes(b"".join((MEASLES / f"{run}_{mate}.fastq.gz").read_bytes() for run in SAMPLES))
    sheet.write_text(f"sample,fastq_1,fastq_2\ncombined,{combined[0]},{combined[1]}\n")
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    common = ("--ploidy", "1", "--tools", "fastp", "--regions", "2")
    run_pipeline(sheet, REFERENCE, whole / "results", whole / "work", *common)
    run_pipeline(sheet, REFERENCE, chunked / "results", chunked / "work", *common, "--chunk-reads", "1")
    aligned = [r for r in trace(chunked / "results") if r["step"] == "align"]
    assert len(aligned) == 2, "the trimmed reads were aligned in two chunks"
    vcf = Path("combined") / "combined.vcf.gz"
    assert records(chunked / "results" / vcf) == records(whole / "results" / vcf)
    assert (whole / "results" / "combined" / "fastp" / "combined_1.fastp.json").is_file()
    report = (whole / "results" / "multiqc" / "multiqc_report.html").read_text()
    assert "fastp" in report.lower()


@pytest.mark.slow
def test_all_optional_steps_in_the_tool_images(podman: None, tmp_path: Path) -> None:
    outdir = tmp_path / "results"
    tools = "fastp,markdup,freebayes,mosdepth"
    result = run_pipeline(
        MEASLES / "samples.csv", REFERENCE, outdir, tmp_path / "work", "--ploidy", "1", "--tools", tools,
        "--regions", "3", "--runtime", "podman",
    )  # fmt: skip
    assert "Runtime: podman" in result.stdout
    rows = [r for r in trace(outdir) if r["status"] == "COMPLETED"]
    images = {r["step"]: r["container"].rsplit("/", 1)[-1].split(":")[0] for r in rows if r["runtime"] == "podman"}
    assert images["fastp"] == "fastp" and images["freebayes"] == "freebayes" and images["markdup"] == "samtools"
    assert images["mosdepth"] == "mosdepth"
    report = (outdir / "multiqc" / "multiqc_report.html").read_text()
    assert 'id="mosdepth' in report and 'id="fastp' in report
    assert images["multiqc"] == "multiqc", "MultiQC runs in its own image"
    for sample in SAMPLES:
        outputs = (f"{sample}.freebayes.vcf.gz", f"fastp/{sample}_1.fastp.json", f"{sample}.bam.bai")
        for path in (*outputs, f"mosdepth/{sample}.mosdepth.summary.txt"):
            assert (outdir / sample / path).is_file(), path
    host = tmp_path / "host"
    run_pipeline(
        MEASLES / "samples.csv", REFERENCE, host / "results", host / "work", "--ploidy", "1", "--tools", tools,
        "--regions", "3",
    )  # fmt: skip
    for sample in SAMPLES:
        for vcf in (f"{sample}.vcf.gz", f"{sample}.freebayes.vcf.gz"):
            assert records(outdir / sample / vcf) == records(host / "results" / sample / vcf), vcf
