"""Which files the dashboard may read, and reading the end of a log.

No path ever comes from a URL: files are found from the run records and the engine's database, and each is
resolved (symlinks followed) and proven inside its root before a byte is read. The root is the work
directory, except for a run's report and MultiQC report, which live in the run's outdir.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")  # run ids, job ids (array children: ``id:3``)
TAIL_BYTES = 64 * 1024  # a log's end shown when it is first opened
CHUNK_BYTES = 256 * 1024  # at most this much of a log per request


def safe_name(name: str) -> bool:
    """A run or job id as genobatch makes them: no ``/``, no ``..``, nothing a path could be built from."""
    return bool(SAFE_NAME.match(name)) and ".." not in name


def inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path | None:
    """``path``, resolved, if it is an existing regular file inside ``root`` (resolved too); else None."""
    try:
        real = Path(path).resolve(strict=True)
        real_root = Path(root).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not real.is_relative_to(real_root) or not real.is_file():
        return None
    return real


@dataclass
class Chunk:
    text: str
    offset: int  # where this text starts in the file
    next_offset: int  # where the next request should start
    size: int  # the file's size now


def read_chunk(path: Path, offset: int | None) -> Chunk:
    """The log from ``offset`` (None: its last ``TAIL_BYTES``), at most ``CHUNK_BYTES``, cut at a line's end
    where it can be. A file that shrank (a capped log rewritten) is read again from its end."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if offset is None or offset > size or offset < 0:
            offset = max(0, size - TAIL_BYTES)
        handle.seek(offset)
        data = handle.read(CHUNK_BYTES)
    if len(data) == CHUNK_BYTES and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]
    return Chunk(data.decode("utf-8", errors="replace"), offset, offset + len(data), size)
