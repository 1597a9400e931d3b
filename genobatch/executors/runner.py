"""The job runner: what a batch job executes. ``python -m genobatch.executors.runner TASKS.json``

TASKS.json holds a list of task specs; an array job's child runs the one at ``AWS_BATCH_JOB_ARRAY_INDEX``
(a plain job runs the only one). The runner:

1. writes into ``<target>.partial-<job>-<attempt>`` (``{out}`` in the commands),
2. writes the task's ``lists`` (files of input paths, one per line), does its ``builtin`` first, if it has
   one (cutting its chunk of a lane's reads: ``chunks.cut``),
   then runs each pipe with no shell; a pipe fails if any of its processes fails (like ``set -o pipefail``),
3. checks the declared outputs exist, records each output file's size, mtime and SHA-256 in ``.task.json``
   (``manifest``: what the cache verifies before reusing or publishing it), then renames the directory to
   ``<target>``: a task's outputs appear whole, at once, or not at all,
4. on failure, exits non-zero with the failing command and the tail of its stderr on stderr,
5. writes its CPU time and peak memory to ``$GENOBATCH_USAGE_FILE`` if set (a container runtime reads it).

With an ``s3://`` TASKS.json (AWS Batch: no shared file system) the task's paths start with ``{scratch}``,
a fresh local directory: the runner downloads ``stage_in`` there, runs the task, and uploads its output
directory to ``stage_out``, the done marker last (``genobatch.storage.s3``).

Besides boto3 for S3 (imported only then) it uses only the standard library: the tool images carry it
(with the ``genobatch`` package) as ``genobatch-runner``. Its start is most of a trivial task's cost, so it
imports only what every task needs (no subprocess, pathlib, typing or tempfile: posix_spawn and plain paths),
and on the host ``hostrunner.py`` starts it under ``python -S`` (``HOST_RUNNER_ARGV``): about 32 ms of CPU
per trivial task instead of 55 (tests/test_runner.py checks what it imports).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import sys
import time

from genobatch.storage import DONE_MARKER  # the task's spec, run time and output manifest: written last

TYPE_CHECKING = False  # typing costs milliseconds to import; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

# How the host starts the runner (``+ [TASKS.json]``): ``hostrunner.py`` under ``python -S``.
HOST_RUNNER_ARGV = [sys.executable, "-S", os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostrunner.py")]

STDERR_TAIL_LINES = 20
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)  # Python ignores these; the tools get their defaults back


class TaskFailed(Exception):
    pass


def _fill(argv: list[str], out: str) -> list[str]:
    return [arg.replace("{out}", out) for arg in argv]


def _scratch_file(folder: str) -> int:
    """An anonymous file (no name, gone when closed) on ``folder``'s file system: a tool's stderr."""
    try:
        return os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:  # a file system without O_TMPFILE
        path = os.path.join(folder, f".stderr-{os.getpid()}-{time.monotonic_ns()}")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.unlink(path)
        return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _spawn(argv: list[str], stdin: int, stdout: int, stderr: int, cwd: str) -> int:
    """Start one tool with these descriptors as 0, 1 and 2 (nothing else is inherited: Python opens every
    descriptor close-on-exec). posix_spawn: no fork of this process, and no import of ``subprocess``."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate((stdin, stdout, stderr))]
    here = os.getcwd()
    os.chdir(cwd)  # posix_spawn has no working directory of its own before Python 3.13
    try:
        return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setsigdef=DEFAULT_SIGNALS)
    except OSError as exc:
        raise TaskFailed(f"cannot run {argv[0]}: {exc.strerror}") from None
    finally:
        os.chdir(here)


def run_pipe(pipe: dict[str, Any], out: str) -> None:
    """The pipe's processes, each reading the one before (no shell); it fails if any of them fails."""
    commands = [_fill(argv, out) for argv in pipe["argv"]]
    errors = [_scratch_file(out) for _ in commands]
    target = os.path.join(out, _fill([pipe["stdout"]], out)[0]) if pipe.get("stdout") else os.devnull
    sink = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    stdin = os.open(os.devnull, os.O_RDONLY)
    pids: list[int] = []
    try:
        for i, argv in enumerate(commands):
            last = i == len(commands) - 1
            next_stdin, stdout = (-1, sink) if last else os.pipe()
            try:
                pids.append(_spawn(argv, stdin, stdout, errors[i], out))
            finally:  # the child owns these now: a reader that stops early ends its writer (SIGPIPE)
                os.close(stdin)
                stdin = next_stdin
                if not last:
                    os.close(stdout)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        pids.clear()
        logs = [_read_all(fd) for fd in errors]
        for log in logs:  # every tool's stderr reaches the job log
            sys.stderr.buffer.write(log)
        sys.stderr.flush()
        for argv, code, log in zip(commands, codes, logs, strict=True):
            if code != 0:
                tail = log.decode(errors="replace").splitlines()[-STDERR_TAIL_LINES:]
                raise TaskFailed(f"{' '.join(argv)} exited {code}" + ("\n" + "\n".join(tail) if tail else ""))
    finally:
        _stop(pids)
        for fd in [stdin, sink, *errors]:
            if fd >= 0:
                os.close(fd)


