"""Pipeline benchmark: genobatch against its lower bound and against Snakemake, in the same run.

Not a test: prints and saves JSON (``bench/results/pipeline.json``). Needs Debian's dwgsim and snakemake.
Snakemake from PyPI (8 or later) is the second peer: installed on first use into ``bench/.peers/snakemake``
(its own virtualenv, so Debian's 7.21 and the project's venv are untouched); ``--no-pypi-snakemake`` skips it.

    python -m bench.pipeline [--case many|large|both] [--cores 2] [--pairs 618000] [--no-pypi-snakemake]

(a) ``many``: the 4 real samples (measles, SARS-CoV-2) under 8 names each = 32 samples. One workflow needs
    one reference, so both tools use the two virus genomes in one FASTA.
(b) ``large``: one sample simulated by dwgsim from E. coli K-12 (2x150 bp, ~40x by default, haploid), with
    dwgsim's mutations as the truth for SNP precision/recall.

For each case: genobatch's wall time, its lower bound max(critical path, total job CPU / cores) from its own
trace, CPU utilisation, and each Snakemake (``--cores`` the same) running the plain by-hand pipeline; Debian's
once more making the same outputs as genobatch (samtools flagstat and stats, bcftools stats, MultiQC too).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genobatch.pipeline.execute import Options, Run
from genobatch.pipeline.planner import Params

from . import environment, save

ROOT = Path(__file__).resolve().parent.parent
ECOLI = ROOT / "data" / "ecoli" / "GCF_000005845.2_ASM584v2_genomic.fna.gz"
RESULTS = Path(__file__).parent / "results" / "pipeline.json"
PYPI_SNAKEMAKE = Path(__file__).parent / ".peers" / "snakemake"

SNAKEFILE = r"""
import csv
SAMPLES = {r["sample"]: r for r in csv.DictReader(open(config["sheet"]))}
REF = config["ref"]
PLOIDY = "--ploidy 1" if config["ploidy"] == 1 else ""
SAME = config.get("outputs") == "same"  # also the stats and the MultiQC report that genobatch makes

rule all:
    input: expand("out/{s}.vcf.gz.tbi", s=SAMPLES), expand("out/qc/{s}_{m}", s=SAMPLES, m=["1", "2"]),
           ["out/multiqc/multiqc_report.html"] if SAME else []

rule fastqc:
    output: directory("out/qc/{s}_{m}")
    params: fq=lambda w: SAMPLES[w.s]["fastq_" + w.m]
    shell: "mkdir -p {output} && fastqc --quiet --threads 1 --outdir {output} {params.fq}"

rule align:
    output: "out/{s}.bam"
    params: r1=lambda w: SAMPLES[w.s]["fastq_1"], r2=lambda w: SAMPLES[w.s]["fastq_2"]
    threads: 2
    shell: "bwa mem -t {threads} -R '@RG\\tID:{wildcards.s}\\tSM:{wildcards.s}' " + REF + " {params.r1} {params.r2}"
           " | samtools sort -o {output} - && samtools index {output}"

rule call:
    input: "out/{s}.bam"
    output: "out/{s}.vcf.gz"
    shell: "bcftools mpileup -f " + REF + " -a AD,DP {input} | bcftools call -mv " + PLOIDY + " -Oz -o {output}"

rule index_vcf:
    input: "out/{s}.vcf.gz"
    output: "out/{s}.vcf.gz.tbi"
    shell: "bcftools index -t {input}"

rule bamstats:
    input: "out/{s}.bam"
    output: flagstat="out/stats/{s}.flagstat.txt", stats="out/stats/{s}.stats.txt"
    shell: "samtools flagstat {input} > {output.flagstat} && samtools stats {input} > {output.stats}"

rule vcfstats:
    input: "out/{s}.vcf.gz"
    output: "out/stats/{s}.bcftools_stats.txt"
    shell: "bcftools stats {input} > {output}"

rule multiqc:
    input: expand("out/stats/{s}.{kind}.txt", s=SAMPLES, kind=["flagstat", "stats", "bcftools_stats"]),
           expand("out/qc/{s}_{m}", s=SAMPLES, m=["1", "2"])
    output: "out/multiqc/multiqc_report.html"
    shell: "multiqc --quiet --no-ansi --force --outdir out/multiqc {input}"
