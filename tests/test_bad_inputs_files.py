"""The bad-input corpus for files: sample sheets, FASTQ files and references that ``genobatch run`` must refuse
before any compute: exit 2, the file and line (the sheet's, and the FASTQ's or FASTA's own for what is inside
them), what is wrong, the fix, no traceback, nothing written (tests/refusals.py). Good inputs, and the checks'
own properties, are in tests/test_input_checks.py.

Each refusal stands for a failure seen with the tools: see the docstrings of genobatch/pipeline/input_fastq.py
and input_fasta.py for the evidence.
"""

from __future__ import annotations

import bz2
import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .input_files import (
    GOOD_ROW,
    REFERENCE,
    SARS,
    SEQUENCE,
    Build,
    fasta,
    many,
    pair,
    raw_sheet,
    reads,
    sheet,
    single,
    with_reference,
    write,
)
from .refusals import assert_refused, genobatch, snapshot

# --- the corpus ---------------------------------------------------------------------------------------------
CASES: list[Any] = []


def bad(name: str, *expected: str, xfail: str = "") -> Callable[[Build], Build]:
    """Register a bad input: ``expected`` are parts of the refusal's message."""

    def register(build: Build) -> Build:
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        CASES.append(pytest.param(build, list(expected), id=name, marks=marks))
        return build

    return register


def case(*expected: str, xfail: str = "") -> Callable[[Build], Build]:
    """``bad`` for a function, named after it."""
    return lambda build: bad(build.__name__.replace("_", " "), *expected, xfail=xfail)(build)


# The sample sheet as a file.
bad("sheet missing", "nope.csv: the sample sheet does not exist", "check the path")(
    lambda d: (d / "nope.csv", REFERENCE)
)


@case("samples.csv: the sample sheet is a directory", "give the path of the file itself")
def sheet_is_a_directory(d: Path) -> tuple[Path, Path]:
    (d / "samples.csv").mkdir()
    return d / "samples.csv", REFERENCE


bad("sheet empty", "samples.csv: the sample sheet is empty")(lambda d: raw_sheet(d, b""))
bad("sheet with a header only", "samples.csv: the sample sheet lists no samples")(
    lambda d: raw_sheet(d, b"sample,fastq_1,fastq_2\n")
)
bad("sheet without the columns", "samples.csv:1: the header must have the columns sample, fastq_1, fastq_2")(
    lambda d: raw_sheet(d, b"id,r1,r2\nx,a.fq,\n")
)
bad("sheet separated by semicolons", "samples.csv:1:", "separated by ';': use commas or tabs")(
    lambda d: raw_sheet(d, b"sample;fastq_1;fastq_2\na;a_1.fq.gz;a_2.fq.gz\n")
)


@case("samples.csv:1: the column fastq_2 appears more than once (columns 3 and 4)", "give each column once")
def duplicate_column(d: Path) -> tuple[Path, Path]:
    return sheet(d, f"a,{pair(d)},{pair(d, 'b').split(',')[1]}", header="sample,fastq_1,fastq_2,fastq_2"), REFERENCE


@case("samples.csv:2: this row has 4 fields but the header 3", "a value with a comma in it must be in double quotes")
def extra_fields(d: Path) -> tuple[Path, Path]:
    return sheet(d, f"a,{pair(d)},extra"), REFERENCE


@case("samples.csv:2: the sample sheet is not UTF-8 text", "save it as UTF-8 CSV")
def latin_1_sheet(d: Path) -> tuple[Path, Path]:
    return raw_sheet(d, f"sample,fastq_1,fastq_2\nb\xe9,{pair(d)}\n".encode("latin-1"))


@case("samples.csv: the sample sheet is UTF-16 text", "save it as CSV UTF-8")
def utf_16_sheet(d: Path) -> tuple[Path, Path]:
    return raw_sheet(d, f"sample\tfastq_1\tfastq_2\na\t{pair(d).replace(',', chr(9))}\n".encode("utf-16"))


@case("samples.csv.gz: the sample sheet is gzip-compressed", "decompress it (gunzip)")
def gzip_sheet(d: Path) -> tuple[Path, Path]:
    return raw_sheet(d, gzip.compress(f"sample,fastq_1,fastq_2\na,{pair(d)}\n".encode()), "samples.csv.gz")


bad(
    "sheet is an Excel workbook",
    "samples.xlsx: the sample sheet is a zip archive (or an Excel workbook)",
    "save it as CSV UTF-8",
)(lambda d: raw_sheet(d, b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "samples.xlsx"))
bad("sheet with a NUL byte", "samples.csv: the sample sheet is not a text file")(
    lambda d: raw_sheet(d, b"sample,fastq_1,fastq_2\na,x\x00.fq,\n")
)


