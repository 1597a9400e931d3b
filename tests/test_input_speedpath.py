"""The input check's fast path (issue 14) finds what the plain one does: ISA-L's inflate, with zlib deciding
every failure, gives the same facts, read lengths, SHA-256 and errors (same lines, same messages) as zlib
alone on tricky gzip files, whatever the block sizes; read names are cut as the regex definition cuts them."""

from __future__ import annotations

import gzip
import hashlib
import random
import re
import struct
import zlib
from array import array
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from isal import isal_zlib

from genobatch.pipeline import input_fastq, input_stream

from .input_files import SARS, reads

NAMES = [f"r{i}/1 1:N:0:ACGT" for i in range(60)]
SMALL = reads(NAMES)
BAD_AT_THE_END = reads(NAMES[:40]) + reads(["late"], qualities="I" * 9)  # on line 164
REAL = b"".join(gzip.decompress((SARS / "subsample1_R1.fastq.gz").read_bytes()).splitlines(True)[:3200])  # 800 reads


def member(data: bytes, extra: bytes = b"BC\x02\x00\x00\x00") -> bytes:
    """One gzip member with an extra field, as bgzip writes them."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    header = b"\x1f\x8b\x08\x04" + b"\x00" * 4 + b"\x00\xff" + struct.pack("<H", len(extra)) + extra
    return header + body + struct.pack("<II", zlib.crc32(data), len(data))


def bgzip(data: bytes, size: int) -> bytes:
    """Members of ``size`` bytes of content each, then bgzip's empty end-of-file member."""
    return b"".join(member(data[i : i + size]) for i in range(0, len(data), size)) + member(b"")


def flipped(data: bytes, where: int) -> bytes:
    return data[:where] + bytes([data[where] ^ 0x5A]) + data[where + 1 :]


