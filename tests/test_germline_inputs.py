"""Bad input is refused before any compute: exit 2, a message naming the file and line and the fix. The corpus of bad
sample sheets, FASTQ files and references is tests/test_bad_inputs_files.py."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from .pipeline_helpers import DATA, needs_tools, run_pipeline

pytestmark = needs_tools
SARS = DATA / "sarscov2"


def sheet(folder: Path, *rows: str) -> Path:
    path = folder / "samples.csv"
    path.write_text("sample,fastq_1,fastq_2\n" + "".join(f"{row}\n" for row in rows))
    return path


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = sheet(tmp_path, "bad name,x.fq,", "ok,missing.fq,", "ok2,missing2.fq,")
    result = run_pipeline(path, SARS / "MN908947.3.fa", tmp_path / "results", tmp_path / "work", expect=2)
    assert "samples.csv:2:" in result.stderr and "samples.csv:3:" in result.stderr
    assert "samples.csv:4:" in result.stderr


def test_unsupported_ploidy_and_crlf_gzip_reference(tmp_path: Path) -> None:
    result = run_pipeline(
        SARS / "samples.csv", SARS / "MN908947.3.fa", tmp_path / "r", tmp_path / "w", "--ploidy", "3", expect=2
    )
    assert "ploidy 3 is not supported" in result.stderr
    crlf = tmp_path / "ref.fa.gz"  # gzip + Windows line endings are accepted
    crlf.write_bytes(gzip.compress((SARS / "MN908947.3.fa").read_bytes().replace(b"\n", b"\r\n")))
    shutil.copytree(SARS, tmp_path / "data")
    dry = run_pipeline(
        tmp_path / "data" / "samples.csv", crlf, tmp_path / "r", tmp_path / "w", "--ploidy", "1", "--dry-run"
    )
    assert "reference" in dry.stdout
