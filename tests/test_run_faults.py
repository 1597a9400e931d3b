"""A run survives what happens to machines: SIGKILL at any moment, damaged or deleted cache entries, full disks
and read-only mounts. Each is followed by a rerun that reruns no finished task and publishes the same bytes as a
clean run (the engine's own faults, a corrupt state database included: test_engine_faults.py)."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .mounts import mount, unmount
from .pipeline_helpers import DATA, needs_tools, run_pipeline

pytestmark = needs_tools
SARS = DATA / "sarscov2"
FASTA = SARS / "MN908947.3.fa"
EXTRA = ("--ploidy", "1", "--tools", "joint")  # a summary step over all samples too


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The VCFs (and their indexes) of a run nothing happened to, by path under the outdir."""
    root = tmp_path_factory.mktemp("clean")
    run_pipeline(SARS / "samples.csv", FASTA, root / "out", root / "work", *EXTRA)
    return vcfs(root / "out")


def vcfs(outdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(outdir)): p.read_bytes() for p in sorted(outdir.rglob("*.vcf.gz*"))}


def finished(work: Path) -> set[str]:
    """Names of the tasks whose outputs are in the cache (each output's record names its task)."""
    return {json.loads(p.read_text())["name"] for p in work.glob("cache/*/*/out/.task.json")}


def ran(outdir: Path, before: set[str]) -> set[str]:
    """Tasks that ran (COMPLETED or FAILED) in the runs whose traces are new since ``before``."""
    info = outdir / "pipeline_info"
    names: set[str] = set()
    for path in info.glob("execution_trace_*.txt") if info.is_dir() else []:
        if path.name not in before:
            with open(path) as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            names |= {row["name"] for row in rows if row["status"] in ("COMPLETED", "FAILED")}
    return names


def traces(outdir: Path) -> set[str]:
    info = outdir / "pipeline_info"
    return {p.name for p in info.glob("execution_trace_*.txt")} if info.is_dir() else set()


def start(outdir: Path, work: Path, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "genobatch", "run", "--input", str(SARS / "samples.csv"), "--fasta", str(FASTA)]
    argv += ["--outdir", str(outdir), "--work-dir", str(work), "--runtime", "host", *EXTRA]
    with open(log, "wb") as output:
        return subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def test_sigkill_at_random_points_then_resume(tmp_path: Path, clean: dict[str, bytes]) -> None:
    """12 SIGKILLs at random moments of one run and its resumes (every other one kills the whole process group,
    as a lost machine would, the others only genobatch, whose jobs' orphans the next engine must clean up). After
    each, the next attempt reruns no task that had finished; the last one completes with the clean run's bytes."""
    rng = random.Random(20261130)
    outdir, work = tmp_path / "out", tmp_path / "work"
    kills = 0
    while kills < 12:
        done, seen = finished(work), traces(outdir)
        log = tmp_path / f"attempt-{kills}.log"
        proc = start(outdir, work, log)
        time.sleep(rng.uniform(0.3, 9.0))
        if proc.poll() is not None:  # it finished first: start over from nothing for the remaining kills
            assert proc.returncode == 0, log.read_text()
            assert not (ran(outdir, seen) & done), "a finished task ran again"
            for path in (outdir, work):
                subprocess.run(["rm", "-rf", str(path)], check=True)
            continue
        if kills % 2:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert not (ran(outdir, seen) & done), f"kill {kills}: a task finished before it ran again"
    done, seen = finished(work), traces(outdir)
    run_pipeline(SARS / "samples.csv", FASTA, outdir, work, *EXTRA)
    assert not (ran(outdir, seen) & done), "the last resume reran a finished task"
    assert vcfs(outdir) == clean, "the resumed VCFs differ from a clean run's"


