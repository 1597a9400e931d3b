"""End to end on AWS Batch, as moto serves it on loopback with jobs in podman: ``genobatch run --executor
awsbatch`` on the SARS-CoV-2 demo samples writes VCFs to S3 whose records equal a local run's."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3

from .aws_helpers import MotoServer, moto_server, prepare_stack  # noqa: F401 - the fixture
from .pipeline_helpers import DATA, DATASETS, needs_tools, records, run_pipeline
from .test_user_steps import STEPS


def newest_key(s3: Any, bucket: str, prefix: str) -> str:
    """The last run's file under ``prefix`` (run files are named by their start time)."""
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))
    assert keys, f"nothing under s3://{bucket}/{prefix}"
    return keys[-1]


def s3_trace(s3: Any, bucket: str, outdir: str, tmp_path: Path) -> list[dict[str, str]]:
    trace = tmp_path / "trace.txt"
    s3.download_file(bucket, newest_key(s3, bucket, f"{outdir}/pipeline_info/execution_trace_"), str(trace))
    with open(trace) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@needs_tools
def test_germline_pipeline_on_aws_batch_equals_the_local_run(moto_server: MotoServer, tmp_path: Path) -> None:  # noqa: F811
    infra = prepare_stack(moto_server, "e2e")
    sheet, fasta = DATA / "sarscov2" / "samples.csv", DATA / "sarscov2" / DATASETS["sarscov2"][0]
    local = tmp_path / "local"
    run_pipeline(sheet, fasta, local, tmp_path / "work-local", "--ploidy", "1")
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint)
    for path in (DATA / "sarscov2").iterdir():  # inputs in S3 too: the sheet's relative paths resolve there
        s3.upload_file(str(path), infra.names.bucket, f"data/sarscov2/{path.name}")
    sheet_uri = f"s3://{infra.names.bucket}/data/sarscov2/samples.csv"
    fasta_uri = f"s3://{infra.names.bucket}/data/sarscov2/{fasta.name}"
    results = f"s3://{infra.names.bucket}/results"
    aws_args = ["--ploidy", "1", "--executor", "awsbatch", "--aws-stack", "e2e", "--endpoint-url", moto_server.endpoint]
    dry = run_pipeline(sheet_uri, fasta_uri, results, tmp_path / "work-aws", *aws_args, "--dry-run")
    assert "Estimated compute:" in dry.stdout and "c6i: on-demand $" in dry.stdout and "spot about $" in dry.stdout
    run = run_pipeline(sheet_uri, fasta_uri, results, tmp_path / "work-aws", *aws_args)
    assert "18 task(s) ran" in run.stdout, run.stdout
    report = tmp_path / "report.html"

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=infra.names.bucket, Prefix="results/")["Contents"]]
    vcfs = sorted(k for k in keys if k.endswith(".vcf.gz"))
    assert [Path(k).name for k in vcfs] == ["subsample1.vcf.gz", "subsample2.vcf.gz"]
    for key in vcfs:
        downloaded = tmp_path / "from-s3" / Path(key).name
        downloaded.parent.mkdir(exist_ok=True)
        s3.download_file(infra.names.bucket, key, str(downloaded))
        assert records(downloaded) == records(local / key.split("/", 1)[1]), key
    assert "results/multiqc/multiqc_report.html" in keys

    rows = [r for r in s3_trace(s3, infra.names.bucket, "results", tmp_path) if r["status"] == "COMPLETED"]
    for row in rows:
        assert row["runtime"] == "awsbatch", row  # MultiQC too, in its image
        assert row["container"].startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/genobatch-e2e/"), row
    report_key = newest_key(s3, infra.names.bucket, "results/pipeline_info/execution_report_")
    s3.download_file(infra.names.bucket, report_key, str(report))
    assert "vCPU-hours (run time x vCPUs" in report.read_text()
    align = next(r for r in rows if r["step"] == "align")
    command = ["aws", "logs", "--name", "e2e", align["native_id"], "--endpoint-url", moto_server.endpoint]
    logs = subprocess.run(
        [sys.executable, "-m", "genobatch", *command],
        capture_output=True,
        text=True,
    )
    assert logs.returncode == 0 and "--- attempt 1" in logs.stdout and "[M::" in logs.stdout, logs.stdout[-2000:]
    # A local run publishes to S3 as well (here from its cache: nothing runs again).
    to_s3 = run_pipeline(sheet, fasta, f"s3://{infra.names.bucket}/local", tmp_path / "work-local", "--ploidy", "1")
    assert "0 task(s) ran" in to_s3.stdout
    s3.head_object(Bucket=infra.names.bucket, Key="local/subsample1/subsample1.vcf.gz")
    assert newest_key(s3, infra.names.bucket, "local/pipeline_info/execution_trace_").endswith(".txt")
    fetched = list((tmp_path / "work-aws" / "inputs" / "s3").rglob("*"))
    assert len([p for p in fetched if p.is_file()]) == 7, "the sheet and its local rewrite, 4 FASTQ, the reference"
    # Resume: everything is cached in S3, nothing runs again; the inputs are not downloaded again.
    again = run_pipeline(sheet_uri, fasta_uri, results, tmp_path / "work-aws", *aws_args)
    assert "0 task(s) ran" in again.stdout


