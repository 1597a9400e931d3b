"""The reference checked whole before any compute, in one streamed read, against what the reference step
(``gzip -cdf``, ``bwa index``, ``samtools faidx``) and the region-scattered callers need.

Each rule stands for a failure seen with bwa 0.7.17, samtools/bcftools 1.16 and freebayes 1.3.6:

- contig names as SAM allows them, without ':': the call steps address regions as ``contig:start-end``
  (``bcftools mpileup -r``, ``bcftools view -t``, ``freebayes -r``); with a contig named ``chr1:5``,
  mpileup failed ("the sequence "chr1" not found") and view could not parse the region. ',' made mpileup
  fail the same way (region lists are comma-separated); '(' and the like made bcftools warn "Invalid contig
  name". A name ends at the first space, as for bwa and samtools.
- sequence letters are IUPAC nucleotide codes (soft-masked lower case too), or '-', '*', '.', which the tools
  accept: a protein FASTA indexed and aligned without error, with no read aligned.
- every line of a sequence as long as its first but the last, and no empty line inside a sequence:
  ``samtools faidx`` refuses the file otherwise ("Different line length in sequence", "Format error").
- carriage returns only as Windows line endings (CR LF, which bwa and samtools read); with CR CR LF, bwa mem
  failed reading its own index ("Parse error reading ref.fa.amb").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .input_stream import GZIP_MAGIC, check_whole_file, other_format, shown_byte

NUCLEOTIDES = b"ACGTUNRYSWKMBDHVacgtunryswkmbdhv"  # IUPAC codes
SEQUENCE_BYTES = NUCLEOTIDES + b"-*.\r\n"  # CRs are checked apart: only at the end of a line
CONTIG_NAME = re.compile(rb"[0-9A-Za-z!#$%&+./;?@^_|~-][0-9A-Za-z!#$%&*+./;=?@^_|~-]*")  # SAM's, without ':'
STRAY_CR = re.compile(rb"\r(?!\n)")
MAX_LINE = 1 << 30  # a longer line is held in memory whole: refused
FIX_WRAP = "wrap every sequence at one line length, e.g. seqtk seq -l 60 ref.fa > ref60.fa (samtools faidx needs it)"


class BadFasta(Exception):
    def __init__(self, line: int | None, message: str, fix: str) -> None:
        super().__init__(message)
        self.line, self.message, self.fix = line, message, fix


@dataclass
class FastaFacts:
    contigs: list[tuple[str, int]]  # (name, length), in file order
    sha256: str = ""  # of the file's bytes


def check_fasta_file(path: Path) -> FastaFacts:
    """Read the whole file once; raises BadFasta (or input_stream.Unreadable, OSError)."""
    contigs, sha256 = check_whole_file(path, FastaCheck(), BadFasta)
    return FastaFacts(contigs, sha256)


class FastaCheck:
    """Feed it a file's content in order: it raises BadFasta at the first problem."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []  # an unfinished line (a sequence on one line can be long)
        self.line = 1  # of the next complete line
        self.contigs: list[tuple[str, int]] = []
        self.header_line: dict[str, int] = {}
        self.width = -1  # of the current contig's first line (bytes, CR included); -1: none yet
        self.ended = 0  # the line of the current contig's first shorter (or empty) line; 0: none yet
        self.ended_empty = False
        self.started = False

    def feed(self, block: bytes) -> None:
        if not self.started and block:
            self.started = True
            _sniff(block)
        cut = block.rfind(b"\n") + 1
        if not cut:
            self.parts.append(block)
            if sum(map(len, self.parts)) > MAX_LINE:
                message = "a line longer than 1 GB (a sequence on one line?)"
                raise BadFasta(self.line, message, "wrap the sequences, e.g. seqtk seq -l 60 ref.fa > ref60.fa")
            return
        data = b"".join([*self.parts, block[:cut]]) if self.parts else block[:cut]
        self.parts = [block[cut:]] if cut < len(block) else []
        self._lines(data)

    def finish(self) -> list[tuple[str, int]]:
        if self.parts:
            self._lines(b"".join(self.parts) + b"\n")
        if not self.started:
            raise BadFasta(None, "the reference holds no data", "give the reference genome (FASTA)")
        self._close_contig()
        if not self.contigs:
            raise BadFasta(None, "no sequences found (no '>' header)", "give a FASTA file")
        return self.contigs

    def _lines(self, data: bytes) -> None:
        """Complete lines: sequences checked in bulk between the headers."""
        stray = STRAY_CR.search(data) if b"\r" in data and data.count(b"\r") != data.count(b"\r\n") else None
        if stray:
            line = self.line + data.count(b"\n", 0, stray.start())
            raise BadFasta(line, "a carriage return inside a line (CR CR LF line endings?)", "convert them (dos2unix)")
        position = 0
        for start in _header_starts(data):
            self._sequence(data[position:start])
            end = data.index(b"\n", start) + 1
            self._header(data[start:end], self.line)
            self.line += 1
            position = end
        self._sequence(data[position:])

    def _sequence(self, text: bytes) -> None:
        """Sequence lines of the current contig (each ending in a newline)."""
        if not text:
            return
        lines = text.split(b"\n")[:-1]
        if not self.contigs:
            if text.strip():
                first = self.line + next(i for i, line in enumerate(lines) if line.strip())
                raise BadFasta(first, "not a FASTA file: the first line must be a '>' header", "give a FASTA file")
        elif text.translate(None, SEQUENCE_BYTES):
            index = next(i for i, line in enumerate(lines) if line.translate(None, SEQUENCE_BYTES))
            bad = lines[index].translate(None, SEQUENCE_BYTES)[:1]
            fix = "give the reference genome's DNA sequence (IUPAC nucleotide codes: ACGTN, RYSWKMBDHV, any case)"
            hint = " (a protein FASTA?)" if bad.isalpha() else ""
            raise BadFasta(self.line + index, f"{shown_byte(bad)} is not a nucleotide code{hint}", fix)
        else:
            self._widths(list(map(len, lines)))
            name, length = self.contigs[-1]
            self.contigs[-1] = (name, length + len(text) - len(lines) - text.count(b"\r"))
        self.line += len(lines)

    def _widths(self, lengths: list[int]) -> None:
        """samtools faidx's rule: every line of a sequence as long as its first, but the last, which may be
        shorter; empty lines only after the last. Checked in bulk; the slow search runs on a bad block only."""
        if self.width < 0:
            self.width = lengths[0]
            if not lengths[0]:
                self.ended, self.ended_empty = self.line, True
        width, filled = self.width, len(lengths)
        while filled and not lengths[filled - 1]:
            filled -= 1
        if self.ended:
            if not filled:
                return
        elif not filled or (lengths[: filled - 1].count(width) == filled - 1 and lengths[filled - 1] <= width):
            if filled and lengths[filled - 1] < width:
                self.ended, self.ended_empty = self.line + filled - 1, False
            elif filled < len(lengths):
                self.ended, self.ended_empty = self.line + filled, True
            return
        for index, length in enumerate(lengths):
            line = self.line + index
            if self.ended and length:
                if self.ended_empty:
                    message = f"the sequence goes on after an empty line (line {self.ended})"
                    raise BadFasta(line, message, "remove empty lines inside sequences (samtools faidx refuses them)")
                raise BadFasta(line, f"the sequence goes on after a shorter line (line {self.ended})", FIX_WRAP)
            if length > width:
                raise BadFasta(
                    line, f"a line longer than its sequence's first ({length} > {width} characters)", FIX_WRAP
                )
            if length < width:
                self.ended, self.ended_empty = line, not length
        raise AssertionError("a block failed the bulk line-length check but no line did")

    def _header(self, text: bytes, line: int) -> None:
        self._close_contig()
        words = text[1:].split(maxsplit=1)
        name = words[0] if words else b""
        if not name:
            raise BadFasta(line, "a FASTA header without a name", "name every sequence: >name")
        shown = name.decode(errors="replace")
        if not CONTIG_NAME.fullmatch(name):
            if b":" in name:
                message = f"contig name {shown!r} has a ':': regions (contig:start-end, as bcftools and freebayes "
                message += "take them) cannot address it"
                raise BadFasta(line, message, "rename the contig without ':' (e.g. with '_')")
            message = f"contig name {shown!r} has characters that SAM and VCF do not allow in contig names"
            raise BadFasta(line, message, "rename it: letters, digits, !#$%&+./;?@^_|~- and, not first, * or =")
        if shown in self.header_line:
            hint = "; a name ends at the first space" if len(words) > 1 else ""
            message = f"contig {shown!r} appears twice (first on line {self.header_line[shown]}{hint})"
            raise BadFasta(line, message, "give every sequence a unique name")
        self.header_line[shown] = line
        self.contigs.append((shown, 0))
        self.width, self.ended, self.ended_empty = -1, 0, False

    def _close_contig(self) -> None:
        if self.contigs and not self.contigs[-1][1]:
            name = self.contigs[-1][0]
            raise BadFasta(self.header_line[name], f"contig {name!r} has no sequence", "remove it or add its sequence")


def _header_starts(data: bytes) -> Iterator[int]:
    """Where the header lines ('>' first) of complete lines start."""
    if data.startswith(b">"):
        yield 0
    found = data.find(b"\n>")
    while found >= 0:
        yield found + 1
        found = data.find(b"\n>", found + 1)


def _sniff(block: bytes) -> None:
    """A file that is not FASTA at all, said as such rather than as a bad first line."""
    what = other_format(block)
    if what:
        raise BadFasta(
            None, f"this is {what}, not a FASTA reference", "give the reference genome (FASTA, plain or gzip)"
        )
    if block.startswith(GZIP_MAGIC):
        raise BadFasta(None, "the reference is compressed twice (gzip of a gzip file)", "decompress it once: gunzip")
    if block.startswith(b"@"):
        message = "this is a FASTQ file (reads), not a FASTA reference"
        raise BadFasta(1, message, "give the reference genome (FASTA: '>name' lines, then bases) with --fasta")
