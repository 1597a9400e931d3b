"""Progress per step. On a terminal: a live table (rich) with a bar per step, done / running / failed of its
tasks, and a clock and an ETA that tick even while nothing changes. Elsewhere (a log file, CI): one line,
with the clock time, whenever a step's counts change, and at least once a minute.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

STATES = ("done", "cached", "running", "waiting", "failed")
HEARTBEAT_SECONDS = 60  # a plain line at least this often, so that a log shows the run is alive


class Progress:
    def __init__(
        self, steps: list[str], live: bool | None = None, eta: Callable[[], float | None] = lambda: None
    ) -> None:
        """``eta()``: the seconds the remaining tasks should take (from learnt rates), or None."""
        self.steps, self.eta = steps, eta
        self.counts: dict[str, Counter[str]] = {}
        self.live = sys.stdout.isatty() if live is None else live
        self._started = time.monotonic()
        self._last_line, self._last_print = "", 0.0
        self._eta: tuple[float, float | None] = (0.0, None)  # (when computed, value)
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self._live = Live(self, console=Console(), refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, counts: dict[str, Counter[str]]) -> None:
        self.counts = counts
        if self._live is not None:
            return  # the live display redraws itself (``__rich__``), the clock with it
        line = "; ".join(self._step_text(step) for step in self._shown())
        now = time.monotonic()
        if line != self._last_line or now - self._last_print >= HEARTBEAT_SECONDS:
            print(f"[{time.strftime('%H:%M:%S')} {self._clock()}] {line}{self._eta_text(', ')}", flush=True)
            self._last_line, self._last_print = line, now

    def _shown(self) -> list[str]:
        return [s for s in self.steps if sum(self.counts.get(s, Counter()).values())]

    def _step_text(self, step: str) -> str:
        c = self.counts.get(step, Counter())
        total = sum(c.values())
        finished = c["done"] + c["cached"]
        extra = " ".join(f"{c[s]} {s}" for s in ("running", "failed") if c[s])
        return f"{step} {finished}/{total}" + (f" ({extra})" if extra else "")

    def _clock(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def _eta_text(self, prefix: str) -> str:
        now = time.monotonic()
        if now - self._eta[0] >= 1:  # at most once a second: the estimate walks the remaining tasks
            self._eta = (now, self.eta())
        seconds = self._eta[1]
        if not seconds:  # not known, or nothing left
            return ""
        return f"{prefix}ETA ~{max(1, round(seconds / 60))} min" if seconds >= 60 else f"{prefix}ETA <1 min"

    def __rich__(self) -> Group:
        """The live display, drawn anew at each refresh: the clock ticks while a long task runs."""
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("step", no_wrap=True, min_width=max(map(len, self.steps), default=4))
        table.add_column("progress", width=16)
        table.add_column("of", justify="right")
        for state in STATES:
            table.add_column(state, justify="right", no_wrap=True, min_width=len(state))
        for step in self._shown():
            c = self.counts.get(step, Counter())
            total = sum(c.values())
            finished = c["done"] + c["cached"] + c["failed"]
            bar = ProgressBar(total=max(total, 1), completed=finished, width=16)
            table.add_row(step, bar, str(total), *(str(c[s] or "") for s in STATES))
        tasks = sum(sum(c.values()) for c in self.counts.values())
        finished = sum(c["done"] + c["cached"] + c["failed"] for c in self.counts.values())
        header = Text(f"genobatch run  {self._clock()}  {finished} of {tasks} tasks{self._eta_text('  ')}")
        return Group(header, table)