@needs_tools
def test_optional_and_user_steps_on_aws_batch_equal_the_local_run(moto_server: MotoServer, tmp_path: Path) -> None:  # noqa: F811
    """The measles demo with every optional step and a user's own step (from a folder of theirs) on moto's
    Batch, jobs in the tool images: VCFs equal to a local run's, the user's output published in S3."""
    infra = prepare_stack(moto_server, "e2e")
    steps = tmp_path / "my-steps"
    steps.mkdir()
    (steps / "idxstats.yaml").write_text(STEPS["idxstats.yaml"])
    measles = DATA / "measles"
    sheet, fasta = measles / "samples.csv", measles / "MH356245.1.reference.fasta"
    tools = "fastp,markdup,mosdepth,freebayes"
    common = ["--ploidy", "1", "--regions", "2", "--tools", tools, "--steps", str(steps)]
    local = tmp_path / "local"
    run_pipeline(sheet, fasta, local, tmp_path / "work-local", *common)
    results = f"s3://{infra.names.bucket}/measles"
    aws_args = ["--executor", "awsbatch", "--aws-stack", "e2e", "--endpoint-url", moto_server.endpoint]
    run = run_pipeline(sheet, fasta, results, tmp_path / "work-aws", *common, *aws_args)
    assert "task(s) ran" in run.stdout, run.stdout
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=infra.names.bucket, Prefix="measles/")["Contents"]}
    for sample in ("SRR7517490", "SRR7517498"):
        for name in (f"{sample}.vcf.gz", f"{sample}.freebayes.vcf.gz"):
            downloaded = tmp_path / "from-s3" / name
            downloaded.parent.mkdir(exist_ok=True)
            s3.download_file(infra.names.bucket, f"measles/{sample}/{name}", str(downloaded))
            assert records(downloaded) == records(local / sample / name), name
        assert f"measles/{sample}/idxstats/{sample}.idxstats" in keys
        assert f"measles/{sample}/fastp/{sample}_1.fastp.json" in keys
        assert f"measles/{sample}/mosdepth/{sample}.mosdepth.summary.txt" in keys
    rows = [r for r in s3_trace(s3, infra.names.bucket, "measles", tmp_path) if r["status"] == "COMPLETED"]
    steps_on_batch = ("idxstats", "fastp", "freebayes", "markdup", "mosdepth")
    assert {r["runtime"] for r in rows if r["step"] in steps_on_batch} == {"awsbatch"}
    again = run_pipeline(sheet, fasta, results, tmp_path / "work-aws", *common, *aws_args)
    assert "0 task(s) ran" in again.stdout