def test_damaged_cache_entries_run_again(tmp_path: Path, clean: dict[str, bytes]) -> None:
    """A truncated VCF, a deleted BAM and a byte changed in place (same size, the file's time moved) are found
    before reuse: each task runs again, the run says why, and the published files are the clean run's."""
    outdir, work = tmp_path / "out", tmp_path / "work"
    run_pipeline(SARS / "samples.csv", FASTA, outdir, work, *EXTRA)
    outputs = {json.loads(p.read_text())["name"]: p.parent for p in work.glob("cache/*/*/out/.task.json")}
    vcf = outputs["concat:subsample1"] / "subsample1.vcf.gz"
    vcf.write_bytes(vcf.read_bytes()[:100])
    (outputs["merge:subsample2"] / "subsample2.bam").unlink()
    joint = outputs["joint"] / "joint.vcf.gz"
    data = bytearray(joint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    joint.write_bytes(bytes(data))
    seen = traces(outdir)
    result = run_pipeline(SARS / "samples.csv", FASTA, outdir, work, *EXTRA)
    assert "concat:subsample1 runs again: subsample1.vcf.gz is 100 bytes" in result.stderr, result.stderr
    assert "merge:subsample2 runs again: subsample2.bam was deleted" in result.stderr
    assert "joint runs again: joint.vcf.gz was modified after its task wrote it" in result.stderr
    assert {"concat:subsample1", "merge:subsample2", "joint"} <= ran(outdir, seen)
    assert vcfs(outdir) == clean
    assert list(work.glob("cache/*/*/out.damaged-*")), "damaged outputs are kept aside for inspection"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 700 KiB tmpfs of its own (the test's full disk); unmounted after."""
    folder = tmp_path / "small"
    folder.mkdir()
    mount(["-t", "tmpfs", "-o", "size=700k", "tmpfs"], folder)
    try:
        yield folder
    finally:
        unmount(folder)


def grow(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)  # mounted: must work


def test_full_outdir_stops_cleanly_and_resumes(tmp_path: Path, tmpfs: Path, clean: dict[str, bytes]) -> None:
    work = tmp_path / "work"
    first = run_pipeline(SARS / "samples.csv", FASTA, tmpfs, work, *EXTRA, expect=1)
    assert "No space left on device (publishing" in first.stderr, first.stderr
    assert "run the same command again to resume" in first.stderr
    assert "Traceback" not in first.stderr
    assert not [p for p in tmpfs.rglob(".*genobatch-partial*")], "no half-written file is left"
    done, seen = finished(work), traces(tmpfs)
    grow(tmpfs, "20m")
    run_pipeline(SARS / "samples.csv", FASTA, tmpfs, work, *EXTRA)
    assert not ran(tmpfs, seen) & done
    assert vcfs(tmpfs) == clean


def test_full_work_dir_stops_within_seconds_and_resumes(tmp_path: Path, tmpfs: Path) -> None:
    outdir = tmp_path / "out"
    started = time.monotonic()
    first = run_pipeline(SARS / "samples.csv", FASTA, outdir, tmpfs, *EXTRA, expect=None)
    assert first.returncode in (1, 2), first.stderr
    assert time.monotonic() - started < 60, "a full disk never hangs the run"
    assert "No space left on device" in first.stderr or "disk is full" in first.stderr, first.stderr
    assert "Traceback" not in first.stderr
    grow(tmpfs, "200m")
    done, seen = finished(tmpfs), traces(outdir)
    run_pipeline(SARS / "samples.csv", FASTA, outdir, tmpfs, *EXTRA)
    assert not ran(outdir, seen) & done


def test_read_only_mounts_are_refused_before_compute(tmp_path: Path, tmpfs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for outdir, work in ((tmpfs / "out", tmp_path / "w1"), (tmp_path / "out", tmpfs / "work")):
        result = run_pipeline(SARS / "samples.csv", FASTA, outdir, work, *EXTRA, expect=2)
        assert "is on a read-only file system" in result.stderr, result.stderr
        assert "fix:" in result.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "w1" / "cache").exists()
