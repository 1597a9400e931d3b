"""Bad options and places are refused before any compute: exit 2, the option (or file and line) and the fix,
nothing started and nothing written (tests/refusals.py). The sheet, FASTQ and FASTA cases are in
test_bad_inputs_files.py; read-only mounts and full disks in test_run_faults.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .pipeline_helpers import DATA, needs_tools
from .refusals import assert_refused, genobatch, snapshot

pytestmark = needs_tools
SARS = DATA / "sarscov2"


@dataclass(frozen=True)
class Case:
    args: Callable[[Path], list[str]]  # options besides --input/--fasta/--runtime (folder -> options)
    expected: list[str]  # parts of the message
    fix: bool = True  # argparse's own refusals state the rule in the message rather than as a "fix:" line
    outdir: bool = True  # add --outdir <folder>/out
    work: bool = True  # add --work-dir <folder>/work


def put(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def usage(option: str, rule: str) -> Case:
    """An option argparse refuses: its message names the option and the rule."""
    return Case(lambda d: option.split(), [f"argument {option.split()[0]}", rule], fix=False)


CASES: dict[str, Case] = {
    "outdir empty": Case(lambda d: ["--outdir", ""], ["--outdir is empty", "fix: give the folder"], outdir=False),
    "outdir is a file": Case(
        lambda d: ["--outdir", str(put(d / "results.txt", "x"))],
        ["results.txt exists and is not a folder"],
        outdir=False,
    ),
    "outdir under a file": Case(
        lambda d: ["--outdir", str(put(d / "f", "x") / "sub")], ["is not a folder"], outdir=False
    ),
    "outdir is the work dir": Case(
        lambda d: ["--outdir", str(d / "work")], ["is inside the work directory", "keep results apart"], outdir=False
    ),
    "outdir inside the work dir": Case(
        lambda d: ["--outdir", str(d / "work" / "results")], ["is inside the work directory"], outdir=False
    ),
    "work dir is a file": Case(
        lambda d: ["--work-dir", str(put(d / "work.txt", "x"))],
        ["--work-dir", "exists and is not a folder"],
        work=False,
    ),
    "max-memory below FastQC's JVM": Case(
        lambda d: ["--max-memory", "200MB"],
        ["--max-memory: step fastqc would get 200 MiB", "cannot run in less than 300 MiB", "--skip-tools fastqc"],
    ),
    "max-memory below MultiQC's": Case(
        lambda d: ["--max-memory", "200MB", "--skip-tools", "fastqc"], ["step multiqc would get 200 MiB"]
    ),
    "settings give FastQC too little": Case(
        lambda d: ["-c", str(put(d / "s.yaml", "steps:\n  fastqc:\n    memory: 100 MB\n"))],
        ["-c (the settings file): step fastqc would get 100 MiB"],
    ),
    "max-memory 0": usage("--max-memory 0", "less than the smallest job memory"),
    "max-memory 100": Case(lambda d: ["--max-memory", "100MB"], ["step fastqc would get 100 MiB"]),
    "max-memory words": usage("--max-memory lots", "is not a memory size: use e.g. 16GB"),
    "max-cpus 0": usage("--max-cpus 0", "0 is not a whole number >= 1"),
    "max-cpus negative": usage("--max-cpus -1", "-1 is not a whole number >= 1"),
    "max-cpus text": usage("--max-cpus two", "invalid positive value"),
    "max-depth negative": usage("--max-depth -5", "-5 is not a whole number >= 1"),
    "max-depth 0": usage("--max-depth 0", "0 is not a whole number >= 1"),
    "chunk-reads 0": usage("--chunk-reads 0", "0 is not a whole number >= 1"),
    "regions finer than 1 kb": Case(
        lambda d: ["--regions", "100000"],
        ["--regions 100000 would cut the 29,903-base reference (MN908947.3.fa) into regions of 0 bases", "29 or fewer"],
    ),
    "regions negative": Case(lambda d: ["--regions", "-1"], ["--regions must be >= 0", "fix:"]),
    "ploidy 3": usage("--ploidy 3", "ploidy 3 is not supported"),
    "unknown tool": Case(lambda d: ["--tools", "gatk"], ["gatk"]),
    "skipping a needed step": Case(lambda d: ["--skip-tools", "align"], ["align"]),
    "unknown executor": usage("--executor lsf", "invalid choice: 'lsf'"),
    "unknown runtime": usage("--runtime singularity", "invalid choice: 'singularity'"),
    "another executor's flag": Case(lambda d: ["--partition", "short"], ["--partition is an option of"]),
    "params file missing": Case(lambda d: ["-params-file", str(d / "nope.yaml")], ["nope.yaml"]),
    "params file unknown key": Case(
        lambda d: ["-params-file", str(put(d / "p.yaml", "max_cpu: 2\n"))], ["p.yaml:1: unknown option 'max_cpu'"]
    ),
    "params file bad value": Case(
        lambda d: ["-params-file", str(put(d / "p.yaml", "ploidy: 1\nmax_cpus: 0\n"))], ["p.yaml:2: max_cpus"]
    ),
    "params file not YAML": Case(lambda d: ["-params-file", str(put(d / "p.yaml", "a: [1,\n"))], ["p.yaml"]),
    "settings unknown step": Case(
        lambda d: ["-c", str(put(d / "s.yaml", "steps:\n  algn:\n    cpus: 2\n"))], ["s.yaml:2", "algn"]
    ),
    "settings bad memory": Case(
        lambda d: ["-c", str(put(d / "s.yaml", "steps:\n  align:\n    memory: lots\n"))], ["s.yaml:3"]
    ),
    "steps file missing": Case(lambda d: ["--steps", str(d / "mine.yaml")], ["mine.yaml"]),
    "steps file incomplete": Case(lambda d: ["--steps", str(put(d / "mine.yaml", "name: mine\n"))], ["mine.yaml"]),
    "reference missing": Case(lambda d: ["--fasta", str(d / "ref.fa")], ["ref.fa", "the reference does not exist"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_option_is_refused(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    extra = case.args(tmp_path)
    argv = ["run", "--input", str(SARS / "samples.csv"), "--runtime", "host"]
    argv += [] if "--fasta" in extra else ["--fasta", str(SARS / "MN908947.3.fa")]
    argv += ["--outdir", str(tmp_path / "out")] if case.outdir else []
    argv += ["--work-dir", str(tmp_path / "work")] if case.work else []
    before = snapshot(tmp_path)
    result = genobatch(*argv, *extra, cwd=tmp_path)
    assert_refused(result, tmp_path, before, case.expected, work=tmp_path / "work", fix=case.fix)


def test_resources_a_step_can_run_in_are_accepted(tmp_path: Path) -> None:
    """The checks refuse only what cannot run: 300 MB suits every default step."""
    argv = ["run", "--input", str(SARS / "samples.csv"), "--fasta", str(SARS / "MN908947.3.fa"), "--dry-run"]
    result = genobatch(
        *argv, "--outdir", str(tmp_path / "o"), "--work-dir", str(tmp_path / "w"), "--max-memory", "300MB"
    )
    assert result.returncode == 0, result.stderr