"""


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def prepare_many(folder: Path) -> tuple[Path, Path]:
    """32 samples over a reference holding both viruses."""
    ref = folder / "viruses.fa"
    ref.write_bytes(
        (ROOT / "data/measles/MH356245.1.reference.fasta").read_bytes().replace(b"\r\n", b"\n")
        + (ROOT / "data/sarscov2/MN908947.3.fa").read_bytes()
    )
    rows = []
    for dataset in ("measles", "sarscov2"):
        for line in (ROOT / "data" / dataset / "samples.csv").read_text().splitlines()[1:]:
            sample, r1, r2 = line.split(",")
            for copy in range(8):
                rows.append(f"{sample}_{copy},{ROOT / 'data' / dataset / r1},{ROOT / 'data' / dataset / r2}")
    sheet = folder / "samples.csv"
    sheet.write_text("sample,fastq_1,fastq_2\n" + "\n".join(rows) + "\n")
    return sheet, ref


def prepare_large(folder: Path, pairs: int) -> tuple[Path, Path, Path]:
    ref = folder / "ecoli.fa"
    with gzip.open(ECOLI) as src, open(ref, "wb") as dst:
        shutil.copyfileobj(src, dst)
    subprocess.run(
        [
            "dwgsim",
            "-H",
            "-N",
            str(pairs),
            "-1",
            "150",
            "-2",
            "150",
            "-e",
            "0.001",
            "-E",
            "0.001",
            "-y",
            "0",
            "-z",
            "42",
            str(ref),
            str(folder / "sim"),
        ],
        check=True,
        capture_output=True,
    )
    for mate in ("1", "2"):
        source = folder / f"sim.bwa.read{mate}.fastq.gz"
        if not source.exists():  # older dwgsim writes plain FASTQ
            with open(folder / f"sim.bwa.read{mate}.fastq", "rb") as raw, gzip.open(source, "wb", 1) as out:
                shutil.copyfileobj(raw, out)
    sheet = folder / "samples.csv"
    sheet.write_text(
        f"sample,fastq_1,fastq_2\necoli,{folder / 'sim.bwa.read1.fastq.gz'},{folder / 'sim.bwa.read2.fastq.gz'}\n"
    )
    return sheet, ref, folder / "sim.mutations.vcf"


def snps(vcf: Path) -> set[tuple[str, int, str]]:
    opener = gzip.open if vcf.suffix == ".gz" else open
    out = set()
    with opener(vcf, "rt") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            chrom, pos, _, ref, alt = line.split("\t")[:5]
            for allele in alt.split(","):
                if len(ref) == 1 and len(allele) == 1 and allele not in ".*":
                    out.add((chrom, int(pos), allele.upper()))
    return out


def critical_path(run: Run) -> float:
    """Longest chain of task realtimes through the task graph (tasks that ran only)."""
    realtime = {row.name: row.realtime_s or 0.0 for row in run.trace if row.status == "COMPLETED"}
    longest: dict[str, float] = {}
    assert run.last_plan is not None
    for task in run.last_plan.tasks:  # dependency order
        before = max((longest.get(up, 0.0) for up in task.upstream), default=0.0)
        longest[task.name] = before + realtime.get(task.name, 0.0)
    return max(longest.values(), default=0.0)


def genobatch_case(sheet: Path, ref: Path, folder: Path, cores: int, ploidy: int) -> tuple[dict[str, Any], Run]:
    run = Run(
        Options(
            sheet,
            ref,
            folder / "results",
            folder / "work",
            Params(ploidy=ploidy),
            max_cpus=cores,
            live_progress=False,
            runtime="host",  # the peers run the host's tools too
        )
    )
    start = time.perf_counter()
    code = run.execute()
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"genobatch run failed: {run.errors}")
    cpu = sum(row.cpu_s or 0.0 for row in run.trace)
    path = critical_path(run)
    bound = max(path, cpu / cores)
    jobs = sum(1 for row in run.trace if row.status == "COMPLETED")
    return {
        "wall_seconds": round(wall, 2),
        "tasks_run": jobs,
        "job_cpu_seconds": round(cpu, 2),
        "critical_path_seconds": round(path, 2),
        "lower_bound_seconds": round(bound, 2),
        "wall_over_lower_bound": round(wall / bound, 3) if bound else None,
        "cpu_utilisation": round(cpu / (wall * cores), 3),
    }, run


def pypi_snakemake() -> Path:
    """Snakemake 8+ from PyPI in its own virtualenv (created once), beside Debian's 7.21."""
    exe = PYPI_SNAKEMAKE / "bin" / "snakemake"
    if not exe.exists():
        subprocess.run(["python3", "-m", "venv", str(PYPI_SNAKEMAKE)], check=True)
        pip = [str(PYPI_SNAKEMAKE / "bin" / "pip"), "install", "--quiet"]
        subprocess.run([*pip, "snakemake>=8"], check=True)
    return exe


