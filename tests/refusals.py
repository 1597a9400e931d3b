"""Helpers for the bad-input corpus: run ``genobatch run`` on something wrong and prove it was refused cleanly.

A refusal is: exit 2, every expected part of the message (file, line, what, fix) on stderr, no traceback, nothing
started (no cache, no engine state) and nothing written anywhere under the test's folder, except the work
directory's record of checked input files (``<work>/inputs.json``-like facts that make a resumed check fast).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ALLOWED_IN_WORK = {"inputs.json"}  # the work directory's remembered input checks may be written


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: what a refused run must leave as it was."""
    found: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            is_dir = path.is_dir() and not path.is_symlink()  # a folder's mtime moves with its files: not compared
            found[str(path.relative_to(root))] = (0, 0) if is_dir else (st.st_size, st.st_mtime_ns)
    return found


def genobatch(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genobatch", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def assert_refused(
    result: subprocess.CompletedProcess[str],
    root: Path,
    before: dict[str, tuple[int, int]],
    expected: Sequence[str],
    *,
    work: Path | None = None,
    fix: bool = True,
) -> None:
    """``result`` refused the input as genobatch must: see the module's docstring."""
    where = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, where
    assert "Traceback" not in result.stderr + result.stdout, where
    for part in expected:
        assert part in result.stderr, f"{part!r} not in stderr\n{where}"
    if fix:
        assert "fix:" in result.stderr, where
    after = snapshot(root)
    work_rel = str(work.relative_to(root)) if work is not None and work.is_relative_to(root) else None
    changed = {
        path
        for path in set(before) ^ set(after) | {p for p in before if p in after and before[p] != after[p]}
        if not (
            work_rel and (path == work_rel or (path.startswith(work_rel + "/") and Path(path).name in ALLOWED_IN_WORK))
        )
    }
    assert not changed, f"a refused run wrote {sorted(changed)}\n{where}"
