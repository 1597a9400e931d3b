"""Cutting a lane's reads into chunks for a scattered aligner, at the aligner's own batch boundaries.

bwa mem estimates insert sizes per batch of reads, so cutting reads anywhere else changes its output. The
planner cuts the run's own FASTQ files (``bwa_batches`` then ``chunk_sizes``); each chunk's task then copies
its records out of the files (``write_chunk``) before its commands run. Reads an earlier step wrote (fastp's
trimmed reads) are cut the same way by the task itself, when they exist. Standard library only: the job
runner in the tool images imports it.
"""

from __future__ import annotations

import gzip
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def open_reads(path: Path) -> IO[bytes]:
    """gzip or plain, decided by the content, not the name."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value] # a binary file object like any other
    return open(path, "rb")


def _lengths(path: Path) -> Iterator[int]:
    with open_reads(path) as handle:
        for number, line in enumerate(handle):
            if number % 4 == 1:
                yield len(line.rstrip(b"\r\n"))


def bwa_batches(first: Path, second: Path | None, batch_bases: int) -> list[int]:
    """Reads (pairs) in each batch that ``bwa mem -K batch_bases`` will process, in order.

    This follows bwa 0.7.17's bseq_read(): a batch ends after the first pair at which the bases read reach
    ``batch_bases`` and an even number of sequences has been read.
    """
    batches, size, reads, sequences = [], 0, 0, 0
    mates = _lengths(second) if second is not None else None
    for length in _lengths(first):
        size += length + (next(mates) if mates is not None else 0)
        reads += 1
        sequences += 2 if mates is not None else 1
        if size >= batch_bases and sequences % 2 == 0:
            batches.append(reads)
            size, reads, sequences = 0, 0, 0
    if reads:
        batches.append(reads)
    return batches


def chunk_count(reads: int, chunk_reads: int) -> int:
    return max(1, math.ceil(reads / chunk_reads))


def chunk_sizes(batches: list[int], count: int) -> list[int]:
    """Whole batches grouped into at most ``count`` chunks of about equal size: the i-th cut is the batch
    boundary nearest i/count of the reads. (Filling chunks greedily left a 500k and a 118k chunk on the
    E. coli benchmark, and the big one alone set the run's length.)"""
    total = sum(batches)
    count = min(len(batches), count)
    boundaries = list(itertools.accumulate(batches))[:-1]
    cuts = [0]
    for i in range(1, count):
        nearest = min(boundaries, key=lambda end: abs(end - total * i / count))
        if nearest > cuts[-1]:
            cuts.append(nearest)
    cuts.append(total)
    return [end - start for start, end in itertools.pairwise(cuts)]


def write_chunk(files: list[str], names: list[str], skip: int, take: int, out: Path) -> None:
    """Records ``skip`` to ``skip + take`` of each file (R1, R2) into ``out/names[i]``, plain FASTQ."""
    first, last = skip * 4, (skip + take) * 4
    for source, name in zip(files, names, strict=True):
        with open_reads(Path(source)) as handle, open(out / name, "wb") as sink:
            sink.writelines(itertools.islice(handle, first, last))


def cut(args: dict[str, Any], out: Path) -> None:
    """The job runner's ``fastq_chunk``: this task's chunk of a lane's reads, cut before its commands run.
    ``sizes`` is given when the planner could read the files; otherwise the cut is found here, the same way."""
    files, chunks = [str(f) for f in args["files"]], int(args["chunks"])
    sizes: list[int] = args.get("sizes") or []
    if not sizes:
        second = Path(files[1]) if len(files) > 1 else None
        batches = bwa_batches(Path(files[0]), second, int(args["batch_bases"]))
        sizes = chunk_sizes(batches, chunks) if batches else []
        sizes += [0] * (chunks - len(sizes))  # fewer batches than planned chunks: the last chunks are empty
    index = int(args["index"])
    write_chunk(files, list(args["names"]), sum(sizes[:index]), sizes[index], out)
