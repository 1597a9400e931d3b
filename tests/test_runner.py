"""The job runner as the host runs it (``HOST_RUNNER_ARGV``: ``python -S hostrunner.py TASKS.json``), on real
tools: pipes, outputs, failures, and that it stays light (what it imports decides a trivial task's cost)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from genobatch.executors.runner import HOST_RUNNER_ARGV


def run(
    tmp_path: Path, pipes: list[dict[str, Any]], outputs: list[str], *flags: str
) -> subprocess.CompletedProcess[str]:
    spec = {"name": "t", "target": str(tmp_path / "out" / "t"), "pipes": pipes, "outputs": outputs}
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([spec]))
    argv = [HOST_RUNNER_ARGV[0], *flags, *HOST_RUNNER_ARGV[1:], str(tasks)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)


def test_a_pipe_writes_its_file_and_the_manifest_lists_files_in_path_order(tmp_path: Path) -> None:
    pipes: list[dict[str, Any]] = [
        {"argv": [["printf", "b\\na\\n"], ["sort"]], "stdout": "sorted.txt"},
        {"argv": [["sh", "-c", "mkdir a a-b && touch a/b a-b/x .hidden && ln -s sorted.txt link"]]},
    ]
    result = run(tmp_path, pipes, ["sorted.txt"])
    assert result.returncode == 0, result.stderr
    target = tmp_path / "out" / "t"
    assert (target / "sorted.txt").read_text() == "a\nb\n"
    files = json.loads((target / ".task.json").read_text())["files"]
    expected = [str(p.relative_to(target)) for p in sorted(target.rglob("*")) if p.is_file() and not p.is_symlink()]
    assert list(files) == [name for name in expected if name != ".task.json"]
    assert list(files) == [".hidden", "a/b", "a-b/x", "sorted.txt"]
    assert not list((tmp_path / "out").glob("*.partial-*"))


def test_a_failing_tool_fails_the_task_with_its_stderr_and_leaves_nothing(tmp_path: Path) -> None:
    pipes = [{"argv": [["sh", "-c", "echo oops >&2; exit 3"], ["cat"]], "stdout": "x"}]
    result = run(tmp_path, pipes, ["x"])
    assert result.returncode == 1
    assert "sh -c echo oops >&2; exit 3 exited 3\noops" in result.stderr
    assert not (tmp_path / "out" / "t").exists() and not list((tmp_path / "out").iterdir())


def test_a_missing_tool_and_a_missing_output_are_named(tmp_path: Path) -> None:
    missing = run(tmp_path, [{"argv": [["no-such-tool-here", "x"]]}], [])
    assert missing.returncode == 1 and "cannot run no-such-tool-here: No such file or directory" in missing.stderr
    unwritten = run(tmp_path, [{"argv": [["true"]]}], ["never.txt"])
    assert unwritten.returncode == 1 and "finished without writing never.txt" in unwritten.stderr


def test_a_reader_that_stops_early_ends_its_writer(tmp_path: Path) -> None:
    """``yes | head``: the runner holds no read end of the pipe, so ``yes`` gets SIGPIPE (restored to its
    default for the tools) instead of writing forever; like ``set -o pipefail``, the pipe then fails."""
    result = run(tmp_path, [{"argv": [["yes"], ["head", "-n", "2"]], "stdout": "two"}], ["two"])
    assert result.returncode == 1 and "yes exited -13" in result.stderr


def test_the_runner_imports_only_what_a_task_needs(tmp_path: Path) -> None:
    result = run(tmp_path, [{"argv": [["true"]]}], [], "-X", "importtime")
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "json" in imported and "genobatch.executors.runner" in imported
    assert imported.isdisjoint({"site", "subprocess", "pathlib", "typing", "tempfile", "shutil", "boto3"}), imported
