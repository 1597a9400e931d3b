"""Real mounts for fault tests (a small tmpfs to fill, a read-only view): root only. Without root the tests skip,
unless GENOBATCH_REQUIRE_ROOT_MOUNTS=1 (CI), where they fail instead."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def mount(args: list[str], target: Path) -> None:
    """Run ``mount``; skip (or fail, with GENOBATCH_REQUIRE_ROOT_MOUNTS=1) when this machine does not allow it."""
    result = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        why = f"cannot mount ({' '.join(args)}: {result.stderr.strip()}); these tests need root"
        if os.environ.get("GENOBATCH_REQUIRE_ROOT_MOUNTS") == "1":
            pytest.fail(why)
        pytest.skip(why)


def unmount(target: Path) -> None:
    subprocess.run(["umount", "--lazy", str(target)], check=False)