@case("samples.csv:3: this line cannot be read as CSV")
def field_of_5_megabytes(d: Path) -> tuple[Path, Path]:
    return sheet(d, "a," + pair(d), f"b,{'x' * 5_000_000}.fq.gz,"), REFERENCE


# Sample names (they become file names).
@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a;rm -rf", "../x", "a/b", "a b", "é", "x" * 65])
def test_a_sample_name_that_is_not_a_safe_file_name_is_refused(name: str, tmp_path: Path) -> None:
    path = sheet(tmp_path, f"{name},{pair(tmp_path)}")
    before = snapshot(tmp_path)
    result = _run(tmp_path, path, REFERENCE)
    assert_refused(
        result, tmp_path, before, [f"samples.csv:2: sample name {name!r} is not allowed"], work=_work(tmp_path)
    )
    assert "at most 64" in result.stderr


bad("sample name empty", "samples.csv:2: the sample name is empty", "give every row a sample name")(
    lambda d: (sheet(d, f",{pair(d)}"), REFERENCE)
)
bad("sample names differing by case", "samples.csv:3: sample 'A' differs from 'a' only by case")(
    lambda d: (sheet(d, "a," + pair(d), f"A,{pair(d, 'b')}"), REFERENCE)
)
bad("row repeated", "samples.csv:3: this row repeats line 2")(
    lambda d: (sheet(d, "a," + pair(d), "a," + pair(d)), REFERENCE)
)
bad("sample mixing single and paired lanes", "samples.csv:3: sample a mixes single-end and paired-end lanes")(
    lambda d: (sheet(d, "a," + pair(d), f"a,{pair(d, 'b').split(',')[0]},"), REFERENCE)
)
bad("fastq_1 empty", "samples.csv:2: fastq_1 is empty")(lambda d: (sheet(d, "a,,"), REFERENCE))
bad("fastq_1 and fastq_2 the same file", "samples.csv:2: fastq_1 and fastq_2 are the same file")(
    lambda d: (sheet(d, f"a,{pair(d).split(',')[0]},{pair(d).split(',')[0]}"), REFERENCE)
)
bad("lane with a space", "samples.csv:2: lane 'L 1' is not allowed")(
    lambda d: (sheet(d, f"a,L 1,{pair(d)}", header="sample,lane,fastq_1,fastq_2"), REFERENCE)
)

# FASTQ files as files.
bad(
    "fastq missing",
    "samples.csv:2:",
    "missing_1.fq.gz: the file does not exist",
    "relative paths start at the sample sheet's folder",
)(lambda d: (sheet(d, "a,missing_1.fq.gz,missing_2.fq.gz"), REFERENCE))


@case("samples.csv:2:", "dir_1.fq.gz: the file is a directory")
def fastq_is_a_directory(d: Path) -> tuple[Path, Path]:
    (d / "dir_1.fq.gz").mkdir()
    return sheet(d, "a,dir_1.fq.gz,"), REFERENCE


bad("fastq path too long", "samples.csv:2:", "cannot read the file: File name too long")(
    lambda d: (sheet(d, f"a,{'x' * 300}.fq.gz,"), REFERENCE)
)


@case("samples.csv:2:", "fifo_1.fq: the file is not a regular file")
def fastq_is_a_pipe(d: Path) -> tuple[Path, Path]:
    os.mkfifo(d / "fifo_1.fq")
    return sheet(d, "a,fifo_1.fq,"), REFERENCE


bad("fastq empty", "samples.csv:2:", "e_1.fq: the file is empty")(
    lambda d: (sheet(d, "a," + single(d, b"", "e_1.fq")), REFERENCE)
)

# FASTQ names that FastQC reads or names differently (FastQC 0.11.9).
bad(
    "fastq named txt",
    "x_1.txt: a FASTQ file's name must end in .fastq.gz, .fq.gz, .fastq, .fq",
    "rename it to x_1.fastq",
)(lambda d: (sheet(d, "a," + single(d, reads(["r"]), "x_1.txt")), REFERENCE))
bad(
    "gzip fastq not named gz",
    "x_1.fastq: the file is gzip-compressed but its name does not end in .gz",
    "rename it to x_1.fastq.gz",
)(lambda d: (sheet(d, f"a,{write(d / 'x_1.fastq', reads(['r']), compress=True)},"), REFERENCE))
bad("plain fastq named gz", "x_1.fq.gz: the file is not gzip-compressed but is named .gz", "rename it to x_1.fastq")(
    lambda d: (sheet(d, f"a,{write(d / 'x_1.fq.gz', reads(['r']), compress=False)},"), REFERENCE)
)
bad("fastq named bam", "x_1.bam: a FASTQ file's name must end in", "rename it to x_1.fastq")(
    lambda d: (sheet(d, "a," + single(d, reads(["r"]), "x_1.bam")), REFERENCE)
)

