"""Making input files for the input-check tests: FASTQ files, sample sheets and references, good or bad."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

from .pipeline_helpers import DATA

SARS = DATA / "sarscov2"
REFERENCE = SARS / "MN908947.3.fa"
GOOD_ROW = f"good,{SARS / 'subsample1_R1.fastq.gz'},{SARS / 'subsample1_R2.fastq.gz'}"
Build = Callable[[Path], tuple[Path, Path]]  # makes the inputs in a folder: (sample sheet, reference)


def reads(names: list[str], bases: str = "ACGTACGTAC", qualities: str = "IIIIIIIIII") -> bytes:
    return "".join(f"@{name}\n{bases}\n+\n{qualities}\n" for name in names).encode()


def write(path: Path, data: bytes, compress: bool | None = None) -> str:
    """Write ``data`` (gzip when the name ends in .gz, unless ``compress`` says otherwise); the file's name."""
    path.write_bytes(gzip.compress(data) if (path.name.endswith(".gz") if compress is None else compress) else data)
    return path.name


def pair(folder: Path, name: str = "a", count: int = 5, first: bytes | None = None, second: bytes | None = None) -> str:
    """An R1 and R2 of ``count`` reads (or the given contents): the sheet's fastq_1,fastq_2."""
    one = write(folder / f"{name}_1.fq.gz", first or reads([f"r{i}/1" for i in range(count)]))
    two = write(folder / f"{name}_2.fq.gz", second or reads([f"r{i}/2" for i in range(count)]))
    return f"{one},{two}"


def single(folder: Path, data: bytes, name: str = "s_1.fq") -> str:
    """A single-end row's fastq_1,fastq_2 for a file holding ``data``."""
    return f"{write(folder / name, data)},"


def sheet(folder: Path, *rows: str, header: str = "sample,fastq_1,fastq_2") -> Path:
    path = folder / "samples.csv"
    path.write_text("".join(f"{line}\n" for line in (header, *rows)))
    return path


def raw_sheet(folder: Path, data: bytes, name: str = "samples.csv") -> tuple[Path, Path]:
    (folder / name).write_bytes(data)
    return folder / name, REFERENCE


def with_reference(folder: Path, data: bytes, name: str = "ref.fa", compress: bool | None = None) -> tuple[Path, Path]:
    """A good sheet and a reference holding ``data`` (gzip when the name ends in .gz, unless ``compress``)."""
    write(folder / name, data, compress)
    return sheet(folder, GOOD_ROW), folder / name


def fasta(*contigs: tuple[str, str], width: int = 60, eol: str = "\n") -> bytes:
    lines = [line for name, bases in contigs for line in [f">{name}", *_wrap(bases, width)]]
    return "".join(f"{line}{eol}" for line in lines).encode()


def _wrap(bases: str, width: int) -> list[str]:
    return [bases[i : i + width] for i in range(0, len(bases), width)]


def many(count: int, mate: int, *, last: str = "") -> list[str]:
    """Read names r0../<mate>; the last one replaced by ``last`` when given."""
    names = [f"r{i}/{mate}" for i in range(count)]
    return [*names[:-1], last] if last else names


SEQUENCE = "ACGT" * 50  # 200 bases
