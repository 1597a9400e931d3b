"""Input checks that run before any compute: the sample sheet, the FASTQ files, the reference.

Every problem is reported as ``file:line: what is wrong`` plus how to fix it, all at once, so a user fixes
a sheet in one go. Results for unchanged files (same path, size, mtime, inode) are remembered in the work
directory, so a resumed run does not read every FASTQ again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genobatch.executors.chunks import open_reads
from genobatch.problems import InputError, Problem

SAMPLE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
READ_GROUP_VALUE = re.compile(r"^[A-Za-z0-9._:+-]*$")  # what a read group field may hold here
HEADER = ["sample", "fastq_1", "fastq_2"]  # the columns a sheet must have, in any order
READ_GROUP_COLUMNS = ("lane", "library", "platform")  # optional, as nf-core/sarek's sheets have them
RECORDS_CHECKED = 1000  # records whose syntax and R1/R2 names are checked; counts are always complete
FASTQ_SEQUENCE = re.compile(rb"^[ACGTNacgtn.]*$")
FASTA_SEQUENCE = re.compile(rb"^[A-Za-z*\-.]*$")


@dataclass(frozen=True)
class Lane:
    fastq_1: Path
    fastq_2: Path | None
    line: int  # in the sample sheet
    unit: str = ""  # the sheet's `lane` (flowcell.lane), for the read group's PU
    library: str = ""  # its `library`, for LB (default: the sample)
    platform: str = ""  # its `platform`, for PL (default: ILLUMINA)


@dataclass
class Sample:
    name: str
    lanes: list[Lane] = field(default_factory=list)

    @property
    def paired(self) -> bool:
        return self.lanes[0].fastq_2 is not None


def read_sheet(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The sheet's header and its rows (line number, column -> value): comma- or tab-separated, UTF-8 with or
    without a BOM (as Excel saves CSV). InputError if it cannot be read or lacks a required column."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InputError([Problem(path, None, f"cannot read the sample sheet: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError([Problem(path, line, "the sample sheet is not UTF-8 text", "save it as UTF-8 CSV")]) from None
    lines = text.splitlines()
    delimiter = "\t" if lines and "\t" in lines[0] and "," not in lines[0] else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [c.strip() for c in rows[0]] if rows else []
    missing = [column for column in HEADER if column not in header]
    if missing:
        fix = "use the nf-core layout: sample,fastq_1,fastq_2 (fastq_2 empty for single-end; lane, library and "
        fix += "platform optional)"
        raise InputError([Problem(path, 1, f"the header must have the columns {', '.join(HEADER)}", fix)])
    records = [
        (number, {column: cell.strip() for column, cell in zip(header, row, strict=False)})
        for number, row in enumerate(rows[1:], start=2)
        if any(cell.strip() for cell in row)
    ]
    return header, records


def parse_sample_sheet(path: Path) -> tuple[list[Sample], list[Problem]]:
    """Parse an nf-core sample sheet (``sample,fastq_1,fastq_2``; rows of one sample are its lanes): the usable
    samples, and the problems of the other rows (so that the files of good rows are checked too)."""
    _, rows = read_sheet(path)
    problems: list[Problem] = []
    samples: dict[str, Sample] = {}
    lowered: dict[str, str] = {}
    seen_rows: dict[tuple[str, Path, Path | None], int] = {}
    for number, row in rows:
        name, first, second = row.get("sample", ""), row.get("fastq_1", ""), row.get("fastq_2", "")
        problem = _name_problem(name, lowered)
        if not problem[0] and not first:
            problem = ("fastq_1 is empty", "give the path of the (first) FASTQ file")
        bad = [c for c in READ_GROUP_COLUMNS if not READ_GROUP_VALUE.match(row.get(c, ""))]
        if not problem[0] and bad:
            problem = (f"{bad[0]} {row[bad[0]]!r} is not allowed", "use only letters, digits and . _ : + -")
        if problem[0]:
            problems.append(Problem(path, number, *problem))
            continue
        lane = Lane(
            path.parent / first,
            path.parent / second if second else None,
            number,
            *(row.get(column, "") for column in READ_GROUP_COLUMNS),
        )
        key = (name, lane.fastq_1.resolve(), lane.fastq_2.resolve() if lane.fastq_2 else None)
        sample = samples.get(name)
        if key in seen_rows:
            problems.append(
                Problem(path, number, f"this row repeats line {seen_rows[key]}", "list each lane of a sample once")
            )
        elif lane.fastq_2 is not None and lane.fastq_1.resolve() == lane.fastq_2.resolve():
            problems.append(Problem(path, number, "fastq_1 and fastq_2 are the same file", "give the R1 and R2 files"))
        elif sample is not None and sample.paired != (lane.fastq_2 is not None):
            fix = "give every lane of a sample both fastq_1 and fastq_2, or none a fastq_2"
            problems.append(Problem(path, number, f"sample {name} mixes single-end and paired-end lanes", fix))
        else:
            seen_rows[key] = number
            samples.setdefault(name, Sample(name)).lanes.append(lane)
    if not samples and not problems:
        problems.append(Problem(path, None, "the sample sheet lists no samples", "add one row per FASTQ file (pair)"))
    return list(samples.values()), problems


def _name_problem(name: str, lowered: dict[str, str]) -> tuple[str, str]:
    """Why a sample name cannot be used (empty strings: it can)."""
    if not SAMPLE_NAME.match(name):
        return f"sample name {name!r} is not allowed", "use only letters, digits, '.', '_' and '-'"
    if lowered.setdefault(name.lower(), name) != name:
        return (
            f"sample {name!r} differs from {lowered[name.lower()]!r} only by case",
            "give different samples names that differ in more than case",
        )
    return "", ""


# --- file contents ----------------------------------------------------------------------------------------
def _lines(path: Path) -> Iterator[bytes]:
    with open_reads(path) as handle:
        for line in handle:
            yield line.rstrip(b"\r\n")


@dataclass
class FastqFacts:
    records: int
    names: list[str]  # of the first RECORDS_CHECKED records, without /1 /2 suffixes


def check_fastq(path: Path, sheet: Path, line: int) -> FastqFacts | Problem:
    """Read the whole file: gzip integrity, FASTQ syntax (first records), and the record count."""

    def problem(message: str, fix: str) -> Problem:
        return Problem(sheet, line, f"{path}: {message}", fix)

    if not path.is_file():
        return problem("no such file", "check the path (relative paths start at the sample sheet's folder)")
    if not os.access(path, os.R_OK):
        return problem("not readable", "fix the file's permissions")
    if path.stat().st_size == 0:
        return problem("the file is empty", "give a FASTQ file with reads")
    names: list[str] = []
    count = 0
    try:
        for number, text in enumerate(_lines(path)):
            kind = number % 4
            if count < RECORDS_CHECKED:
                if kind == 0:
                    if not text.startswith(b"@"):
                        return problem(
                            f"line {number + 1} should start a FASTQ record with '@'",
                            "give a FASTQ file (4 lines per read: @name, bases, +, qualities)",
                        )
                    names.append(
                        re.sub(r"/[12]$", "", text[1:].split()[0].decode(errors="replace")) if text[1:] else ""
                    )
                elif kind == 1 and not FASTQ_SEQUENCE.match(text):
                    return problem(f"line {number + 1} is not a sequence of bases", "give a FASTQ file")
                elif kind == 2 and not text.startswith(b"+"):
                    return problem(f"line {number + 1} should be the '+' separator", "give a FASTQ file")
            if kind == 3:
                count += 1
        if number % 4 != 3:
            return problem("the file ends in the middle of a record (truncated?)", "give the complete FASTQ file")
    except (OSError, EOFError, zlib.error) as exc:
        return problem(f"cannot be decompressed ({exc})", "the gzip file is corrupt or truncated: copy it again")
    return FastqFacts(count, names)


@dataclass
class FastaFacts:
    contigs: list[tuple[str, int]]  # (name, length), in file order


def check_fasta(path: Path) -> FastaFacts:
    def fail(line: int | None, message: str, fix: str) -> InputError:
        return InputError([Problem(path, line, message, fix)])

    if not path.is_file() or not os.access(path, os.R_OK):
        raise fail(None, "no such readable file", "give the reference FASTA (plain or gzip) with --fasta")
    if path.stat().st_size == 0:
        raise fail(None, "the reference is empty", "give a FASTA file")
    contigs: list[tuple[str, int]] = []
    first_line: dict[str, int] = {}
    try:
        for number, text in enumerate(_lines(path), start=1):
            if text.startswith(b">"):
                name = text[1:].split()[0].decode(errors="replace") if text[1:].strip() else ""
                if not name:
                    raise fail(number, "a FASTA header without a name", "name every sequence: >name")
                if name in first_line:
                    raise fail(
                        number,
                        f"contig {name!r} appears twice (first on line {first_line[name]})",
                        "give every sequence a unique name",
                    )
                first_line[name] = number
                contigs.append((name, 0))
            elif not contigs:
                if text.strip():
                    raise fail(number, "not a FASTA file: the first line must be a '>' header", "give a FASTA file")
            elif not FASTA_SEQUENCE.match(text):
                raise fail(number, "not a sequence line", "give a FASTA file of nucleotide sequences")
            else:
                contigs[-1] = (contigs[-1][0], contigs[-1][1] + len(text))
    except (OSError, EOFError, zlib.error) as exc:
        raise fail(None, f"cannot be decompressed ({exc})", "the gzip file is corrupt: copy it again") from None
    if not contigs:
        raise fail(None, "no sequences found", "give a FASTA file")
    empty = [name for name, length in contigs if length == 0]
    if empty:
        raise fail(first_line[empty[0]], f"contig {empty[0]!r} has no sequence", "remove it or add its sequence")
    return FastaFacts(contigs)


# --- content identity -------------------------------------------------------------------------------------
class FileFacts:
    """Content hashes (and check results) of input files, remembered by file identity between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.known: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.known = {}

    @staticmethod
    def _identity(file: Path) -> str:
        st = file.stat()
        return f"{file.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"

    def get(self, file: Path, kind: str) -> Any:
        return self.known.get(self._identity(file), {}).get(kind)

    def put(self, file: Path, kind: str, value: Any) -> None:
        self.known.setdefault(self._identity(file), {})[kind] = value

    def sha256(self, file: Path) -> str:
        digest = self.get(file, "sha256")
        if digest is None:
            with open(file, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            self.put(file, "sha256", digest)
        return str(digest)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.known))
        tmp.replace(self.path)