# FASTQ contents: every read is checked, not only the first ones.
bad("gzip fastq without reads", "samples.csv:2:", "z_1.fq.gz: the file has no reads")(
    lambda d: (sheet(d, "a," + single(d, b"", "z_1.fq.gz")), REFERENCE)
)
bad(
    "gzip fastq truncated",
    "samples.csv:2:",
    "c_1.fq.gz: the gzip data ends early (truncated)",
    "copy the complete file again",
)(
    lambda d: (
        sheet(d, f"a,{write(d / 'c_1.fq.gz', (SARS / 'subsample1_R1.fastq.gz').read_bytes()[:300_000], False)},"),
        REFERENCE,
    )
)


@case("samples.csv:2:", "m_1.fq.gz: the gzip data is corrupt", "copy the file again")
def gzip_corrupt_midway(d: Path) -> tuple[Path, Path]:
    data = bytearray((SARS / "subsample1_R1.fastq.gz").read_bytes())
    data[400_000:400_016] = bytes(16)
    return sheet(d, f"a,{write(d / 'm_1.fq.gz', bytes(data), compress=False)},"), REFERENCE


bad("fastq of text", "t_1.fq:1: this line should start a read with '@'")(
    lambda d: (sheet(d, "a," + single(d, b"hello\nworld\n", "t_1.fq")), REFERENCE)
)
bad("fastq cut in a read", "u_1.fq:3: the file ends in the middle of a read (truncated?)")(
    lambda d: (sheet(d, "a," + single(d, b"@r\nACGT\n+\n", "u_1.fq")), REFERENCE)
)
bad("quality shorter after 1500 reads", "s_1.fq:6004: 199 quality characters for 200 bases", "the file is damaged")(
    lambda d: (
        sheet(d, "a," + single(d, reads(many(1500, 1), SEQUENCE, "I" * 200) + reads(["late"], SEQUENCE, "I" * 199))),
        REFERENCE,
    )
)
bad("quality longer", "s_1.fq:8: 11 quality characters for 10 bases")(
    lambda d: (sheet(d, "a," + single(d, reads(["r1"]) + reads(["r2"], qualities="I" * 11))), REFERENCE)
)
bad("base dash", "s_1.fq:6:", "'-' is not a base character")(
    lambda d: (sheet(d, "a," + single(d, reads(["r1"]) + reads(["r2"], bases="ACGT-ACGTA"))), REFERENCE)
)
bad("base digit colour space", "s_1.fq:2:", "'0' is not a base character")(
    lambda d: (sheet(d, "a," + single(d, reads(["r1"], bases="T012301230"))), REFERENCE)
)
bad("quality space", "s_1.fq:4:", "' ' is not a quality character", "Phred+33")(
    lambda d: (sheet(d, "a," + single(d, reads(["r1"], qualities="IIII IIIII"))), REFERENCE)
)
bad("quality above tilde", "s_1.fq:4:", "the byte 0xc3 is not a quality character")(
    lambda d: (sheet(d, "a," + single(d, reads(["r1"]).replace(b"IIIII\n", bytes([0xC3]) + b"IIII\n"))), REFERENCE)
)
bad("qualities phred64", "s_1.fq: the qualities are Phred+64", "seqtk seq -Q64 -V")(
    lambda d: (sheet(d, "a," + single(d, reads(many(20, 1), qualities="hhhhhhBBBB"))), REFERENCE)
)
bad("fastq CR CR LF", "s_1.fq:2:", "a carriage return inside the line (CR CR LF line endings?)", "dos2unix")(
    lambda d: (sheet(d, "a," + single(d, reads(["r1", "r2"]).replace(b"\n", b"\r\r\n"))), REFERENCE)
)
bad(
    "fastq empty line inside",
    "s_1.fq:5: an empty line inside the file",
    "genobatch cuts FASTQ files into reads by lines",
)(lambda d: (sheet(d, "a," + single(d, reads(["r1"]) + b"\n" + reads(["r2"]))), REFERENCE))
bad("fastq sequence wrapped", "s_1.fq:3: this line should be the '+' line")(
    lambda d: (sheet(d, "a," + single(d, b"@r1\nACGTA\nCGTAC\n+\nIIIII\nIIIII\n")), REFERENCE)
)
bad("read without a name", "s_1.fq:5: the read has no name", "give every read a name")(
    lambda d: (sheet(d, "a," + single(d, reads(["r1", " comment only"]))), REFERENCE)
)
bad("read name too long", "s_1.fq:1: the read name has 300 characters; SAM allows 254", "shorten the read names")(
    lambda d: (sheet(d, "a," + single(d, reads(["x" * 300]))), REFERENCE)
)
bad("bam given as fastq", "b_1.fq.gz: this is a BAM file, not a FASTQ file", "samtools fastq")(
    lambda d: (sheet(d, f"a,{write(d / 'b_1.fq.gz', b'BAM' + bytes([1]) + bytes(100))},"), REFERENCE)
)
bad("sam given as fastq", "s_1.fq:1: this is a SAM file, not a FASTQ file")(
    lambda d: (sheet(d, "a," + single(d, b"@HD\tVN:1.6\n@SQ\tSN:c\tLN:9\n")), REFERENCE)
)
bad("fasta given as fastq", "s_1.fq:1: this is a FASTA file (no qualities), not a FASTQ file")(
    lambda d: (sheet(d, "a," + single(d, fasta(("c", "ACGT")))), REFERENCE)
)
bad(
    "fastq compressed with bzip2",
    "s_1.fq: this is compressed with bzip2, not a FASTQ file",
    "compress it with gzip instead",
)(lambda d: (sheet(d, "a," + single(d, bz2.compress(reads(["r1"])))), REFERENCE))

