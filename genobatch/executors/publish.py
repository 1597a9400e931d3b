"""Publishing outputs into the outdir: each file appears whole (copy to a hidden temp name, then rename).

Files are copied, not linked, so that editing a published file can never change the cache behind it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def publish_file(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.genobatch-partial")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def publish(files: dict[Path, Path]) -> None:
    """Copy every (source -> destination); the caller calls this only once all of a sample's tasks succeeded."""
    for source, destination in files.items():
        publish_file(source, destination)
