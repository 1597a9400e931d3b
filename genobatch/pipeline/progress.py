"""Progress per step: a live table on a terminal (rich), one plain line per change otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter

from rich.console import Console
from rich.live import Live
from rich.table import Table

STATES = ("done", "cached", "running", "waiting", "failed")


class Progress:
    def __init__(self, steps: list[str], live: bool | None = None) -> None:
        self.steps = steps
        self.counts: dict[str, Counter[str]] = {step: Counter() for step in steps}
        self.live = sys.stdout.isatty() if live is None else live
        self._last_line = ""
        self._started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self._live = Live(self._table(), console=Console(), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)

    def update(self, counts: dict[str, Counter[str]]) -> None:
        self.counts = counts
        if self._live is not None:
            self._live.update(self._table())
            return
        line = "; ".join(
            f"{step} " + " ".join(f"{counts[step][s]} {s}" for s in STATES if counts[step][s])
            for step in self.steps
            if sum(counts.get(step, Counter()).values())
        )
        if line != self._last_line:
            print(f"[{time.monotonic() - self._started:7.1f}s] {line}", flush=True)
            self._last_line = line

    def _table(self) -> Table:
        table = Table(title=f"genobatch run — {time.monotonic() - self._started:.0f} s")
        table.add_column("step")
        for state in STATES:
            table.add_column(state, justify="right")
        for step in self.steps:
            table.add_row(step, *(str(self.counts.get(step, Counter())[s] or "") for s in STATES))
        return table