# R1 and R2 together.
bad("R1 and R2 counts differ", "samples.csv:2: R1 has 5 reads but R2 has 4")(
    lambda d: (sheet(d, "a," + pair(d, second=reads(many(4, 2)))), REFERENCE)
)
bad(
    "R1 and R2 names differ after 1000 reads",
    "samples.csv:2: read 1500 (line 5997) is 'r1499' in R1 but 'zz' in R2",
    "give R1 and R2 files in the same order",
)(lambda d: (sheet(d, "a," + pair(d, first=reads(many(1500, 1)), second=reads(many(1500, 2, last="zz")))), REFERENCE))
bad(
    "R1 and R2 swapped",
    "samples.csv:2: fastq_1's reads say they are mate 2 and fastq_2's mate 1",
    "swap fastq_1 and fastq_2",
)(lambda d: (sheet(d, "a," + pair(d, first=reads(many(5, 2)), second=reads(many(5, 1)))), REFERENCE))
bad("R1 given twice", "samples.csv:2: the reads of both files say they are mate 1")(
    lambda d: (sheet(d, "a," + pair(d, first=reads(many(5, 1)), second=reads(many(5, 1)))), REFERENCE)
)

# References.
bad("reference missing", "nope.fa: the reference does not exist")(lambda d: (sheet(d, GOOD_ROW), d / "nope.fa"))


@case("refdir: the reference is a directory", "give the reference FASTA (plain or gzip) with --fasta")
def reference_is_a_directory(d: Path) -> tuple[Path, Path]:
    (d / "refdir").mkdir()
    return sheet(d, GOOD_ROW), d / "refdir"


