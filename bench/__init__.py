"""The benchmarks (``python -m bench.<name>``): scripts that print their measurements and save them as JSON
under ``bench/results/``. What they all do alike lives here, once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` as indented JSON to ``path`` (making its folder) and say where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {path}")