def _stop(pids: list[int]) -> None:
    """Kill and reap what is still running (a spawn failed, or the runner is being stopped)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _builtin(op: str) -> Callable[[dict[str, Any], Path], None]:
    """An operation a task may ask the runner to do before its commands (imported only then)."""
    from genobatch.executors import chunks

    operations: dict[str, Callable[[dict[str, Any], Path], None]] = {"fastq_chunk": chunks.cut}
    return operations[op]


def _remove_tree(folder: str) -> None:
    if os.path.lexists(folder):  # shutil costs a few ms to import: most tasks never need it
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def run_task(spec: dict[str, Any]) -> None:
    target = str(spec["target"])
    if os.path.isdir(target):
        print(f"{spec['name']}: already done ({target})", file=sys.stderr)
        return
    job = os.environ.get("AWS_BATCH_JOB_ID", "local").replace(":", "_")
    partial = f"{target}.partial-{job}-{os.environ.get('AWS_BATCH_JOB_ATTEMPT', '1')}"
    _remove_tree(partial)
    os.makedirs(partial)
    started = time.time()
    try:
        for name, lines in (spec.get("lists") or {}).items():  # files of paths: no command line grows with them
            _write(os.path.join(partial, name), "".join(f"{line}\n" for line in lines))
        builtin = spec.get("builtin") or {}
        if builtin:
            from pathlib import Path

            _builtin(builtin["op"])(builtin, Path(partial))
        for pipe in spec["pipes"]:
            run_pipe(pipe, partial)
        for name in builtin.get("names", []):  # what the builtin made for the commands (a chunk's reads)
            if os.path.lexists(os.path.join(partial, name)):
                os.unlink(os.path.join(partial, name))
        missing = [name for name in spec["outputs"] if not os.path.exists(os.path.join(partial, name))]
        if missing:
            raise TaskFailed(f"finished without writing {', '.join(missing)}")
        done = {**spec, "seconds": round(time.time() - started, 3), "files": manifest(partial)}
        _write(os.path.join(partial, DONE_MARKER), json.dumps(done))
        try:
            os.rename(partial, target)
        except OSError:
            if not os.path.isdir(target):
                raise
            _remove_tree(partial)  # another attempt finished the same work first
    except BaseException:
        _remove_tree(partial)
        raise


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def file_sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def manifest(folder: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (relative path -> size, mtime and SHA-256): how a later run proves a cached
    output is still what the task wrote. Regular files only (no symlinks), in path order."""
    root = os.fspath(folder)
    found: list[tuple[list[str], str]] = []
    for where, _, names in os.walk(root):  # symlinked folders are listed, not entered, as pathlib's rglob
        for name in names:
            path = os.path.join(where, name)
            if os.path.isfile(path) and not os.path.islink(path) and not (where == root and name == DONE_MARKER):
                relative = os.path.relpath(path, root)
                found.append((relative.split(os.sep), relative))
    files: dict[str, dict[str, Any]] = {}
    for _, relative in sorted(found):
        st = os.stat(os.path.join(root, relative))
        files[relative] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha256": file_sha256(os.path.join(root, relative)),
        }
    return files


def write_usage(path: str) -> None:
    """CPU seconds of this process and every tool it ran, and the largest peak RSS among them (KiB)."""
    own, tools = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + tools.ru_utime + tools.ru_stime
    usage = {"cpu_seconds": round(cpu, 3), "max_rss_kib": max(own.ru_maxrss, tools.ru_maxrss)}
    _write(path, json.dumps(usage))


def _fill_scratch(value: Any, scratch: str) -> Any:
    if isinstance(value, str):
        return value.replace("{scratch}", scratch)
    if isinstance(value, list):
        return [_fill_scratch(v, scratch) for v in value]
    if isinstance(value, dict):
        return {k: _fill_scratch(v, scratch) for k, v in value.items()}
    return value


def run_staged(spec: dict[str, Any]) -> None:
    """Run a task whose inputs and output live in S3, in a scratch directory deleted afterwards."""
    import tempfile
    from pathlib import Path

    from genobatch.storage import s3 as storage

    client = storage.client()
    if storage.exists(client, f"{spec['stage_out']}/{storage.DONE_MARKER}"):
        print(f"{spec['name']}: already done ({spec['stage_out']})", file=sys.stderr)
        return
    scratch = tempfile.mkdtemp(prefix="genobatch-", dir=os.environ.get("GENOBATCH_SCRATCH"))
    try:
        spec = _fill_scratch(spec, scratch)
        for uri, local in spec["stage_in"]:
            if uri.endswith("/"):
                storage.download_dir(client, uri, Path(local))
            else:
                storage.download(client, uri, Path(local))
        run_task(spec)
        storage.upload_dir(client, Path(spec["target"]), spec["stage_out"])
    finally:
        _remove_tree(scratch)


def load_tasks(location: str) -> list[dict[str, Any]]:
    if location.startswith("s3://"):
        from genobatch.storage import s3 as storage

        bucket, key = storage.split(location)
        body = storage.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        specs: list[dict[str, Any]] = json.loads(body)
        return specs
    with open(location) as handle:
        loaded: list[dict[str, Any]] = json.load(handle)
    return loaded


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: genobatch-runner TASKS.json  (runs the task at $AWS_BATCH_JOB_ARRAY_INDEX, default 0)")
        return 0 if sys.argv[1:] in (["--help"], ["-h"]) else 2
    here = os.path.dirname(sys.executable)  # tools installed beside this Python (MultiQC) are found
    os.environ["PATH"] = os.pathsep.join([here, os.environ.get("PATH", "")])
    specs = load_tasks(sys.argv[1])
    index = int(os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX", "0"))
    spec = specs[index]
    try:
        run_staged(spec) if spec.get("stage_out") else run_task(spec)
    except TaskFailed as exc:
        print(f"genobatch: task {spec['name']} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if os.environ.get("GENOBATCH_USAGE_FILE"):
            write_usage(os.environ["GENOBATCH_USAGE_FILE"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
