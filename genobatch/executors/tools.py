"""The tools a run's steps use on this machine (``--runtime host``, and ``image: host`` steps): are they
installed, which versions (part of every cache key). The version commands come from the step declarations;
the same probe reads versions inside the tool images when ``genobatch images build`` smoke-tests them.
"""

from __future__ import annotations

import concurrent.futures
import os
import shlex
import shutil
import sys
from pathlib import Path

from genobatch.images import probe_version
from genobatch.problems import InputError, Problem

from .task import HOST

MAX_PROBES = 8  # version commands run at once


def host_path() -> str:
    """PATH with genobatch's own interpreter's folder first: tools installed beside it (its extras) are found."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def tool_versions(tools: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Each host tool's version (``tools``: tool -> (version command, image)); raises InputError naming every
    missing tool and where its package is named."""
    probes, problems = {}, []
    path = host_path()
    for tool, (command, image) in sorted(tools.items()):
        program = shlex.split(command)[0]
        found = shutil.which(program, path=path)
        if found is None:
            package = f" (its Debian package is named in images/{image}/Containerfile)" if image != HOST else ""
            fix = f"install {program}{package}, or run in the tool images (genobatch images build; --runtime podman)"
            problems.append(Problem(Path(program), None, f"{tool} is not installed", fix))
            continue
        probes[tool] = shlex.join([found, *shlex.split(command)[1:]])
    if problems:
        raise InputError(problems)
    # side by side: one after the other, the germline steps' five probes took 1.1 s of every run's start
    # (FastQC's Java and MultiQC's Python start slowly); each waits on its process, so threads serve
    with concurrent.futures.ThreadPoolExecutor(max(1, min(len(probes), MAX_PROBES))) as pool:
        found_versions = pool.map(probe_version, probes.values())
        return {tool: version or "unknown" for tool, version in zip(probes, found_versions, strict=True)}
