"""Bad input is refused before any compute: exit 2, a message naming the file and line and the fix."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .pipeline_helpers import DATA, needs_tools, run_pipeline

pytestmark = needs_tools
SARS = DATA / "sarscov2"


def fastq(path: Path, names: list[str], compress: bool = True) -> Path:
    text = "".join(f"@{name}\nACGTACGTAC\n+\nIIIIIIIIII\n" for name in names).encode()
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


def put(path: Path, data: bytes) -> None:
    """Write a file and return None, so that ``put(...) or sheet(...)`` reads as "then"."""
    path.write_bytes(data)


def sheet(folder: Path, *rows: str) -> Path:
    path = folder / "samples.csv"
    path.write_text("sample,fastq_1,fastq_2\n" + "".join(f"{row}\n" for row in rows))
    return path


def good_pair(folder: Path, name: str = "a") -> str:
    fastq(folder / f"{name}_1.fq.gz", [f"r{i}/1" for i in range(5)])
    fastq(folder / f"{name}_2.fq.gz", [f"r{i}/2" for i in range(5)])
    return f"{name}_1.fq.gz,{name}_2.fq.gz"


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing sheet": (lambda d: d / "nope.csv", "nope.csv: cannot read the sample sheet"),
    "wrong header": (
        lambda d: put(d / "s.csv", b"id,r1,r2\n") or d / "s.csv",
        "s.csv:1: the header must have the columns sample, fastq_1, fastq_2",
    ),
    "not UTF-8": (
        lambda d: put(d / "s.csv", f"sample,fastq_1,fastq_2\nb\xe9,{good_pair(d)}\n".encode("latin-1")) or d / "s.csv",
        "s.csv:2: the sample sheet is not UTF-8 text",
    ),
    "read group value": (
        lambda d: put(d / "s.csv", f"sample,lane,fastq_1,fastq_2\na,L 1,{good_pair(d)}\n".encode()) or d / "s.csv",
        "s.csv:2: lane 'L 1' is not allowed",
    ),
    "missing fastq": (lambda d: sheet(d, "a,missing_1.fq.gz,missing_2.fq.gz"), "samples.csv:2: "),
    "bad sample name": (lambda d: sheet(d, f"a;rm -rf,{good_pair(d)}"), "samples.csv:2: sample name 'a;rm -rf'"),
    "path in sample name": (lambda d: sheet(d, f"../x,{good_pair(d)}"), "sample name '../x' is not allowed"),
    "repeated row": (
        lambda d: sheet(d, f"a,{good_pair(d)}", f"a,{good_pair(d)}"),
        "samples.csv:3: this row repeats line 2",
    ),
    "case collision": (
        lambda d: sheet(d, f"a,{good_pair(d)}", f"A,{good_pair(d, 'b')}"),
        "samples.csv:3: sample 'A' differs from 'a' only by case",
    ),
    "mixed lanes": (
        lambda d: sheet(d, f"a,{good_pair(d)}", f"a,{good_pair(d, 'b').split(',')[0]},"),
        "samples.csv:3: sample a mixes single-end and paired-end lanes",
    ),
    "empty fastq": (lambda d: put(d / "e_1.fq", b"") or sheet(d, "a,e_1.fq,"), "the file is empty"),
    "corrupt gzip": (
        lambda d: (
            put(d / "c_1.fq.gz", (SARS / "subsample1_R1.fastq.gz").read_bytes()[:300_000]) or sheet(d, "a,c_1.fq.gz,")
        ),
        "cannot be decompressed",
    ),
    "not fastq": (
        lambda d: put(d / "t_1.fq", b"hello\nworld\n") or sheet(d, "a,t_1.fq,"),
        "line 1 should start a FASTQ record with '@'",
    ),
    "truncated record": (
        lambda d: put(d / "u_1.fq", b"@r\nACGT\n+\n") or sheet(d, "a,u_1.fq,"),
        "ends in the middle of a record",
    ),
    "different counts": (
        lambda d: (
            (fastq(d / "x_1.fq.gz", ["r1", "r2"]), fastq(d / "x_2.fq.gz", ["r1"])) and sheet(d, "a,x_1.fq.gz,x_2.fq.gz")
        ),
        "samples.csv:2: R1 has 2 reads but R2 has 1",
    ),
    "different names": (
        lambda d: (
            (fastq(d / "y_1.fq.gz", ["r1/1", "r2/1"]), fastq(d / "y_2.fq.gz", ["r1/2", "zz/2"]))
            and sheet(d, "a,y_1.fq.gz,y_2.fq.gz")
        ),
        "read 2 is 'r2' in R1 but 'zz' in R2",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sample_sheet_or_fastq_is_refused(case: str, tmp_path: Path) -> None:
    make, message = CASES[case]
    path = make(tmp_path)
    result = run_pipeline(path, SARS / "MN908947.3.fa", tmp_path / "results", tmp_path / "work", expect=2)
    assert message in result.stderr, result.stderr
    assert "fix:" in result.stderr or case == "missing sheet"
    assert not (tmp_path / "results").exists(), "nothing is published"
    assert not (tmp_path / "work" / "cache").exists(), "nothing ran"


@pytest.mark.parametrize(
    "content, message",
    [
        (b">a\nACGT\n>b\nACGT\n>a\nGGGG\n", "ref.fa:5: contig 'a' appears twice (first on line 1)"),
        (b"ACGT\n", "ref.fa:1: not a FASTA file"),
        (b"", "the reference is empty"),
        (b">a\nAC GT 123\n", "ref.fa:2: not a sequence line"),
    ],
)
def test_bad_reference_is_refused(content: bytes, message: str, tmp_path: Path) -> None:
    ref = tmp_path / "ref.fa"
    ref.write_bytes(content)
    result = run_pipeline(SARS / "samples.csv", ref, tmp_path / "results", tmp_path / "work", expect=2)
    assert message in result.stderr, result.stderr


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
