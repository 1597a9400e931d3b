"""What the planner binds to a step's inputs: items (typed files a run's inputs or earlier tasks provide), the
context of one task (the items bound to its inputs), and the binder that turns those files into a task's
placeholders. Kept apart from ``planner`` so the planner holds only the planning itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .templates import Region


@dataclass(frozen=True)
class Ref:
    """A file: ``name`` in the output of ``task``, or a file of the run's inputs (``task`` None)."""

    task: str | None
    name: str | Path


@dataclass(frozen=True)
class LaneFacts:
    """What the run says of a lane: its number in the sample, its reads (pairs) before any trimming, its FASTQ
    files as given, and its read group (PU, LB, PL)."""

    number: int
    reads: int
    raw: tuple[Path, ...]
    unit: str
    library: str
    platform: str


@dataclass
class Item:
    type: str
    sample: str | None
    id: str
    refs: list[Ref]
    lane: LaneFacts | None = None  # items of a lane (its reads, its FASTQ files, what is made of them per lane)
    mate: int | None = None  # fastq items: 1 or 2


Store = dict[str, dict[tuple[str | None, str], list[Item]]]  # type -> (sample, id) -> its items (parts: several)


@dataclass
class Context:
    """Where one task of a step stands: its name, sample, id, and the items bound to its inputs."""

    name: str
    sample: str | None
    id: str
    bound: dict[str, list[Item]]
    item: Item | None = None  # file, lane, chunk: the file or lane
    region: Region | None = None
    chunk: tuple[int, list[int]] | None = None  # (index, reads per chunk of the lane)


def file_name(path: str | Path) -> str:
    """``Path(path).name`` without making a Path (planning 10,000 samples names 200,000 files)."""
    if isinstance(path, Path):
        return path.name
    return path if "/" not in path and path not in ("", ".", "..") else Path(path).name


class Binder:
    """Turns a task's input files into placeholders, collecting its upstream tasks and external files."""

    def __init__(self) -> None:
        self._upstream: dict[str, None] = {}  # ordered sets: a task over 10,000 samples binds 40,000 files
        self._files: dict[Path, int] = {}

    @property
    def upstream(self) -> list[str]:
        return list(self._upstream)

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    def bind(self, ref: Ref) -> str:
        if ref.task is None:
            path = ref.name if isinstance(ref.name, Path) else Path(ref.name)
            index = self._files.setdefault(path, len(self._files))
            return "{file:" + str(index) + "}"
        self._upstream.setdefault(ref.task, None)
        return "{in:" + ref.task + "}/" + str(ref.name)
