"""Publishing outputs into the outdir: each file appears whole (copy to a hidden temp name, then rename), and a
file already published from the same cached output, untouched since, is left as it is: a rerun rewrites
nothing (make-like tools downstream see no change, an ``s3://`` outdir is not uploaded again).

Files are copied, not linked, so that editing a published file can never change the cache behind it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

Verify = Callable[[Path, str], None]  # (a copied file, its path under the source, "" for a file) -> raises if changed


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, proven to stay under ``root`` once normalised; ValueError otherwise. Every path
    genobatch writes under the outdir or the work directory is made with this."""
    clean = os.path.normpath(relative)
    if not relative or os.path.isabs(clean) or clean == "." or clean == ".." or clean.startswith("../"):
        raise ValueError(f"{relative!r} is not a path inside {root}")
    return root / clean


def _accept(copy: Path, under: str) -> None:
    """No check asked for."""


def publish_file(source: Path, destination: Path, verify: Verify = _accept) -> None:
    """A file, or a folder (MultiQC's data), copied beside ``destination``, each copied file checked by ``verify``,
    and then renamed into place: a failed check leaves the destination as it was."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.genobatch-partial")
    old = destination.with_name(f".{destination.name}.genobatch-old")
    try:
        if source.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
            shutil.copytree(source, temporary)
            for copy in [p for p in temporary.rglob("*") if p.is_file()]:
                verify(copy, str(copy.relative_to(temporary)))
            if destination.is_dir():  # a folder cannot replace a folder in one rename: move the old one aside
                os.replace(destination, old)
        else:
            shutil.copyfile(source, temporary)
            verify(temporary, "")
        os.replace(temporary, destination)
    except OSError as exc:  # say which side failed: a full outdir is not a damaged cache
        raise OSError(exc.errno, f"{exc.strerror} (publishing {source.name})", str(destination)) from exc
    finally:
        for leftover in (temporary, old):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def local_state(path: Path) -> str | None:
    """What says a local file (or every file in a folder) changed: sizes and modification times."""
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return ";".join(
            f"{p.relative_to(path) if p != path else ''}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files
        )
    except OSError:
        return None


class PublishedIndex:
    """Where each published file came from (a cached task output) and its state when published
    (``<work>/published.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, list[str | None]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def unchanged(self, target: str, source: str, state: str | None) -> bool:
        """Published from ``source`` and untouched since (its state is the one recorded)."""
        return state is not None and self.entries.get(target) == [source, state]

    def record(self, target: str, source: str, state: str | None) -> None:
        self.entries[target] = [source, state]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".partial")
        temporary.write_text(json.dumps(self.entries))
        temporary.replace(self.path)
