"""``genobatch steps``: the steps a run can use, built in and your own (``--steps``), as ``--tools`` names them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from genobatch.pipeline.library import Library, order


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    steps = subparsers.add_parser(
        "steps",
        parents=[common],
        help="list the steps (built in and your own) in the order they run",
        description="Every step genobatch knows, in the order a run with all of them would take; optional ones "
        "run only when named in --tools.",
    )
    steps.add_argument("--steps", type=Path, action="append", default=[], help="your own step file or folder")


def run(args: argparse.Namespace) -> int:
    library = Library.load(args.steps)
    rows = [
        (
            step.name,
            "--tools" if step.optional else "default",
            step.scatter + (f" (gathers {step.gathers})" if step.gathers else ""),
            step.image,
            step.description,
        )
        for step in order(list(library.steps.values()))
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
    return 0
