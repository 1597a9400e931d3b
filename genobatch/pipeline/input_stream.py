"""An input file's content in large blocks, read once: decompressed when it is gzip (by its content, as bwa and
``gzip -cdf`` decide, not by its name), and hashed on the way (the SHA-256 of its bytes, the content identity
the cache keys use), so that checking a file and hashing it cost one read.

Blocks of a megabyte keep the per-block Python work negligible: the checkers use bulk bytes operations (split,
join, translate, count, one regex substitution) on each block, never a Python loop per byte or per line.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

# Blocks of 1 MB stay in the CPU's caches: a 200 MB FASTQ was checked at 330 MB/s plain and 155 MB/s gzip with
# them, at 226 and 133 MB/s with 8 MB blocks (2 vCPU AMD EPYC). Each block is bounded even for a gzip bomb.
READ_BYTES = 1 << 20  # bytes read from the file at a time
BLOCK_BYTES = 1 << 20  # at most this many (decompressed) bytes per block
GZIP_MAGIC = b"\x1f\x8b"
OTHER_FORMATS = {  # magic bytes -> what the file is, for files the tools cannot read
    b"BZh": "compressed with bzip2",
    b"\xfd7zXZ\x00": "compressed with xz",
    b"\x28\xb5\x2f\xfd": "compressed with zstd",
    b"PK\x03\x04": "a zip archive (or an Excel workbook)",
    b"\xd0\xcf\x11\xe0": "an Excel 97-2003 workbook",
    b"CRAM": "a CRAM file",
}
DECOMPRESSED_FORMATS = {  # the first bytes of the (decompressed) content -> what the file is
    b"BAM\x01": "a BAM file",
    b"BCF\x02": "a BCF file",
}


class Unreadable(Exception):
    """The file cannot be read or decompressed: ``message`` says why, ``fix`` what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def other_format(head: bytes) -> str:
    """What the file is when its first bytes say it is a format no step reads ("" when they do not)."""
    return next(
        (what for magic, what in {**OTHER_FORMATS, **DECOMPRESSED_FORMATS}.items() if head.startswith(magic)), ""
    )


def shown_byte(byte: bytes) -> str:
    """A character for a message: quoted when printable, else its code."""
    text = byte.decode("latin-1")
    return repr(text) if byte.isascii() and text.isprintable() else f"the byte 0x{byte[0]:02x}"


def drain_corrupt_gzip(path: Path, stream: Iterator[bytes], limit: int = 16 << 20) -> None:
    """After a content problem in a gzip file, read on a little (``limit`` bytes of content): a corrupt gzip
    file decodes to garbage before zlib notices, and then the corruption (Unreadable, raised here) is the
    problem to report, not the garbage. A plain file is not read on."""
    if not is_gzip(path):
        return
    for block in stream:
        limit -= len(block)
        if limit <= 0:
            return


Result = TypeVar("Result", covariant=True)


class Check(Protocol[Result]):
    """A streaming check of a file's content (FASTQ, FASTA): fed its blocks in order, then asked for its result."""

    def feed(self, block: bytes) -> None: ...

    def finish(self) -> Result: ...


def check_whole_file(path: Path, check: Check[Result], bad: type[Exception]) -> tuple[Result, str]:
    """Read the whole file once into ``check``: its result and the file's SHA-256. When the check raises ``bad``
    on a gzip file, the corruption found by reading on a little is reported instead (``drain_corrupt_gzip``)."""
    digest = hashlib.sha256()
    stream = blocks(path, digest)
    try:
        for block in stream:
            check.feed(block)
        result = check.finish()
    except bad:
        drain_corrupt_gzip(path, stream)
        raise
    return result, digest.hexdigest()


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def blocks(path: Path, digest: hashlib._Hash | None = None) -> Iterator[bytes]:
    """The file's (decompressed) content in blocks; ``digest`` is fed the file's own bytes. Raises Unreadable
    for a corrupt or truncated gzip file and OSError when the file cannot be read."""
    with open(path, "rb") as handle:
        first = handle.read(max(READ_BYTES, len(GZIP_MAGIC)))
        if digest is not None:
            digest.update(first)
        if first.startswith(GZIP_MAGIC):
            yield from _inflate(handle, first, digest)
            return
        if first:
            yield first
        while chunk := handle.read(BLOCK_BYTES):
            if digest is not None:
                digest.update(chunk)
            yield chunk


def _inflate(handle: BinaryIO, first: bytes, digest: hashlib._Hash | None) -> Iterator[bytes]:
    """Every gzip member in turn (bgzip writes many), as ``gzip -d`` and zlib's gzread read them."""
    inflater = zlib.decompressobj(31)
    pending, read = first, len(first)
    while True:
        try:
            out = inflater.decompress(pending, BLOCK_BYTES)
        except zlib.error as exc:
            where = f"(within its first {read:,} bytes)"
            raise Unreadable(f"the gzip data is corrupt {where} ({exc})", "copy the file again") from None
        if out:
            yield out
        if inflater.eof:  # the end of a member (its unconsumed_tail is stale then: unused_data holds the rest)
            pending = inflater.unused_data
            while not pending.strip(b"\0"):  # none left, or padding, which gzip ignores
                more = handle.read(READ_BYTES)
                if not more:
                    return
                read += len(more)
                if digest is not None:
                    digest.update(more)
                pending += more
            if not pending.startswith(GZIP_MAGIC[: len(pending)]):
                raise Unreadable("the file has data after the end of its gzip stream", "copy the file again")
            inflater = zlib.decompressobj(31)
            continue
        pending = inflater.unconsumed_tail
        if not out and not pending:  # all input used and no output pending: more input is needed
            pending = handle.read(READ_BYTES)
            read += len(pending)
            if digest is not None:
                digest.update(pending)
            if not pending:
                raise Unreadable("the gzip data ends early (truncated)", "copy the complete file again")
