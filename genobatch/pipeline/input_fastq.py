"""A FASTQ file checked whole before any compute, in one streamed read, against what the steps' tools need.

Each rule stands for a failure (or a wrong result) seen with the tools the steps run (FastQC 0.11.9, fastp
0.23.2, bwa 0.7.17, samtools/htslib 1.16) on files that break it:

- 4 lines per read, no empty line inside the file: the align step cuts a lane into chunks by counting lines
  (``chunks.write_chunk``), so one stray line would shift every later read (bwa, FastQC would accept it).
- bases are letters (IUPAC codes or not, either case) or '.': every tool accepts them, bwa reads all but
  ACGT as N. '-' made ``samtools sort`` fail ("CIGAR and query sequence are of different length"), control
  bytes broke FastQC's report, and digits (colour-space reads) or other signs bwa reads as N: such reads
  align nowhere.
- qualities within '!'..'~' (Phred+33): a space or a byte above '~' made samtools fail ("invalid QUAL
  character") and FastQC fail (or throw and hang); Phred+64 files (Illumina 1.3-1.7: no quality below '@',
  some from 'L' up, none above 'j') would be read as Phred+33, 31 too high, by bwa and bcftools.
- as many quality characters as bases: otherwise bwa loses the read's mate and stops with "paired reads have
  different names" on another read, mid-run.
- read names (up to the first space, without /1 /2, as bwa compares mates') not empty and at most 254
  characters: samtools refuses longer ones ("query name too long") and warns on empty ones.
- carriage returns only as Windows line endings (CR LF, which every tool reads as LF); CR CR LF made FastQC
  fail and samtools fail.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .input_stream import GZIP_MAGIC, blocks, check_whole_file, is_gzip, other_format, shown_byte

BASES = bytes(range(ord("A"), ord("Z") + 1)) + bytes(range(ord("a"), ord("z") + 1)) + b"."
QUALITIES = bytes(range(ord("!"), ord("~") + 1))  # Phred+33, as FASTQ (Sanger, Illumina 1.8+) and SAM have it
NOT_BELOW_AT = bytes(range(ord("@"), 256))  # a quality below '@' proves Phred+33
BELOW_L = bytes(range(ord("L")))  # a quality from 'L' (Q43 in Phred+33, Q12 in Phred+64) up...
UP_TO_J = bytes(range(ord("j") + 1))  # ...but none above 'j' (Q42 in Phred+64): Phred+64
MAX_NAME = 254  # SAM's limit on read names
MAX_LINE = 64 << 20  # no FASTQ line is this long: a file without line breaks is not FASTQ
FIRST = operator.itemgetter(0)  # the name, of (name, separator, comment)
MATE_SUFFIX = re.compile(rb"/[0-9]\n")  # bwa drops a trailing /<digit> before comparing (``mate_names``)
SAM_HEADER = re.compile(rb"@(HD|SQ|RG|PG|CO)\t")
NAMES = (".fastq.gz", ".fq.gz", ".fastq", ".fq")  # the names FastQC reads and names its report after as we do
FIX_FORMAT = "give a FASTQ file: 4 lines per read (@name, bases, +, qualities), no wrapped or empty lines"


class BadFastq(Exception):
    def __init__(self, line: int | None, message: str, fix: str) -> None:
        super().__init__(message)
        self.line, self.message, self.fix = line, message, fix


@dataclass
class FastqFacts:
    records: int
    names: str  # SHA-256 of the read names as bwa compares mates', in order: equal for an R1 and its R2
    mate: int  # which mate the first read says it is (/1 /2, or Casava's " 1:N:0"); 0 when it does not say
    sha256: str = ""  # of the file's bytes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> FastqFacts | None:
        try:
            return cls(**value)
        except TypeError:  # remembered by an older genobatch: check again
            return None


def name_problem(path: Path, gzip: bool | None = None) -> tuple[str, str] | None:
    """FastQC decides by the name whether a file is gzip and names its report after the file without .gz,
    .bz2, .txt, .fastq, .fq, .csfastq, .sam or .bam (then reads .sam/.bam as such); the fastqc step expects
    the name without .gz, .fastq, .fq. Only these names agree (checked with FastQC 0.11.9). ``gzip``: whether
    the file is, when known (else it is looked at)."""
    name, gzip = path.name, is_gzip(path) if gzip is None else gzip
    lower = name.lower()
    stem = re.sub(r"(\.(fastq|fq|txt|csfastq|sam|bam|gz|bz2))+$", "", name, flags=re.IGNORECASE) or name
    rename = f"rename it to {stem}{'.fastq.gz' if gzip else '.fastq'}"
    if not lower.endswith(NAMES):
        listed = ", ".join(NAMES)
        return f"a FASTQ file's name must end in {listed} (FastQC reads and names files by their name)", rename
    if gzip != lower.endswith(".gz"):
        said = (
            "is gzip-compressed but its name does not end in .gz" if gzip else "is not gzip-compressed but is named .gz"
        )
        return f"the file {said} (FastQC and fastp read it by its name)", rename
    return None


def check_fastq_file(path: Path, lengths: array[int] | None = None) -> FastqFacts:
    """Read the whole file once; raises BadFastq (or Unreadable, OSError). ``lengths``, if given, gets each
    read's number of bases: where the aligner's batches end (``chunks.batches_of``), with no second read."""
    facts, sha256 = check_whole_file(path, FastqCheck(lengths), BadFastq)
    facts.sha256 = sha256
    return facts


def bwa_batches_of(first: Iterable[int], second: Iterable[int] | None, batch_bases: int) -> list[int]:
    """``chunks.bwa_batches`` from the reads' lengths (R1's, and R2's for pairs) that a check recorded, so that
    planning a lane's chunks reads nothing again: reads (pairs) in each batch ``bwa mem -K batch_bases`` reads,
    as bwa 0.7.17's bseq_read() ends one after the first pair at which the bases read reach ``batch_bases`` and
    an even number of sequences has been read. Found by bisecting the running total of bases, a batch at a time
    (10 million reads have a few hundred batches). The tests prove it equal to ``chunks.bwa_batches``, which
    stays as it is: it goes into the tool images, with the job runner, for reads cut when their task runs."""
    sizes = map(operator.add, first, second) if second is not None else iter(first)
    total = array("Q", itertools.accumulate(sizes))
    batches, start, base = [], 0, 0
    while start < len(total):
        end = bisect.bisect_left(total, base + batch_bases, lo=start)  # the read at which the batch is full
        if second is None and (end - start) % 2 == 0:  # single-end: an odd number of reads so far; one more
            end += 1
        if end >= len(total):
            batches.append(len(total) - start)
            break
        batches.append(end - start + 1)
        base, start = total[end], end + 1
    return batches


class FastqCheck:
    """Feed it a file's content in order; it raises BadFastq at the first bad read."""

    def __init__(self, lengths: array[int] | None = None) -> None:
        self.lengths = lengths  # each read's bases are appended, when given
        self.records = 0
        self.carry = b""  # the lines after the last complete read
        self.names = hashlib.sha256()
        self.mate = -1  # not seen yet
        self.phred33 = False  # a quality below '@' was seen
        self.high = False  # a quality from 'L' up was seen
        self.above_j = False  # a quality above 'j' was seen: Phred+33 (PacBio HiFi reaches '~'), not +64

    def feed(self, block: bytes) -> None:
        if self.records == 0 and not self.carry:
            _sniff(block)
        lines = self.split(block)
        if lines:
            self._reads(lines)

    def split(self, block: bytes) -> list[bytes]:
        """The complete reads' lines of what has been read so far (CR LF read as LF); the rest waits in
        ``carry``. Empty lines before the rest wait too: they are allowed at the end of the file only."""
        data = self.carry + block if self.carry else block
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        lines = data.split(b"\n")
        end = len(lines) - 1
        while end > 0 and not lines[end - 1]:
            end -= 1
        end -= end % 4
        self.carry = b"\n".join(lines[end:])
        if len(self.carry) > MAX_LINE:
            raise BadFastq(self.records * 4 + end + 1, "not a FASTQ file: a line is longer than 64 MB", FIX_FORMAT)
        return lines[:end]

    def last_lines(self) -> list[bytes]:
        """The lines left once the whole file is read: its last reads (or a read cut short)."""
        lines = self.carry.removesuffix(b"\r").split(b"\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()  # what follows the final line break
        while lines and not lines[-1] and (len(lines) % 4 or not any(lines[-4:])):
            lines.pop()  # empty lines after the last read (but not the empty bases and qualities of a last read)
        return lines

    def finish(self) -> FastqFacts:
        lines = self.last_lines()
        whole = len(lines) // 4 * 4
        if whole:
            self._reads(lines[:whole])
        if whole < len(lines):  # the last read is cut short: a problem in its lines, or truncation
            problem = _read_problem(*lines[whole:])
            first = self.records * 4 + 1
            if problem:
                raise BadFastq(first + problem[0], problem[1], problem[2])
            end = first + len(lines) - whole - 1
            raise BadFastq(end, "the file ends in the middle of a read (truncated?)", "give the complete file")
        if not self.records:
            raise BadFastq(None, "the file has no reads", "give the FASTQ file with the reads")
        if not self.phred33 and self.high and not self.above_j:
            message = "the qualities are Phred+64 (Illumina 1.3-1.7): none is below '@', some are above 'K'"
            raise BadFastq(None, message, "convert them to Phred+33, e.g. seqtk seq -Q64 -V in.fq | gzip > out.fq.gz")
        return FastqFacts(self.records, self.names.hexdigest(), max(self.mate, 0))

    def _reads(self, lines: list[bytes]) -> None:
        """Whole reads (4 lines each), checked with bulk operations; the slow search runs only on a bad block."""
        count = len(lines) // 4
        heads, sequences, pluses, qualities = lines[0::4], lines[1::4], lines[2::4], lines[3::4]
        head_text = b"\n".join(heads)
        bases, quality = b"".join(sequences), b"".join(qualities)
        names = mate_names(heads, head_text)
        valid = (
            head_text[:1] == b"@"
            and head_text.count(b"\n@") == count - 1
            and not bases.translate(None, BASES)
            and (pluses.count(b"+") == count or (b"\n" + b"\n".join(pluses)).count(b"\n+") == count)
            and (lengths := list(map(len, sequences))) == list(map(len, qualities))
            and not quality.translate(None, QUALITIES)
            and b"\n@\n" not in b"\n" + names
            and (max(map(len, heads)) <= MAX_NAME + 1 or max(map(len, names.split(b"\n"))) <= MAX_NAME + 1)
        )
        if not valid:
            _first_bad_read(lines, self.records * 4 + 1)
        if self.mate < 0:
            self.mate = _mate(heads[0])
        if not self.phred33:
            self.phred33 = bool(quality.translate(None, NOT_BELOW_AT))
            self.high = self.high or bool(quality.translate(None, BELOW_L))
            self.above_j = self.above_j or bool(quality.translate(None, UP_TO_J))
        self.names.update(names)
        self.records += count
        if self.lengths is not None:
            self.lengths.extend(lengths)


def mate_names(heads: list[bytes], joined: bytes | None = None) -> bytes:
    """The reads' names as bwa compares mates': '@' and the name up to the first space or tab, without a
    trailing /<digit> (``bwa_name``); one per line, each ending in a newline. ``joined``: the lines joined by
    newlines, when at hand. Cut by bytes.partition mapped over the lines (1.6x faster than a regex substitution,
    measured), the /<digit> by one substitution over them all (2.4x faster than a replace per digit)."""
    text = b"\n".join(heads) if joined is None else joined
    for separator in (b" ", b"\t"):
        if separator in text:  # one literal each: a fast search, and most files have no tab
            heads = list(map(FIRST, map(bytes.partition, heads, itertools.repeat(separator))))
            text = b"\n".join(heads)
    text += b"\n"
    if b"/" in text:
        text = MATE_SUFFIX.sub(b"\n", text)  # once per name, as bwa
        if text.startswith(b"@\n") or b"\n@\n" in text:  # a name that was only /<digit>: bwa keeps those
            text = b"".join(bwa_name(head) + b"\n" for head in heads)
    return text


def bwa_name(head: bytes) -> bytes:
    """A read's name (with its '@', up to the first space or tab) as bwa 0.7.17's trim_readno leaves it: without
    a trailing /<digit> when the name is longer than 2."""
    return head[:-2] if len(head) > 3 and head[-2] == ord("/") and head[-1:].isdigit() else head


def names_in_order(path: Path) -> Iterator[bytes]:
    """Every read's name (as ``mate_names``), in order: to find where an R1 and its R2 part."""
    state = FastqCheck()
    for block in blocks(path):
        lines = state.split(block)
        if lines:
            yield from mate_names(lines[0::4]).split(b"\n")[:-1]
    rest = state.last_lines()
    if rest:
        yield from mate_names(rest[0::4]).split(b"\n")[:-1]


def _mate(head: bytes) -> int:
    name, _, comment = head.partition(b" ")
    for mate in (1, 2):
        if name.endswith(b"/%d" % mate) or comment.startswith(b"%d:" % mate):
            return mate
    return 0


def _sniff(block: bytes) -> None:
    """A file that is not FASTQ at all, said as such rather than as a bad first line."""
    what = other_format(block)
    if what:
        fix = "convert it to FASTQ (samtools fastq)" if "BAM" in what or "CRAM" in what else "give plain or gzip FASTQ"
        if what.startswith("compressed"):
            fix = "decompress it and compress it with gzip instead"
        raise BadFastq(None, f"this is {what}, not a FASTQ file (bwa reads plain or gzip FASTQ)", fix)
    if block.startswith(GZIP_MAGIC):
        raise BadFastq(None, "the file is compressed twice (gzip of a gzip file)", "decompress it once: gunzip")
    if SAM_HEADER.match(block):
        raise BadFastq(1, "this is a SAM file, not a FASTQ file", "convert it to FASTQ: samtools fastq")
    if block.startswith(b">"):
        raise BadFastq(1, "this is a FASTA file (no qualities), not a FASTQ file", "give the reads as FASTQ")


def _first_bad_read(lines: list[bytes], first_line: int) -> None:
    """Raise BadFastq for the first bad read among ``lines`` (whole reads, starting at ``first_line``)."""
    for index in range(0, len(lines), 4):
        problem = _read_problem(*lines[index : index + 4])
        if problem:
            offset, message, fix = problem
            raise BadFastq(first_line + index + offset, message, fix)
    raise AssertionError("a block failed the bulk checks but no read in it did")


def _read_problem(
    head: bytes, sequence: bytes = b"", plus: bytes | None = None, quality: bytes | None = None
) -> tuple[int, str, str] | None:
    """(line offset in the read, what is wrong, fix) for one read (its first lines only when it is cut short),
    or None."""
    if not head:
        return 0, "an empty line inside the file", "remove it: genobatch cuts FASTQ files into reads by lines"
    if not head.startswith(b"@"):
        return 0, "this line should start a read with '@'", FIX_FORMAT
    name = mate_names([head])[1:-1]
    if not name:
        return 0, "the read has no name (nothing between '@' and the first space)", "give every read a name"
    if len(name) > MAX_NAME:
        return 0, f"the read name has {len(name)} characters; SAM allows {MAX_NAME}", "shorten the read names"
    bad = sequence.translate(None, BASES)[:1]
    if bad:
        return 1, *_bad_character(bad, "base", "letters (IUPAC codes) or '.' for no call")
    if plus is not None and not plus.startswith(b"+"):
        return 2, "this line should be the '+' line", FIX_FORMAT
    if quality is None:
        return None
    if len(quality) != len(sequence):
        message = f"{len(quality)} quality characters for {len(sequence)} bases"
        return 3, message, "the file is damaged: copy or regenerate it"
    bad = quality.translate(None, QUALITIES)[:1]
    if bad:
        return 3, *_bad_character(bad, "quality", "Phred+33 qualities, '!' to '~'")
    return None


def _bad_character(bad: bytes, what: str, allowed: str) -> tuple[str, str]:
    if bad == b"\r":
        return "a carriage return inside the line (CR CR LF line endings?)", "convert the line endings (dos2unix)"
    return f"{shown_byte(bad)} is not a {what} character (allowed: {allowed})", "give a FASTQ file that uses only those"
