"""The tools the pipeline runs: are they installed, and which versions (part of every cache key)."""

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


def tool_versions() -> dict[str, str]:
    """Each tool's version; raises InputError naming every missing tool and how to install it."""
    versions, problems = {}, []
    for tool, (command, pattern, install) in TOOLS.items():
        if shutil.which(command[0]) is None:
            problems.append(Problem(command[0], None, f"{tool} is not installed", install))  # type: ignore[arg-type]
            continue
        # bwa prints its version in the usage text and exits 1; that is expected here.
        result = subprocess.run(command, capture_output=True, check=False)
        match = re.search(pattern, (result.stdout + result.stderr).decode(errors="replace"))
        versions[tool] = match.group(1) if match else "unknown"
    if problems:
        raise InputError(problems)
    return versions
