"""The tools the pipeline runs: are they installed, and which versions (part of every cache key).

The same probe reads versions on the host and inside a tool image (``genobatch images build``), so that a
run records what really ran, whichever runtime ran it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from .inputs import InputError, Problem

# tool -> (command that prints the version, pattern that captures it, how to install it)
TOOLS = {
    "bwa": (["bwa"], r"Version: (\S+)", "apt-get install bwa"),
    "samtools": (["samtools", "--version"], r"samtools (\S+)", "apt-get install samtools"),
    "bcftools": (["bcftools", "--version"], r"bcftools (\S+)", "apt-get install bcftools"),
    "fastqc": (["fastqc", "--version"], r"FastQC v(\S+)", "apt-get install fastqc"),
    "multiqc": ([sys.executable, "-m", "multiqc", "--version"], r"version (\S+)", "pip install multiqc"),
}


def probe_version(tool: str, prefix: tuple[str, ...] = ()) -> str | None:
    """The tool's version as its own output says, run after ``prefix`` (e.g. ``podman run IMAGE``)."""
    command, pattern, _ = TOOLS[tool]
    # bwa prints its version in the usage text and exits 1; that is expected here.
    result = subprocess.run([*prefix, *command], capture_output=True, check=False)
    match = re.search(pattern, (result.stdout + result.stderr).decode(errors="replace"))
    return match.group(1) if match else None


def tool_versions(tools: list[str] | None = None) -> dict[str, str]:
    """Each host tool's version; raises InputError naming every missing tool and how to install it."""
    versions, problems = {}, []
    for tool in tools if tools is not None else list(TOOLS):
        command, _, install = TOOLS[tool]
        if shutil.which(command[0]) is None:
            problems.append(Problem(command[0], None, f"{tool} is not installed", install))  # type: ignore[arg-type]
            continue
        versions[tool] = probe_version(tool) or "unknown"
    if problems:
        raise InputError(problems)
    return versions
