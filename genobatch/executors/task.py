"""Tasks: one unit of pipeline work, its content-based cache key, and the JSON the job runner executes.

A task's commands are templates. ``{out}`` is its output directory, ``{in:NAME}`` the output directory of
upstream task NAME, ``{file:N}`` its N-th input file, ``{threads}`` its vCPUs, ``{memory_mib}`` its memory and
``{heap_mib}`` a Java heap that fits in it.
Keys hash the templates, the tool versions, the parameters, the upstream tasks' keys and the input files'
*contents*, never paths nor resources. The same work under another path or name is a cache hit, and a
changed byte anywhere upstream is a miss.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_VERSION = "2"  # bump when the meaning of a task changes in a way the templates do not show
HOST = "host"  # a task's image when it runs with this machine's own tools
_ENCODE = json.JSONEncoder(sort_keys=True).encode  # what json.dumps(value, sort_keys=True) makes


@dataclass
class Pipe:
    """Processes connected stdout -> stdin (like a shell pipe with pipefail); optional stdout file."""

    argv: list[list[str]]
    stdout: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"argv": self.argv, "stdout": self.stdout}


@dataclass
class Task:
    name: str  # unique in the run, e.g. "align:S1:L1:0"
    step: str
    sample: str | None
    pipes: list[Pipe]
    outputs: list[str]  # files the task must leave in {out}
    vcpus: int = 1
    memory_mib: int = 1024
    upstream: list[str] = field(default_factory=list)  # task names referenced as {in:NAME}
    files: list[Path] = field(default_factory=list)  # external inputs, referenced as {file:N}
    builtin: dict[str, Any] | None = None  # an operation the runner does first (cutting a chunk of reads)
    tools: list[str] = field(default_factory=list)  # whose versions belong in the key
    image: str = HOST  # the step's image: a genobatch image name, an image reference, or "host"
    intermediate: bool = False  # deleted once every task that reads it has finished
    group: str | None = None  # tasks with the same group run as one array job
    timeout_seconds: int | None = None
    executor_args: dict[str, list[str]] = field(default_factory=dict)  # an executor's own, e.g. sbatch's
    lists: dict[str, list[str]] = field(default_factory=dict)  # files of lines the runner writes into {out} first
    key: str = ""

    def compute_key(self, upstream_keys: dict[str, str], file_hashes: list[str], versions: dict[str, str]) -> str:
        self.keyed(upstream_keys, file_hashes, versions)
        return self.key

    def keyed(self, upstream_keys: dict[str, str], file_hashes: list[str], versions: dict[str, str]) -> dict[str, Any]:
        """Set the task's key; returns what it is made of, by name, so ``--explain`` can say which part changed.
        The key is the SHA-256 of ``json.dumps(material, sort_keys=True)`` of ``before`` and ``after`` with
        ``pipes`` between them, written so that the commands are encoded once for both (planning 10,000 samples
        keys 80,000 tasks)."""
        encode = _ENCODE
        pipes = [encode(p.to_json()) for p in self.pipes]
        before = {"builtin": self.builtin, "files": file_hashes, "outputs": self.outputs}  # the keys before "pipes"
        if self.lists:  # (absent: the keys of tasks without lists stay)
            before["lists"] = self.lists
        after = {  # and after it
            "step": self.step,
            "tools": {t: versions.get(t, "?") for t in self.tools},
            "upstream": {name: upstream_keys[name] for name in self.upstream},
            "v": KEY_VERSION,
        }
        material = encode(before)[:-1] + ', "pipes": [' + ", ".join(pipes) + "], " + encode(after)[1:]
        self.key = hashlib.sha256(material.encode()).hexdigest()[:32]
        builtin, lists = encode(self.builtin), encode(self.lists)
        command = "[" + ", ".join([*pipes, builtin, lists]) + "]"
        return {
            "command": hashlib.sha256(command.encode()).hexdigest()[:12],
            **{f"tool {t}": versions.get(t, "?") for t in self.tools},
            **{f"input {name}": upstream_keys[name][:12] for name in self.upstream},
            **{f"file {path.name}": digest[:12] for path, digest in zip(self.files, file_hashes, strict=True)},
        }

    def explain_material(
        self, upstream_keys: dict[str, str], file_hashes: list[str], versions: dict[str, str]
    ) -> dict[str, Any]:
        """What the key is made of, by name (``keyed``, which also sets the key)."""
        return self.keyed(upstream_keys, file_hashes, versions)


def java_heap_mib(memory_mib: int) -> int:
    """A JVM's heap within a job's memory: three quarters, the rest for the JVM itself and the tool's files."""
    return max(128, memory_mib * 3 // 4)


def with_resources(text: str, task: Task) -> str:
    """``{threads}``, ``{memory_mib}`` and ``{heap_mib}`` as the task's resources make them."""
    text = text.replace("{threads}", str(max(1, int(task.vcpus)))).replace("{memory_mib}", str(task.memory_mib))
    return text.replace("{heap_mib}", str(java_heap_mib(task.memory_mib)))


PLACEHOLDER = re.compile(r"\{(in|file):([^{}]+)\}")  # {in:TASK} and {file:N}, resolved by each executor


def task_dir(cache: Path, key: str) -> Path:
    """A task's own directory: its output and the partial output of attempts (a container's only writable
    mount, so that the output can be renamed into place inside the container)."""
    return cache / f"{key[:2]}/{key}"


def cache_path(cache: Path, key: str) -> Path:
    """A task's finished output directory; it exists only once the task has succeeded."""
    return task_dir(cache, key) / "out"


def runner_spec(task: Task, cache: Path, keys: dict[str, str]) -> dict[str, Any]:
    """The JSON the job runner reads: templates resolved to this machine's paths."""
    return resolved_spec(
        task,
        lambda name: str(cache_path(cache, keys[name])),
        lambda _, path: str(path.resolve()),
        str(cache_path(cache, task.key)),
    )


def resolved_spec(
    task: Task, upstream_dir: Callable[[str], str], file_path: Callable[[int, Path], str], target: str
) -> dict[str, Any]:
    """The runner's JSON, with ``{in:NAME}`` and ``{file:N}`` resolved by the given functions."""

    upstream = set(task.upstream)

    def placeholder(match: re.Match[str]) -> str:
        kind, value = match.group(1), match.group(2)
        if kind == "in":
            return upstream_dir(value) if value in upstream else match.group()
        index = int(value)
        return file_path(index, task.files[index]) if index < len(task.files) else match.group()

    def resolve(text: str) -> str:  # one pass per text: a task over 10,000 samples has 40,000 placeholders
        return PLACEHOLDER.sub(placeholder, with_resources(text, task)) if "{" in text else text

    def resolve_any(value: Any) -> Any:
        if isinstance(value, str):
            return resolve(value)
        if isinstance(value, list):
            return [resolve_any(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve_any(v) for k, v in value.items()}
        return value

    return {
        "name": task.name,
        "step": task.step,
        "sample": task.sample,
        "key": task.key,
        "target": target,
        "pipes": [{"argv": resolve_any(p.argv), "stdout": p.stdout} for p in task.pipes],
        "builtin": resolve_any(task.builtin),
        "lists": resolve_any(task.lists),
        "outputs": task.outputs,
    }