def check_inputs(sheet: Path, samples: list[Sample], facts: FileFacts, problems: list[Problem]) -> dict[Path, int]:
    """Check every FASTQ (remembered per file); returns read counts. Raises InputError listing ``problems``
    (found earlier, e.g. in the sample sheet) and all found here."""
    problems = list(problems)
    counts: dict[Path, int] = {}
    for sample in samples:
        for lane in sample.lanes:
            checked: list[FastqFacts] = []
            for fastq in filter(None, (lane.fastq_1, lane.fastq_2)):
                known = facts.get(fastq, "fastq") if fastq.is_file() else None
                result = FastqFacts(**known) if known else check_fastq(fastq, sheet, lane.line)
                if isinstance(result, Problem):
                    problems.append(result)
                    continue
                facts.put(fastq, "fastq", {"records": result.records, "names": result.names})
                counts[fastq] = result.records
                checked.append(result)
            if len(checked) == 2:
                first, second = checked
                if first.records != second.records:
                    problems.append(
                        Problem(
                            sheet,
                            lane.line,
                            f"R1 has {first.records} reads but R2 has {second.records}",
                            "give the two files of the same run and lane",
                        )
                    )
                elif first.names != second.names:
                    index = next(i for i, (a, b) in enumerate(zip(first.names, second.names, strict=False)) if a != b)
                    problems.append(
                        Problem(
                            sheet,
                            lane.line,
                            f"read {index + 1} is {first.names[index]!r} in R1 but {second.names[index]!r} in R2",
                            "give R1 and R2 files in the same order",
                        )
                    )
    if problems:
        raise InputError(problems)
    return counts
