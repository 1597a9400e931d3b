"""Proof that a cached task output is still what its task wrote, before it is reused or published.

The job runner records each output file's size, modification time and SHA-256 in the output's ``.task.json``
(``runner.manifest``). A cached output is reused only if every recorded file is there with its size, and, when its
modification time moved (someone touched, edited or restored it), with its digest: a truncated, edited or deleted
file makes the task run again, and the run says why. Files are re-hashed only when their time moved, so checking a
large cache costs a ``stat`` per file, not a read.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from genobatch.storage import DONE_MARKER

from .runner import file_sha256


class OutputChanged(Exception):
    """A cached output is not what its task wrote; the message says which file and how."""


def recorded_files(output: Path) -> dict[str, dict[str, Any]] | None:
    """The manifest the runner wrote (None for outputs written before manifests existed)."""
    try:
        done = json.loads((output / DONE_MARKER).read_text())
    except (OSError, ValueError):
        raise OutputChanged(f"its record {DONE_MARKER} is missing or damaged") from None
    files = done.get("files") if isinstance(done, dict) else None
    return files if isinstance(files, dict) else None


def verify_output(output: Path) -> None:
    """Raise OutputChanged unless every file the task wrote is in ``output``, unchanged."""
    files = recorded_files(output)
    if files is None:
        return  # written by an older genobatch: nothing recorded to check against
    for name, facts in files.items():
        path = output / name
        try:
            st = path.stat()
        except OSError:
            raise OutputChanged(f"{name} was deleted") from None
        if st.st_size != facts["size"]:
            raise OutputChanged(f"{name} is {st.st_size} bytes, but its task wrote {facts['size']}")
        if st.st_mtime_ns != facts["mtime_ns"] and file_sha256(path) != facts["sha256"]:
            raise OutputChanged(f"{name} was modified after its task wrote it (its SHA-256 differs)")


def verify_copy(recorded: dict[str, dict[str, Any]] | None, copy: Path, under: str = "", *, name: str) -> None:
    """A published copy of output ``name`` (or of the file ``under`` that folder) has the digest its task recorded
    (``recorded``: the output's ``recorded_files``): the file was not changed while the run went on."""
    relative = f"{name}/{under}" if under else name
    expected = (recorded or {}).get(relative)
    if expected is not None and file_sha256(copy) != expected["sha256"]:
        raise OutputChanged(f"{relative}: the copy's SHA-256 differs from what its task wrote")


def set_aside(output: Path) -> Path:
    """Move a damaged output out of the cache (kept for inspection, beside it) so its task runs again."""
    aside = output.with_name(f"{output.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        output.rename(aside)
    except OSError:
        shutil.rmtree(output, ignore_errors=True)
    return aside