def snakemake_version(exe: str | Path) -> str:
    return subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip()


def snakemake_case(
    exe: str | Path, sheet: Path, ref: Path, work: Path, cores: int, ploidy: int, outputs: str = "plain"
) -> float:
    """Snakemake's wall time on the by-hand pipeline (``outputs`` "same": with genobatch's stats and MultiQC)."""
    work.mkdir()
    (work / "Snakefile").write_text(SNAKEFILE)
    local_ref = work / "ref.fa"
    shutil.copyfile(ref, local_ref)
    start = time.perf_counter()  # indexing the reference is part of the by-hand pipeline's time too
    subprocess.run(["bwa", "index", str(local_ref)], check=True, capture_output=True)
    subprocess.run(["samtools", "faidx", str(local_ref)], check=True, capture_output=True)
    command = [str(exe), "--cores", str(cores), "--quiet", "--config"]
    subprocess.run(
        [*command, f"sheet={sheet}", f"ref={local_ref}", f"ploidy={ploidy}", f"outputs={outputs}"],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def peer_results(
    peers: dict[str, Path], sheet: Path, ref: Path, folder: Path, cores: int, wall: float
) -> dict[str, Any]:
    """Each peer's wall time on the same case, and genobatch's wall over it."""
    result: dict[str, Any] = {}
    runs = [(name, exe, "plain") for name, exe in peers.items()]
    if "snakemake" in peers:  # Debian's, once more, making what genobatch makes
        runs.append(("snakemake_same_outputs", peers["snakemake"], "same"))
    for name, exe, outputs in runs:
        seconds = snakemake_case(exe, sheet, ref, folder / name, cores, ploidy=1, outputs=outputs)
        result[f"{name}_seconds"] = round(seconds, 2)
        result[f"wall_over_{name}"] = round(wall / seconds, 3)
    return result


def cases(selected: str) -> Iterator[str]:
    yield from (("many", "large") if selected == "both" else (selected,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("many", "large", "both"), default="both")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=618_000, help="read pairs for the large case (~40x)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-pypi-snakemake", action="store_true", help="compare with Debian's Snakemake only")
    args = parser.parse_args()
    peers: dict[str, Path] = {}
    if debian := shutil.which("snakemake"):
        peers["snakemake"] = Path(debian)
    else:
        print("bench: no Debian snakemake (apt-get install snakemake): only PyPI's is compared", file=sys.stderr)
    if not args.no_pypi_snakemake:
        peers["snakemake_pypi"] = pypi_snakemake()
    report: dict[str, Any] = {
        "benchmark": "pipeline",
        "goals": "wall <= 1.10 x lower bound; wall <= 0.8 x Snakemake (each)",
        "measured_at": time.strftime("%F %T"),
        "cores": args.cores,
        "cases": {},
        "environment": environment(**{name: snakemake_version(exe) for name, exe in peers.items()}),
    }
    with tempfile.TemporaryDirectory(prefix="genobatch-bench-") as tmp:
        for case in cases(args.case):
            folder = Path(tmp) / case
            folder.mkdir()
            truth = None
            if case == "many":
                sheet, ref = prepare_many(folder)
            else:
                sheet, ref, truth = prepare_large(folder, args.pairs)
            result, run = genobatch_case(sheet, ref, folder, args.cores, ploidy=1)
            report["environment"]["tools"] = run.last_plan.versions if run.last_plan else {}
            result.update(peer_results(peers, sheet, ref, folder, args.cores, result["wall_seconds"]))
            if truth is not None:
                called, true = snps(folder / "results" / "ecoli" / "ecoli.vcf.gz"), snps(truth)
                hits = len(called & true)
                result.update(
                    {
                        "truth_snps": len(true),
                        "called_snps": len(called),
                        "snp_precision": round(hits / len(called), 4) if called else None,
                        "snp_recall": round(hits / len(true), 4) if true else None,
                    }
                )
            report["cases"][case] = result
            print(json.dumps({case: result}), flush=True)
    save(report, args.output)


if __name__ == "__main__":
    main()
