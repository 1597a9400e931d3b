"""A real single-host Slurm cluster (slurmctld, slurmd, slurmdbd with MariaDB, munged) for the tests, started
once per session by ``scripts/slurm-cluster.sh`` in a temporary folder and stopped after. Tests that need it
skip where it cannot run (not root, Slurm not installed), except in CI (``GENOBATCH_REQUIRE_SLURM=1``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "slurm-cluster.sh"


def slurm_missing() -> str | None:
    if os.getuid() != 0:
        return "a test Slurm cluster needs root"
    missing = [c for c in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd") if shutil.which(c) is None]
    return f"not installed: {', '.join(missing)} (scripts/slurm-cluster.sh install)" if missing else None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cluster's folder; ``SLURM_CONF`` points at it for this process and what it starts."""
    why = slurm_missing()
    if why is not None:
        if os.environ.get("GENOBATCH_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, f"{started.stdout}\n{started.stderr}"
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield folder
    finally:
        subprocess.run([str(SCRIPT), "stop", str(folder)], capture_output=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
