"""``genobatch run``: the germline pipeline (nf-core conventions: --input sample sheet, --fasta, --outdir)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from genobatch.batch import ClientException
from genobatch.pipeline.execute import Options, Run
from genobatch.pipeline.germline import Params
from genobatch.pipeline.inputs import InputError
from genobatch.pipeline.runtimes import CHOICES

EXIT_BAD_INPUT = 2


def memory_mib(text: str) -> int:
    """``8000`` (MiB), ``8GB``/``8G``/``8.GB`` (Nextflow style) or ``512MB``."""
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*\.?\s*([KMGT]?i?B?)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size: use e.g. 16GB or 4000 (MiB)")
    unit = (match.group(2) or "M").upper()[:1]
    factor = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "B": 1 / 2**20}[unit]
    return max(4, int(float(match.group(1)) * factor))


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    run = subparsers.add_parser(
        "run",
        parents=[common],
        help="run the germline pipeline (FASTQ -> QC, BAM, VCF)",
        description="FASTQ samples + a reference in; per sample QC, an indexed BAM and a VCF "
        "out, run as batch jobs. Finished work is reused (resume is the default).",
    )
    run.add_argument("--input", required=True, help="nf-core sample sheet (sample,fastq_1,fastq_2); path or s3://")
    run.add_argument("--fasta", required=True, help="reference FASTA (plain or gzip); path or s3://")
    run.add_argument("--outdir", required=True, help="results directory, or an s3:// URI")
    run.add_argument("--work-dir", type=Path, default=Path("work"), help="cache, engine state, logs (default ./work)")
    run.add_argument("--ploidy", type=int, default=2, help="1 (haploid) or 2 (diploid, default)")
    run.add_argument("--max-cpus", type=int, help="vCPUs the run may use (default: all)")
    run.add_argument("--max-memory", type=memory_mib, help="memory the run may use, e.g. 16GB (default: all)")
    run.add_argument("--chunk-reads", type=int, default=Params.chunk_reads, help="reads per alignment chunk")
    run.add_argument("--regions", type=int, default=0, help="variant-calling regions (default: one per Mb, up to 8)")
    run.add_argument("--max-depth", type=int, help="bcftools mpileup -d (default: bcftools' own, 250)")
    run.add_argument("--markdup", action="store_true", help="mark duplicates (samtools fixmate + markdup)")
    run.add_argument("--joint", action="store_true", help="also call all samples together into joint/joint.vcf.gz")
    run.add_argument("--dry-run", action="store_true", help="print the plan (jobs, resources, cache) and stop")
    run.add_argument("--explain", action="store_true", help="say why each task that will run is not cached")
    run.add_argument("--keep-intermediates", action="store_true", help="keep chunk BAMs and region VCFs")
    run.add_argument(
        "--runtime",
        choices=CHOICES,
        default="auto",
        help="where jobs run: host tools, or the tool images with podman/docker (default auto: podman or docker "
        "if it works and `genobatch images build` has built the images, else the host)",
    )
    run.add_argument(
        "--backend",
        choices=("local", "awsbatch"),
        default="local",
        help="local: this machine's engine (default); awsbatch: AWS Batch on a stack made by `genobatch aws up`",
    )
    run.add_argument("--aws-stack", metavar="NAME", help="the stack for --backend awsbatch (genobatch aws up --name)")
    run.add_argument("--endpoint-url", help="another AWS endpoint for S3 and Batch (default: $AWS_ENDPOINT_URL)")
    run.add_argument("-resume", "--resume", action="store_true", help="accepted for Nextflow users: always on")


def run(args: argparse.Namespace) -> int:
    if args.chunk_reads < 1 or args.regions < 0:
        print("genobatch: error: --chunk-reads must be >= 1 and --regions >= 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    vcpus = args.max_cpus or len(os.sched_getaffinity(0))
    params = Params(
        ploidy=args.ploidy,
        chunk_reads=args.chunk_reads,
        regions=args.regions,
        max_depth=args.max_depth,
        markdup=args.markdup,
        joint=args.joint,
        vcpus=vcpus,
    )
    options = Options(
        args.input,
        args.fasta,
        args.outdir,
        args.work_dir,
        params,
        args.max_cpus,
        args.max_memory,
        args.dry_run,
        args.explain,
        args.keep_intermediates,
        runtime=args.runtime,
        backend=args.backend,
        aws_stack=args.aws_stack,
        endpoint_url=args.endpoint_url,
    )
    try:
        return Run(options).execute()
    except InputError as exc:
        print("genobatch: error: the input is not usable; nothing was run:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ClientException as exc:  # e.g. --max-cpus above what this machine has
        print(f"genobatch: error: {exc}; nothing was run", file=sys.stderr)
        return EXIT_BAD_INPUT
