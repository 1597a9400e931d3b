"""Input checks that run before any compute: the sample sheet, the FASTQ files, the reference.

Every problem is reported as ``file:line: what is wrong`` plus how to fix it, all at once (the sheet, the
reference and every FASTQ), so a user fixes them in one go. Files are checked whole, each read once
(``input_fastq``, ``input_fasta``); results for unchanged files (same path, size, mtime, inode) are remembered
in the work directory with their SHA-256, so a resumed run does not read them again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import stat
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genobatch.problems import InputError, Problem

from .input_fasta import BadFasta, check_fasta_file
from .input_fasta import FastaFacts as FastaFacts  # re-exported: the run's planning uses it
from .input_fastq import BadFastq, FastqFacts, bwa_batches_of, check_fastq_file, name_problem, names_in_order
from .input_stream import GZIP_MAGIC, Unreadable, is_gzip, other_format

# A sample name becomes part of file and job names (<sample>.freebayes.vcf.gz.tbi, fastp's
# <sample>_<lane>.fastp.html, the job name "<step>:<sample>..." that AWS Batch cuts at 128 characters):
# letters, digits, '.', '_', '-', a letter or digit first (no "..", ".", hidden files), at most 64 characters.
SAMPLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
READ_GROUP_VALUE = re.compile(r"^[A-Za-z0-9._:+-]*$")  # what a read group field may hold here
HEADER = ["sample", "fastq_1", "fastq_2"]  # the columns a sheet must have, in any order
READ_GROUP_COLUMNS = ("lane", "library", "platform")  # optional, as nf-core/sarek's sheets have them
SHEET_LAYOUT = "use the nf-core layout: sample,fastq_1,fastq_2 (fastq_2 empty for single-end; lane, library and "
SHEET_LAYOUT += "platform optional)"
SAVE_AS_CSV = "save it as CSV UTF-8 (comma-separated) and give that file"
FASTQ_FACTS = "fastq.v2"  # the kind of fact a FASTQ's check leaves in inputs.json (v2: whole-file checks)
FASTA_FACTS = "fasta.v2"  # the reference's (v2: with the faidx, contig name and nucleotide rules)
PARALLEL_CHECK_BYTES = 64 << 20  # below this, starting worker processes costs more than it saves
MAX_CHECK_WORKERS = 8


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


def read_sheet(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[Problem]]:
    """The sheet's header, its rows (line number, column -> value) and the problems of rows that cannot be
    used: comma- or tab-separated text, UTF-8 with or without a BOM (as Excel saves CSV). InputError if the
    sheet as a whole cannot be read."""
    lines = _sheet_lines(path)
    delimiter = "\t" if lines and "\t" in lines[0] and "," not in lines[0] else ","
    reader = csv.reader(lines, delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        message = f"this line cannot be read as CSV ({exc})"
        fix = "each field is a sample name, a path or a read group value: look for a missing quote or pasted text"
        raise InputError([Problem(path, reader.line_num, message, fix)]) from None
    rows = [(number, row) for number, row in rows if any(cell.strip() for cell in row)]
    header = [c.strip() for c in rows[0][1]] if rows else []
    _check_header(path, header, rows[0][0] if rows else 1)
    records, problems = [], []
    for number, row in rows[1:]:
        if any(cell.strip() for cell in row[len(header) :]):
            message = f"this row has {len(row)} fields but the header {len(header)}"
            fix = "remove the extra fields (a value with a comma in it must be in double quotes)"
            problems.append(Problem(path, number, message, fix))
            continue
        records.append((number, {column: cell.strip() for column, cell in zip(header, row, strict=False)}))
    return header, records, problems


def _sheet_lines(path: Path) -> list[str]:
    """The sheet's lines, or InputError saying why it is not a text file we can read."""
    problem = file_problem(path, "the sample sheet")
    if problem:
        raise InputError([Problem(path, None, *problem)])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError([Problem(path, None, f"cannot read the sample sheet: {exc.strerror}", "check it")]) from None
    what = other_format(data) or ("gzip-compressed" if data.startswith(GZIP_MAGIC) else "")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        what = "UTF-16 text (as Excel saves Unicode Text)"
    elif not what and b"\0" in data:
        what = "not a text file"
    if what:
        message = f"the sample sheet is {what}"
        fix = "decompress it (gunzip) and give the CSV file" if what.startswith("gzip") else SAVE_AS_CSV
        raise InputError([Problem(path, None, message, fix)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError([Problem(path, line, "the sample sheet is not UTF-8 text", "save it as UTF-8 CSV")]) from None
    return text.splitlines()


def _check_header(path: Path, header: list[str], line: int) -> None:
    if not header:
        raise InputError([Problem(path, None, "the sample sheet is empty", SHEET_LAYOUT)])
    missing = [column for column in HEADER if column not in header]
    if missing:
        message = f"the header must have the columns {', '.join(HEADER)}"
        if len(header) == 1 and ";" in header[0]:
            message += " (this one is separated by ';': use commas or tabs)"
        raise InputError([Problem(path, line, message, SHEET_LAYOUT)])
    twice = [c for c in (*HEADER, *READ_GROUP_COLUMNS) if header.count(c) > 1]
    if twice:
        where = " and ".join(str(i + 1) for i, c in enumerate(header) if c == twice[0])
        message = f"the column {twice[0]} appears more than once (columns {where})"
        raise InputError([Problem(path, line, message, "give each column once")])


def parse_sample_sheet(path: Path) -> tuple[list[Sample], list[Problem]]:
    """Parse an nf-core sample sheet (``sample,fastq_1,fastq_2``; rows of one sample are its lanes): the usable
    samples, and the problems of the other rows (so that the files of good rows are checked too)."""
    _, rows, problems = read_sheet(path)
    samples: dict[str, Sample] = {}
    lowered: dict[str, str] = {}
    seen_rows: dict[tuple[str, Path, Path | None], int] = {}
    resolve = Resolver()
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
        r1, r2 = resolve(lane.fastq_1), resolve(lane.fastq_2) if lane.fastq_2 else None
        key = (name, r1, r2)
        sample = samples.get(name)
        if key in seen_rows:
            problems.append(
                Problem(path, number, f"this row repeats line {seen_rows[key]}", "list each lane of a sample once")
            )
        elif r1 == r2:
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
    if not name:
        return "the sample name is empty", "give every row a sample name"
    if not SAMPLE_NAME.fullmatch(name):
        fix = "start it with a letter or digit, then use only letters, digits, '.', '_' and '-', at most 64 in all "
        return f"sample name {name!r} is not allowed", fix + "(it becomes part of file names)"
    if lowered.setdefault(name.lower(), name) != name:
        return (
            f"sample {name!r} differs from {lowered[name.lower()]!r} only by case",
            "give different samples names that differ in more than case",
        )
    return "", ""


# --- files ------------------------------------------------------------------------------------------------
def file_problem(path: Path, what: str) -> tuple[str, str] | None:
    """(what is wrong, fix) when ``path`` is not a readable, non-empty regular file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{what} does not exist", "check the path"
    except (OSError, ValueError) as exc:
        return f"cannot read {what}: {getattr(exc, 'strerror', None) or exc}", "check the path"
    if stat.S_ISDIR(st.st_mode):
        return f"{what} is a directory", "give the path of the file itself"
    if not stat.S_ISREG(st.st_mode):
        return f"{what} is not a regular file (a pipe or a device?)", "give a file (inputs are read more than once)"
    if not os.access(path, os.R_OK):
        return f"{what} is not readable", "fix the file's permissions"
    if st.st_size == 0:
        return f"{what} is empty", "give the complete file"
    return None


def check_fastq(path: Path, sheet: Path, line: int, lengths: array[int] | None = None) -> FastqFacts | Problem:
    """Read the whole file once: gzip integrity and every read's syntax (``input_fastq``); each read's length
    goes into ``lengths`` when given."""
    problem = file_problem(path, "the file")
    if problem:
        fix = "check the path (relative paths start at the sample sheet's folder)" if "exist" in problem[0] else ""
        return Problem(sheet, line, f"{path}: {problem[0]}", fix or problem[1])
    try:
        return check_fastq_file(path, lengths)
    except BadFastq as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        return Problem(sheet, line, f"{where}: {exc.message}", exc.fix)
    except Unreadable as exc:
        return Problem(sheet, line, f"{path}: {exc.message}", exc.fix)
    except OSError as exc:
        return Problem(sheet, line, f"{path}: cannot be read ({exc.strerror})", "check the file")


def check_fasta(path: Path, facts: FileFacts | None = None) -> FastaFacts:
    """The reference's contigs, read once (``input_fasta``); InputError when it is not a usable reference."""
    result = check_reference(path, facts)
    if isinstance(result, Problem):
        raise InputError([result])
    return result


def check_reference(path: Path, facts: FileFacts | None = None) -> FastaFacts | Problem:
    """The reference's contigs (remembered in ``facts`` with its SHA-256), or its problem."""
    fix_path = "give the reference FASTA (plain or gzip) with --fasta"
    problem = file_problem(path, "the reference")
    if problem:
        return Problem(path, None, problem[0], fix_path if "directory" in problem[0] else problem[1])
    known = facts.get(path, FASTA_FACTS) if facts else None
    if known:
        return FastaFacts([(str(name), int(length)) for name, length in known])
    try:
        fasta = check_fasta_file(path)
    except BadFasta as exc:
        return Problem(path, exc.line, exc.message, exc.fix)
    except Unreadable as exc:
        return Problem(path, None, exc.message, exc.fix)
    except OSError as exc:
        return Problem(path, None, f"cannot read the reference ({exc.strerror})", "check the file")
    if facts:
        facts.put(path, FASTA_FACTS, fasta.contigs)
        facts.put(path, "sha256", fasta.sha256)
    return fasta


# --- content identity -------------------------------------------------------------------------------------
class Resolver:
    """``Path.resolve()`` for many files in a few folders: each folder resolved once, then one ``lstat`` per
    file (to follow it if it is a link). Resolving 20,000 FASTQ paths whole took a second."""

    def __init__(self) -> None:
        self._folders: dict[Path, Path] = {}
        self._files: dict[Path, Path] = {}  # what each was resolved to (a resolver lives for one check or plan)

    def __call__(self, path: Path) -> Path:
        known = self._files.get(path)
        if known is None:
            known = self._files[path] = self._resolve(path)
        return known

    def _resolve(self, path: Path) -> Path:
        if path.name in ("", ".", ".."):
            return path.resolve()
        folder = self._folders.get(path.parent)
        if folder is None:
            folder = self._folders[path.parent] = path.parent.resolve()
        full = folder / path.name
        try:
            link = stat.S_ISLNK(os.lstat(full).st_mode)
        except OSError:  # not there (yet): as resolve() leaves it
            return full
        return full.resolve() if link else full


class FileFacts:
    """Content hashes (and check results) of input files, remembered by file identity between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.known: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self._steady: dict[Path, str] | None = None  # identities, while files are taken as unchanging
        self.resolve: Callable[[Path], Path] = Path.resolve

    @contextlib.contextmanager
    def unchanging(self) -> Iterator[None]:
        """Each file's identity looked up once (not once per use) inside: planning 10,000 samples asks for
        60,000. Outside, every use looks again, so that a file changed during a run is seen as changed."""
        self._steady, self.resolve = {}, Resolver()
        try:
            yield
        finally:
            self._steady, self.resolve = None, Path.resolve

    def _identity(self, file: Path) -> str:
        if self._steady is not None and file in self._steady:
            return self._steady[file]
        st = file.stat()
        identity = f"{self.resolve(file)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        if self._steady is not None:
            self._steady[file] = identity
        return identity

    def get(self, file: Path, kind: str) -> Any:
        return self.known.get(self._identity(file), {}).get(kind)

    def put(self, file: Path, kind: str, value: Any) -> None:
        self.known.setdefault(self._identity(file), {})[kind] = value

    def batches_kind(self, batch_bases: int, second: Path | None) -> str:
        """What a lane's batch sizes are remembered as, on its first file's facts: the batches depend on the
        second file's reads too, so its identity is part of it (a rewritten R2 finds none, not the old ones)."""
        return f"bwa_batches:{batch_bases}:{self._identity(second) if second else ''}"

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


def check_inputs(
    sheet: Path, samples: list[Sample], facts: FileFacts, problems: list[Problem], batch_bases: Iterable[int] = ()
) -> dict[Path, int]:
    """Check every FASTQ whole (remembered per file; a file listed twice is read once); returns read counts.
    The same read records where the aligner's batches of ``batch_bases`` end in each lane
    (``FileFacts.batches_kind``), so that planning its chunks reads nothing again. Raises InputError listing
    ``problems`` (found earlier, e.g. in the sample sheet) and all found here, after saving ``facts``: a run
    refused for one bad file does not read the good ones again when it is rerun."""
    problems = list(problems)
    lanes = [lane for sample in samples for lane in sample.lanes]
    results = _check_files(sheet, lanes, facts, tuple(sorted(set(batch_bases))))
    counts: dict[Path, int] = {}
    for lane in lanes:
        checked: list[FastqFacts] = []
        for fastq in filter(None, (lane.fastq_1, lane.fastq_2)):
            result = results[facts.resolve(fastq)]
            if isinstance(result, Problem):
                problems.append(dataclasses.replace(result, line=lane.line))
                continue
            counts[fastq] = result.records
            checked.append(result)
            named = name_problem(fastq, facts.get(fastq, "gzip"))
            if named:
                problems.append(Problem(sheet, lane.line, f"{fastq}: {named[0]}", named[1]))
        if len(checked) == 2:
            problems += _pair_problems(sheet, lane, *checked)
    if problems:
        with contextlib.suppress(OSError):  # the files found good need not be read again once the rest is fixed
            facts.save()
        raise InputError(problems)
    return counts


Checked = FastqFacts | Problem


def _check_files(sheet: Path, lanes: list[Lane], facts: FileFacts, batch_bases: tuple[int, ...]) -> dict[Path, Checked]:
    """Each distinct file's facts (by resolved path) or problem: remembered ones are not read; the others are
    read once each, in worker processes when there is enough to read (a check runs at one core's speed): R1
    and R2 of a lane side by side, which halved the check of one big sample on two cores. A lane read whole
    now also gets its aligner's batches, from the read lengths its files' checks recorded."""
    results: dict[Path, Checked] = {}
    units: list[tuple[list[Path], int, tuple[int, ...]]] = []  # a lane's files to read, its line, batch sizes
    claimed: set[Path] = set()
    for lane in lanes:
        files = [f for f in (lane.fastq_1, lane.fastq_2) if f is not None]
        todo = []
        for fastq in files:
            key = facts.resolve(fastq)
            if key in results or key in claimed:
                continue
            known = FastqFacts.from_json(facts.get(fastq, FASTQ_FACTS)) if file_problem(fastq, "") is None else None
            if known:
                results[key] = known
            else:
                todo.append(fastq)
                claimed.add(key)
        if todo:  # batches only when the whole lane is read now (else planning reads it for them, once)
            units.append((todo, lane.line, batch_bases if len(todo) == len(files) else ()))
    files_to_read = [(fastq, line, bool(wanted)) for todo, line, wanted in units for fastq in todo]
    with contextlib.closing(_checked_files(sheet, files_to_read)) as checked:  # closing: its workers end here
        for files, _, wanted in units:
            found, lengths = zip(*(next(checked) for _ in files), strict=True)
            for fastq, result in zip(files, found, strict=True):
                results[facts.resolve(fastq)] = result
                if isinstance(result, FastqFacts):
                    facts.put(fastq, FASTQ_FACTS, result.to_json())
                    facts.put(fastq, "sha256", result.sha256)
                    facts.put(fastq, "gzip", is_gzip(fastq))  # for its name's check, in later runs too
            for bases, sizes in _lane_batches(list(found), list(lengths), wanted).items():
                facts.put(files[0], facts.batches_kind(bases, files[1] if len(files) > 1 else None), sizes)
    return results


def _checked_files(sheet: Path, files: list[tuple[Path, int, bool]]) -> Generator[tuple[Checked, array[int] | None]]:
    """``_check_file`` of each (file, line, record lengths), in order; in worker processes when it is worth it."""
    size = sum(f.stat().st_size for f, _, _ in files if file_problem(f, "") is None)
    workers = min(len(files), len(os.sched_getaffinity(0)), MAX_CHECK_WORKERS)
    if workers < 2 or size < PARALLEL_CHECK_BYTES:
        yield from (_check_file(fastq, sheet, line, record) for fastq, line, record in files)
        return
    spawn = multiprocessing.get_context("spawn")  # not fork: the parent may hold threads (S3 downloads)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        paths, lines, record_lengths = zip(*files, strict=True)
        yield from pool.map(_check_file, paths, [sheet] * len(files), lines, record_lengths)


def _check_file(fastq: Path, sheet: Path, line: int, record_lengths: bool) -> tuple[Checked, array[int] | None]:
    """One file checked (``check_fastq``), with its reads' lengths when asked (for its lane's batches)."""
    lengths = array("I") if record_lengths else None
    found = check_fastq(fastq, sheet, line, lengths)
    return found, lengths if isinstance(found, FastqFacts) else None


def _lane_batches(
    found: list[Checked], lengths: list[array[int] | None], batch_bases: tuple[int, ...]
) -> dict[int, list[int]]:
    """Where the lane's aligner's batches end for each of ``batch_bases``, when its files are good."""
    if not batch_bases or not all(isinstance(f, FastqFacts) for f in found):
        return {}
    first, second = lengths[0], lengths[1] if len(lengths) > 1 else None
    assert first is not None
    if second is not None and len(first) != len(second):
        return {}  # R1 and R2 differ: refused as such
    return {bases: bwa_batches_of(first, second, bases) for bases in batch_bases}


def _pair_problems(sheet: Path, lane: Lane, first: FastqFacts, second: FastqFacts) -> list[Problem]:
    """An R1 and its R2 must hold the same reads in the same order (bwa stops at the first pair whose names
    differ, mid-run), R1 first: a pair of mates in the wrong files gives BAMs whose first and second reads
    are swapped, and a file given twice pairs every read with itself."""
    assert lane.fastq_2 is not None
    if first.records != second.records:
        message = f"R1 has {first.records} reads but R2 has {second.records}"
        return [Problem(sheet, lane.line, message, "give the two files of the same run and lane")]
    if first.names != second.names:  # read both again (this once) to say where
        pairs = zip(names_in_order(lane.fastq_1), names_in_order(lane.fastq_2), strict=False)
        index, (one, two) = next(((i, p) for i, p in enumerate(pairs) if p[0] != p[1]), (-1, (b"@", b"@")))
        shown = [name[1:].decode(errors="replace") for name in (one, two)]
        where = f"read {index + 1} (line {index * 4 + 1}) is {shown[0]!r} in R1 but {shown[1]!r} in R2"
        message = where if index >= 0 else "the read names of R1 and R2 differ"
        return [Problem(sheet, lane.line, message, "give R1 and R2 files in the same order")]
    if (first.mate, second.mate) == (2, 1):
        message = "fastq_1's reads say they are mate 2 and fastq_2's mate 1 (in their names: /2 /1 or 2:N 1:N)"
        return [Problem(sheet, lane.line, message, "swap fastq_1 and fastq_2 on this row")]
    if first.mate == second.mate != 0:
        message = f"the reads of both files say they are mate {first.mate} (in their names)"
        return [Problem(sheet, lane.line, message, "give the R1 file as fastq_1 and the R2 file as fastq_2")]
    return []
