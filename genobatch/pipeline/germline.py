"""The germline workflow: FASTQ + reference -> per sample QC, an indexed BAM and a VCF, as a graph of tasks.

reference (bwa index, faidx) ──┐
FASTQ ─> [split into chunks] ─> align each chunk (bwa mem | samtools sort) ─> merge + index ─┐
FASTQ ─> FastQC                                                        BAM stats ─┐          ├─> MultiQC
                              call each region (mpileup | call | keep region) ─> concat + index ─> VCF stats ┘

Scattering must not change results (tests/test_germline.py compares with the plain by-hand pipeline):
- bwa mem estimates insert sizes per batch of reads (10 Mb, its default for one thread; ``-K`` keeps it so
  at any thread count). Chunks are cut only at bwa's batch boundaries (inputs.bwa_batches): cutting elsewhere
  changed insert-size estimates, proper-pair flags and so mpileup's counts (measured on the measles data).
- bcftools mpileup gives different annotations (DP, AD, VDB...) to records near the start of a ``-r``
  region than a whole-genome run does: measured on the measles data, records within ~2 kb of a boundary
  differed. Each region is therefore read with ``CALL_PADDING`` bases before it, and only records inside
  the region are kept (``bcftools view -t``). Padding is dropped at contig starts.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from .inputs import Sample
from .tasks import Pipe, Task

CALL_PADDING = 10_000
BWA_BATCH_BASES = 10_000_000


@dataclass(frozen=True)
class Params:
    ploidy: int = 2
    chunk_reads: int = 500_000  # read pairs (or reads) per alignment chunk
    regions: int = 0  # variant-calling regions over the whole reference (0: one per Mb, at most 8)
    max_depth: int | None = None  # bcftools mpileup -d (bcftools' default when None)
    markdup: bool = False
    joint: bool = False
    align_vcpus: int = 0  # bwa threads per chunk; 0: chosen from the number of chunks (see align_threads)
    vcpus: int = 2  # what the run may use (--max-cpus, else this machine's)


@dataclass
class Published:
    """Where a task's outputs go in the outdir (output file name -> path relative to the outdir)."""

    task: str
    files: dict[str, str]


def mpileup_argv(params: Params, bams: list[str], region: str | None = None) -> list[str]:
    """``bcftools mpileup -a AD,DP`` as the by-hand pipeline runs it (plus the run's depth and region)."""
    depth = ["-d", str(params.max_depth)] if params.max_depth else []
    where = ["-r", region] if region else []
    return ["bcftools", "mpileup", *depth, "-f", "{in:reference}/ref.fa", "-a", "AD,DP", *where, "-Ou", *bams]


def call_argv(params: Params, *output: str) -> list[str]:
    """``bcftools call -mv`` with the run's ploidy (bcftools' default is diploid)."""
    return ["bcftools", "call", "-mv", *(["--ploidy", "1"] if params.ploidy == 1 else []), *output]


def split_regions(contigs: list[tuple[str, int]], count: int) -> list[tuple[str, int, int]]:
    """About ``count`` regions of similar length, never crossing a contig; 1-based inclusive coordinates."""
    total = sum(length for _, length in contigs)
    size = max(1, math.ceil(total / max(1, count)))
    regions = []
    for name, length in contigs:
        for start in range(1, length + 1, size):
            regions.append((name, start, min(start + size - 1, length)))
    return regions


