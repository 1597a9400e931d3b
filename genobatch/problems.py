"""Problems with what the user gave (a file, a line, what is wrong, how to fix it), from any layer, reported
all at once before any compute starts: ``genobatch run`` prints them and exits 2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Problem:
    path: Path
    line: int | None
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


class InputError(Exception):
    """Bad input; ``problems`` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
