"""An input file's content in large blocks, read once: decompressed when it is gzip (by its content, as bwa and
``gzip -cdf`` decide, not by its name), and hashed on the way (the SHA-256 of its bytes, the content identity
the cache keys use), so that checking a file and hashing it cost one read.

Blocks of half a megabyte keep the per-block Python work negligible: the checkers use bulk bytes operations
(split, join, translate, count, partition mapped over lines) on each block, never a Python loop per byte or line.
Gzip files are inflated by ISA-L (python-isal) when it is installed, 3-4x faster than zlib (bench/input_checks.py
has the numbers), zlib deciding every failure so that errors read as they always did.
"""

from __future__ import annotations

import hashlib
import importlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Protocol, TypeVar


def _isal_zlib() -> ModuleType | None:
    """ISA-L's inflate when python-isal is installed (a dependency), else None: zlib alone."""
    try:
        return importlib.import_module("isal.isal_zlib")
    except ImportError:
        return None


FAST_ZLIB = _isal_zlib()  # zlib still decides every failure (``_inflate_file``)

# Blocks of 512 KB, a gzip file read 128 KB at a time (about 512 KB of FASTQ once inflated). With larger ones
# the check page-faulted its memory afresh on every block (the C library hands large freed buffers back to the
# system): with 1 MB blocks, a gzip file read 256 KB at a time, a 200 MB FASTQ's check took 57,000-75,000 minor
# faults and 1.2-1.3x the CPU time, plain or gzip, in a fresh process (getrusage, 2 vCPU AMD EPYC). Each call
# to inflate is bounded only against bombs (ISA-L's ran up to 1.5x slower with its output cut at the block size).
READ_BYTES = 1 << 17  # bytes of a gzip file read at a time (and the first block of a plain file)
BLOCK_BYTES = 1 << 19  # the blocks of a plain file
INFLATED_BYTES = 4  # at most this many BLOCK_BYTES of decompressed content per block
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
            yield from _inflate_file(handle, first, digest)
            return
        if first:
            yield first
        while chunk := handle.read(BLOCK_BYTES):
            if digest is not None:
                digest.update(chunk)
            yield chunk


class _HashFrom:
    """A digest fed only from byte ``start`` on: zlib's second read of a file hashes what ISA-L's did not."""

    def __init__(self, digest: hashlib._Hash | None, start: int) -> None:
        self.digest, self.skip = digest, start

    def update(self, data: bytes) -> None:
        if self.digest is not None and len(data) > self.skip:
            self.digest.update(data[self.skip :] if self.skip else data)
        self.skip = max(self.skip - len(data), 0)


def _inflate_file(handle: BinaryIO, first: bytes, digest: hashlib._Hash | None) -> Iterator[bytes]:
    """The content inflated by ISA-L when it is installed, else by zlib. When ISA-L finds the file corrupt or
    truncated, zlib reads it again from the start and decides, as it always did: the same error and message
    (or, were they ever to disagree, zlib's content from where ISA-L stopped, and the rest of the hash)."""
    if FAST_ZLIB is None:
        yield from _inflate(handle, first, digest, zlib)
        return
    done = 0  # bytes of content given
    try:
        for block in _inflate(handle, first, digest, FAST_ZLIB):
            done += len(block)
            yield block
        return
    except Unreadable:
        hashed = handle.tell()
    handle.seek(0)
    again = _HashFrom(digest, hashed)
    first = handle.read(max(READ_BYTES, len(GZIP_MAGIC)))
    again.update(first)
    for block in _inflate(handle, first, again, zlib):
        if done < len(block):
            yield block[done:] if done else block
        done = max(done - len(block), 0)


def _inflate(
    handle: BinaryIO, first: bytes, digest: hashlib._Hash | _HashFrom | None, inflate: ModuleType
) -> Iterator[bytes]:
    """Every gzip member in turn (bgzip writes many), as ``gzip -d`` and zlib's gzread read them; ``inflate``
    is zlib or ISA-L's isal_zlib, which work alike."""
    inflater = inflate.decompressobj(31)
    pending, read = first, len(first)
    while True:
        try:
            out = inflater.decompress(pending, INFLATED_BYTES * BLOCK_BYTES)
        except inflate.error as exc:
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
            inflater = inflate.decompressobj(31)
            continue
        pending = inflater.unconsumed_tail
        if not out and not pending:  # all input used and no output pending: more input is needed
            pending = handle.read(READ_BYTES)
            read += len(pending)
            if digest is not None:
                digest.update(pending)
            if not pending:
                raise Unreadable("the gzip data ends early (truncated)", "copy the complete file again")