def align_threads(params: Params, chunks_of: dict[Path, list[int]]) -> int:
    """bwa's threads per chunk. With at least as many chunks as vCPUs, chunks give the parallelism and one
    thread each packs best (bwa -t 2 on a small chunk used ~1.3 of its 2 vCPUs); with fewer, threads do."""
    if params.align_vcpus:
        return params.align_vcpus
    chunks = sum(len(sizes) for sizes in chunks_of.values())
    return 1 if chunks >= params.vcpus else max(1, min(4, params.vcpus // max(1, chunks)))


def build(
    samples: list[Sample], fasta: Path, contigs: list[tuple[str, int]], chunks_of: dict[Path, list[int]], params: Params
) -> tuple[list[Task], list[Published]]:
    """``chunks_of`` gives, per lane (by its fastq_1), the reads in each alignment chunk (inputs.chunk_sizes)."""
    tasks: list[Task] = []
    published: list[Published] = []
    ref = Task(
        "reference",
        "reference",
        None,
        builtin={"op": "copy_reference", "source": "{file:0}"},
        files=[fasta],
        tools=["bwa", "samtools"],
        vcpus=1,
        memory_mib=2048,
        pipes=[Pipe([["bwa", "index", "{out}/ref.fa"]]), Pipe([["samtools", "faidx", "{out}/ref.fa"]])],
        outputs=["ref.fa", "ref.fa.fai", "ref.fa.bwt", "ref.fa.pac", "ref.fa.sa", "ref.fa.ann", "ref.fa.amb"],
    )
    tasks.append(ref)
    total = sum(length for _, length in contigs)
    regions = split_regions(contigs, params.regions or max(1, min(8, math.ceil(total / 1_000_000))))

    for sample in samples:
        s = sample.name
        chunk_bams: list[str] = []
        for lane_number, lane in enumerate(sample.lanes, start=1):
            fastqs = [p for p in (lane.fastq_1, lane.fastq_2) if p is not None]
            for fastq in fastqs:
                stem = fastq.name.removesuffix(".gz").removesuffix(".fastq").removesuffix(".fq")
                qc = Task(
                    f"fastqc:{s}:{lane_number}:{fastq.name}",
                    "fastqc",
                    s,
                    files=[fastq],
                    tools=["fastqc"],
                    pipes=[
                        Pipe(
                            [["fastqc", "--quiet", "--threads", "1", "--outdir", "{out}", "--dir", "{out}", "{file:0}"]]
                        )
                    ],
                    outputs=[f"{stem}_fastqc.html", f"{stem}_fastqc.zip"],
                    vcpus=1,
                    memory_mib=1024,
                )
                tasks.append(qc)
                published.append(Published(qc.name, {name: f"{s}/fastqc/{name}" for name in qc.outputs}))
            sizes = chunks_of[lane.fastq_1]
            chunks = len(sizes)
            sources: list[tuple[list[str], list[str], list[Path]]] = []  # (read paths, upstream, files)
            if chunks == 1:
                sources.append(([f"{{file:{i}}}" for i in range(len(fastqs))], [], fastqs))
            else:
                split = Task(
                    f"split:{s}:{lane_number}",
                    "split",
                    s,
                    files=fastqs,
                    intermediate=True,
                    pipes=[],
                    builtin={
                        "op": "split_fastq",
                        "sizes": sizes,
                        "files": [f"{{file:{i}}}" for i in range(len(fastqs))],
                    },
                    outputs=[f"chunk_{c}_R{m}.fastq" for c in range(chunks) for m in range(1, len(fastqs) + 1)],
                    vcpus=1,
                    memory_mib=256,
                )
                tasks.append(split)
                for c in range(chunks):
                    reads = [f"{{in:{split.name}}}/chunk_{c}_R{m}.fastq" for m in range(1, len(fastqs) + 1)]
                    sources.append((reads, [split.name], []))
            read_group = f"@RG\\tID:{s}.{lane_number}\\tSM:{s}\\tPL:ILLUMINA"
            for c, (reads, upstream, files) in enumerate(sources):
                align = Task(
                    f"align:{s}:{lane_number}:{c}",
                    "align",
                    s,
                    upstream=["reference", *upstream],
                    files=files,
                    tools=["bwa", "samtools"],
                    intermediate=True,
                    vcpus=align_threads(params, chunks_of),
                    memory_mib=3072,
                    pipes=[
                        Pipe(
                            [
                                [
                                    "bwa",
                                    "mem",
                                    "-t",
                                    "{threads}",
                                    "-K",
                                    str(BWA_BATCH_BASES),
                                    "-R",
                                    read_group,
                                    "{in:reference}/ref.fa",
                                    *reads,
                                ],
                                ["samtools", "sort", "-m", "512M", "-T", "{out}/sort", "-o", "{out}/aligned.bam", "-"],
                            ]
                        )
                    ],
                    outputs=["aligned.bam"],
                )
                tasks.append(align)
                chunk_bams.append(align.name)

        bam = f"{{out}}/{s}.bam"
        inputs = [f"{{in:{name}}}/aligned.bam" for name in chunk_bams]
        if params.markdup:
            merge_pipes = [
                Pipe(
                    [
                        ["samtools", "merge", "-u", "-o", "-", *inputs],
                        ["samtools", "collate", "-O", "-u", "-", "{out}/collate"],
                        ["samtools", "fixmate", "-m", "-u", "-", "-"],
                        ["samtools", "sort", "-u", "-T", "{out}/sort", "-"],
                        ["samtools", "markdup", "-T", "{out}/markdup", "-", bam],
                    ]
                )
            ]
        else:
            merge_pipes = [Pipe([["samtools", "merge", "-f", "-@", "{threads}", "-o", bam, *inputs]])]
        merge = Task(
            f"merge:{s}",
            "merge",
            s,
            upstream=chunk_bams,
            tools=["samtools"],
            vcpus=min(2, params.vcpus),  # alone on the critical path: compress with 2 threads
            memory_mib=2048,
            pipes=[*merge_pipes, Pipe([["samtools", "index", "-@", "{threads}", bam]])],
            outputs=[f"{s}.bam", f"{s}.bam.bai"],
        )
        tasks.append(merge)
        published.append(Published(merge.name, {f"{s}.bam": f"{s}/{s}.bam", f"{s}.bam.bai": f"{s}/{s}.bam.bai"}))

        parts = []
        for r, (contig, start, end) in enumerate(regions):
            padded = f"{contig}:{max(1, start - CALL_PADDING)}-{end}"
            call = Task(
                f"call:{s}:{r}",
                "call",
                s,
                upstream=["reference", merge.name],
                tools=["bcftools"],
                intermediate=True,
                vcpus=1,
                memory_mib=1024,
                outputs=["part.vcf.gz"],
                pipes=[
                    Pipe(
                        [
                            mpileup_argv(params, [f"{{in:{merge.name}}}/{s}.bam"], padded),
                            call_argv(params, "-Ou"),
                            ["bcftools", "view", "-t", f"{contig}:{start}-{end}", "-Oz", "-o", "{out}/part.vcf.gz"],
                        ]
                    )
                ],
            )
            tasks.append(call)
            parts.append(call.name)
        vcf = f"{{out}}/{s}.vcf.gz"
        concat = Task(
            f"concat:{s}",
            "concat",
            s,
            upstream=parts,
            tools=["bcftools"],
            vcpus=1,
            memory_mib=512,
            pipes=[
                Pipe([["bcftools", "concat", "-Oz", "-o", vcf, *[f"{{in:{p}}}/part.vcf.gz" for p in parts]]]),
                Pipe([["bcftools", "index", "-t", vcf]]),
            ],
            outputs=[f"{s}.vcf.gz", f"{s}.vcf.gz.tbi"],
        )
        tasks.append(concat)
        published.append(
            Published(concat.name, {f"{s}.vcf.gz": f"{s}/{s}.vcf.gz", f"{s}.vcf.gz.tbi": f"{s}/{s}.vcf.gz.tbi"})
        )

        # BAM statistics need only the BAM, so they run while variants are called.
        bam_stats = Task(
            f"bamstats:{s}",
            "bamstats",
            s,
            upstream=[merge.name],
            tools=["samtools"],
            vcpus=1,
            memory_mib=512,
            pipes=[
                Pipe([["samtools", "flagstat", f"{{in:{merge.name}}}/{s}.bam"]], stdout=f"{s}.flagstat.txt"),
                Pipe([["samtools", "stats", f"{{in:{merge.name}}}/{s}.bam"]], stdout=f"{s}.stats.txt"),
            ],
            outputs=[f"{s}.flagstat.txt", f"{s}.stats.txt"],
        )
        vcf_stats = Task(
            f"vcfstats:{s}",
            "vcfstats",
            s,
            upstream=[concat.name],
            tools=["bcftools"],
            vcpus=1,
            memory_mib=512,
            pipes=[Pipe([["bcftools", "stats", f"{{in:{concat.name}}}/{s}.vcf.gz"]], stdout=f"{s}.bcftools_stats.txt")],
            outputs=[f"{s}.bcftools_stats.txt"],
        )
        for stats in (bam_stats, vcf_stats):
            tasks.append(stats)
            published.append(Published(stats.name, {name: f"{s}/stats/{name}" for name in stats.outputs}))

    return tasks, published


def build_summary(sample_tasks: list[Task], params: Params) -> tuple[list[Task], list[Published]]:
    """MultiQC over the given (successful) samples' QC, and optionally their joint VCF. Built at the end of a
    run, so that one failed sample does not keep the others out of the report."""
    stats_tasks = [t.name for t in sample_tasks if t.step in ("fastqc", "bamstats", "vcfstats")]
    bams = [t.name for t in sample_tasks if t.step == "merge"]
    tasks: list[Task] = []
    published: list[Published] = []
    multiqc = Task(
        "multiqc",
        "multiqc",
        None,
        upstream=stats_tasks,
        tools=["multiqc"],
        vcpus=1,
        memory_mib=2048,
        pipes=[
            Pipe(
                [
                    [
                        sys.executable,
                        "-m",
                        "multiqc",
                        "--quiet",
                        "--no-ansi",
                        "--force",
                        "--outdir",
                        "{out}",
                        "--filename",
                        "multiqc_report.html",
                        *[f"{{in:{n}}}" for n in stats_tasks],
                    ]
                ]
            )
        ],
        outputs=["multiqc_report.html"],
    )
    tasks.append(multiqc)
    published.append(Published(multiqc.name, {"multiqc_report.html": "multiqc/multiqc_report.html"}))
    if params.joint and len(bams) > 1:
        joint = Task(
            "joint",
            "joint",
            None,
            upstream=["reference", *bams],
            tools=["bcftools"],
            vcpus=1,
            memory_mib=2048,
            pipes=[
                Pipe(
                    [
                        mpileup_argv(params, [f"{{in:{b}}}/{b.split(':', 1)[1]}.bam" for b in bams]),
                        call_argv(params, "-Oz", "-o", "{out}/joint.vcf.gz"),
                    ]
                ),
                Pipe([["bcftools", "index", "-t", "{out}/joint.vcf.gz"]]),
            ],
            outputs=["joint.vcf.gz", "joint.vcf.gz.tbi"],
        )
        tasks.append(joint)
        published.append(
            Published(joint.name, {"joint.vcf.gz": "joint/joint.vcf.gz", "joint.vcf.gz.tbi": "joint/joint.vcf.gz.tbi"})
        )
    return tasks, published