bad("reference empty", "ref.fa: the reference is empty")(lambda d: with_reference(d, b""))
bad("gzip reference without data", "ref.fa.gz: the reference holds no data")(
    lambda d: with_reference(d, b"", "ref.fa.gz")
)
bad("contig twice", "ref.fa:5: contig 'a' appears twice (first on line 1)")(
    lambda d: with_reference(d, b">a\nACGT\n>b\nACGT\n>a\nGGGG\n")
)
bad(
    "contig names cut at a space collide",
    "ref.fa:3: contig 'chr' appears twice (first on line 1; a name ends at the first space)",
)(lambda d: with_reference(d, b">chr 1\nACGT\n>chr 2\nACGT\n"))
bad("reference of bare sequence", "ref.fa:1: not a FASTA file: the first line must be a '>' header")(
    lambda d: with_reference(d, b"ACGT\n")
)
bad("reference with spaces and digits", "ref.fa:2: ' ' is not a nucleotide code")(
    lambda d: with_reference(d, b">a\nAC GT 123\n")
)
bad("protein reference", "ref.fa:2: 'L' is not a nucleotide code (a protein FASTA?)", "IUPAC nucleotide codes")(
    lambda d: with_reference(d, fasta(("sp|P69905|HBA_HUMAN", "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMF")))
)
bad("fastq given as reference", "ref.fa:1: this is a FASTQ file (reads), not a FASTA reference")(
    lambda d: with_reference(d, reads(["r1"]))
)
bad("bam given as reference", "ref.fa.gz: this is a BAM file, not a FASTA reference")(
    lambda d: with_reference(d, b"BAM\x01" + bytes(100), "ref.fa.gz")
)
bad("contig name with colon", "ref.fa:3: contig name 'chr1:5' has a ':'", "rename the contig without ':'")(
    lambda d: with_reference(d, fasta(("chr1", SEQUENCE), ("chr1:5", SEQUENCE), width=200))
)
bad("contig name with comma", "ref.fa:1: contig name 'a,b' has characters that SAM and VCF do not allow")(
    lambda d: with_reference(d, fasta(("a,b", SEQUENCE)))
)
bad("contig name starting with star", "ref.fa:1: contig name '*a' has characters")(
    lambda d: with_reference(d, fasta(("*a", SEQUENCE)))
)
bad("header without a name", "ref.fa:1: a FASTA header without a name", "name every sequence: >name")(
    lambda d: with_reference(d, b">\nACGT\n")
)
bad("reference CR CR LF", "ref.fa:1: a carriage return inside a line (CR CR LF line endings?)", "dos2unix")(
    lambda d: with_reference(d, fasta(("a", SEQUENCE), eol="\r\r\n"))
)
bad(
    "reference line longer than the first",
    "ref.fa:4: a line longer than its sequence's first (120 > 60 characters)",
    "seqtk seq -l 60",
)(lambda d: with_reference(d, b">a\n" + (b"A" * 60 + b"\n") * 2 + b"C" * 120 + b"\nAC\n"))
bad("reference goes on after a short line", "ref.fa:4: the sequence goes on after a shorter line (line 3)")(
    lambda d: with_reference(d, b">a\n" + b"A" * 60 + b"\n" + b"C" * 30 + b"\n" + b"G" * 60 + b"\n")
)
bad(
    "reference empty line inside",
    "ref.fa:4: the sequence goes on after an empty line (line 3)",
    "remove empty lines inside sequences",
)(lambda d: with_reference(d, b">a\n" + b"A" * 60 + b"\n\n" + b"G" * 60 + b"\n"))
bad("contig without sequence", "ref.fa:3: contig 'b' has no sequence", "remove it or add its sequence")(
    lambda d: with_reference(d, b">a\nACGT\n>b\n>c\nACGT\n")
)
bad("reference gzip twice", "ref.fa.gz: the reference is compressed twice", "gunzip")(
    lambda d: with_reference(d, gzip.compress(gzip.compress(fasta(("a", SEQUENCE)))), "ref.fa.gz", compress=False)
)
bad("gzip reference truncated", "ref.fa.gz: the gzip data ends early (truncated)")(
    lambda d: with_reference(d, gzip.compress(fasta(("a", SEQUENCE * 100)))[:-20], "ref.fa.gz", compress=False)
)


@case("ref.fa.gz: the gzip data is corrupt", "copy the file again")
def reference_gzip_corrupt_midway(d: Path) -> tuple[Path, Path]:
    data = bytearray(gzip.compress(REFERENCE.read_bytes()))
    data[4000:4016] = bytes(16)
    (d / "ref.fa.gz").write_bytes(bytes(data))
    return sheet(d, GOOD_ROW), d / "ref.fa.gz"


@case(
    "ref.fa:2: 'J' is not a nucleotide code",
    "samples.csv:2: sample name '..' is not allowed",
    "s_1.fq:4: 9 quality characters for 10 bases",
)
def every_problem_of_every_file_at_once(d: Path) -> tuple[Path, Path]:
    write(d / "ref.fa", b">a\nJJ\n")
    return sheet(d, "..," + pair(d), "b," + single(d, reads(["r"], qualities="I" * 9))), d / "ref.fa"


def _work(root: Path) -> Path:
    return root / "work"


def _run(root: Path, sample_sheet: Path, reference: Path, *extra: str) -> Any:
    return genobatch(
        "run",
        *("--input", str(sample_sheet), "--fasta", str(reference), "--outdir", str(root / "results")),
        *("--work-dir", str(_work(root)), "--runtime", "host", "--ploidy", "1", *extra),
    )


@pytest.mark.parametrize("build, expected", CASES)
def test_a_bad_file_is_refused_before_any_compute(build: Build, expected: list[str], tmp_path: Path) -> None:
    sample_sheet, reference = build(tmp_path)
    before = snapshot(tmp_path)
    assert_refused(_run(tmp_path, sample_sheet, reference), tmp_path, before, expected, work=_work(tmp_path))