COMPRESSED = gzip.compress(SMALL)
CASES: dict[str, tuple[bytes, str]] = {  # file content, and what the check finds
    "one member": (COMPRESSED, "ok"),
    "bgzip members with extra fields": (bgzip(SMALL, 300), "ok"),
    "members then zero padding": (COMPRESSED + gzip.compress(SMALL) + b"\0" * 100, "ok"),
    "CRLF line endings": (gzip.compress(SMALL.replace(b"\n", b"\r\n")), "ok"),
    "bad read at the end": (bgzip(BAD_AT_THE_END, 1000), "BadFastq"),
    "CR CR LF": (gzip.compress(SMALL.replace(b"\n", b"\r\r\n", 9)), "BadFastq"),
    "empty file": (b"", "BadFastq"),
    "empty gzip": (gzip.compress(b""), "BadFastq"),
    "compressed twice": (gzip.compress(COMPRESSED), "BadFastq"),
    "truncated in the trailer": (COMPRESSED[:-3], "Unreadable"),
    "truncated midway": (COMPRESSED[: len(COMPRESSED) // 2], "Unreadable"),
    "truncated in the header": (COMPRESSED[:5], "Unreadable"),
    "truncated after a member": (bgzip(SMALL, 300)[:-40], "Unreadable"),
    "corrupt midway": (flipped(COMPRESSED, len(COMPRESSED) // 2), "Unreadable"),
    "corrupt CRC": (flipped(COMPRESSED, len(COMPRESSED) - 6), "Unreadable"),
    "corrupt length": (flipped(COMPRESSED, len(COMPRESSED) - 2), "Unreadable"),
    "corrupt header": (flipped(COMPRESSED, 2), "Unreadable"),
    "data after the gzip stream": (COMPRESSED + b"trailing garbage", "Unreadable"),
}


def outcome(path: Path) -> tuple[Any, ...]:
    """What the check finds, all of it: facts (with the SHA-256) and read lengths, or the error's every word."""
    lengths = array("L")
    try:
        facts = input_fastq.check_fastq_file(path, lengths)
    except input_fastq.BadFastq as bad:
        return "BadFastq", bad.line, bad.message, bad.fix
    except input_stream.Unreadable as unreadable:
        return "Unreadable", unreadable.message, unreadable.fix
    return "ok", facts.to_json(), list(lengths)


def both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The outcome with ISA-L's inflate, and with zlib's alone."""
    monkeypatch.setattr(input_stream, "FAST_ZLIB", isal_zlib)
    fast = outcome(path)
    monkeypatch.setattr(input_stream, "FAST_ZLIB", None)
    return fast, outcome(path)


def test_isal_is_the_inflate_used_when_installed() -> None:
    assert input_stream.FAST_ZLIB is isal_zlib


@pytest.mark.parametrize("block", [1, 7, 4096, None], ids=lambda b: f"{b}-byte blocks" if b else "default blocks")
@pytest.mark.parametrize("case", CASES)
def test_isal_finds_what_zlib_finds(
    case: str, block: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if block:
        monkeypatch.setattr(input_stream, "READ_BYTES", block)
        monkeypatch.setattr(input_stream, "BLOCK_BYTES", block)
    data, found = CASES[case]
    path = tmp_path / "reads.fq.gz"
    path.write_bytes(data)
    fast, plain = both(path, monkeypatch)
    assert fast == plain
    assert fast[0] == found, fast
    if found == "ok":
        assert fast[1]["sha256"] == hashlib.sha256(data).hexdigest()
        assert fast[2] == [10] * fast[1]["records"] and fast[1]["records"] in (60, 120)
    if case == "bad read at the end":
        assert fast[1:3] == (164, "9 quality characters for 10 bases")
    if case == "corrupt midway":  # zlib's own words, not ISA-L's
        assert "Error -3 while decompressing data" in fast[1], fast


def test_any_damaged_byte_is_found_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real reads, gzip and bgzip, each with one byte changed at 60 random places."""
    rng = random.Random(14)
    path = tmp_path / "reads.fq.gz"
    kinds = []
    for compressed in (gzip.compress(REAL), bgzip(REAL, 20_000)):
        for where in rng.sample(range(len(compressed)), 30):
            path.write_bytes(flipped(compressed, where))
            fast, plain = both(path, monkeypatch)
            assert fast == plain, where
            kinds.append(fast[0])
    assert kinds.count("Unreadable") > 40, kinds  # most changes break the data (a few hit the header's time)


def test_when_isal_alone_fails_zlib_reads_on_and_the_hash_stays_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were ISA-L to refuse a file that zlib reads, zlib's reading goes on where ISA-L's stopped: the same
    content, facts and SHA-256 as zlib's alone (ISA-L is made to fail on its 5th call here)."""
    calls = 0
    error: Any = isal_zlib.error  # (its stub calls it an instance)

    class Failing:
        def __init__(self, wbits: int) -> None:
            self.inner = isal_zlib.decompressobj(wbits)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            nonlocal calls
            calls += 1
            if calls == 5:
                raise error("made to fail")
            return bytes(self.inner.decompress(data, max_length))

    failing = SimpleNamespace(decompressobj=Failing, error=isal_zlib.error)
    monkeypatch.setattr(input_stream, "READ_BYTES", 3000)
    monkeypatch.setattr(input_stream, "BLOCK_BYTES", 2000)
    path = tmp_path / "reads.fq.gz"
    path.write_bytes(bgzip(REAL, 50_000))
    monkeypatch.setattr(input_stream, "FAST_ZLIB", failing)
    digest = hashlib.sha256()
    assert b"".join(input_stream.blocks(path, digest)) == REAL
    assert calls >= 5 and digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    fast = outcome(path)
    monkeypatch.setattr(input_stream, "FAST_ZLIB", None)
    assert fast == outcome(path) and fast[0] == "ok"


def test_a_gzip_bomb_comes_in_bounded_blocks(tmp_path: Path) -> None:
    path = tmp_path / "bomb.fq.gz"
    path.write_bytes(gzip.compress(bytes(64 << 20)))
    sizes = list(map(len, input_stream.blocks(path)))
    assert sum(sizes) == 64 << 20 and max(sizes) == input_stream.INFLATED_BYTES * input_stream.BLOCK_BYTES


def test_read_names_are_cut_as_bwa_cuts_them() -> None:
    """``mate_names`` (bytes.partition, one substitution) equals bwa 0.7.17's rule applied name by name (up to
    the first space or tab; a trailing /<digit> dropped once, from names longer than 2), on names with spaces,
    tabs, both, /<digit> suffixes ("r1/2/1" keeps "/2"; "/1" alone is kept), empty names and comments."""
    rng = random.Random(5)
    parts = [b"r1", b"A00:8:H5:1:1101:10", b"/1", b"/2", b"/x", b" ", b"\t", b"1:N:0", b"", b"/", b"9"]
    for _ in range(300):
        heads = [b"@" + b"".join(rng.choices(parts, k=rng.randint(0, 6))) for _ in range(rng.randint(1, 8))]
        names = [re.split(rb"[ \t]", head[1:])[0] for head in heads]
        bwa = [name[:-2] if len(name) > 2 and name[-2:-1] == b"/" and name[-1:].isdigit() else name for name in names]
        text = b"".join(b"@" + name + b"\n" for name in bwa)
        assert input_fastq.mate_names(heads) == text == input_fastq.mate_names(heads, b"\n".join(heads))
