"""The tools a run's steps use on this machine (``--runtime host``, and ``image: host`` steps): are they
installed, which versions (part of every cache key). The version commands come from the step declarations;
the same probe reads versions inside the tool images when ``genobatch images build`` smoke-tests them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from genobatch.images import probe_version
from genobatch.problems import InputError, Problem

from .task import HOST


def host_path() -> str:
    """PATH with genobatch's own interpreter's folder first: tools installed beside it (its extras) are found."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def tool_versions(tools: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Each host tool's version (``tools``: tool -> (version command, image)); raises InputError naming every
    missing tool and where its package is named."""
    versions, problems = {}, []
    path = host_path()
    for tool, (command, image) in sorted(tools.items()):
        program = shlex.split(command)[0]
        found = shutil.which(program, path=path)
        if found is None:
            package = f" (its Debian package is named in images/{image}/Containerfile)" if image != HOST else ""
            fix = f"install {program}{package}, or run in the tool images (genobatch images build; --runtime podman)"
            problems.append(Problem(Path(program), None, f"{tool} is not installed", fix))
            continue
        versions[tool] = probe_version(shlex.join([found, *shlex.split(command)[1:]])) or "unknown"
    if problems:
        raise InputError(problems)
    return versions
