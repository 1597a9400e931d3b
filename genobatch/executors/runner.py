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
(with the ``genobatch`` package) as ``genobatch-runner``.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from genobatch.executors import chunks
from genobatch.storage.s3 import DONE_MARKER  # the task's spec, run time and output manifest: written last

STDERR_TAIL_LINES = 20


class TaskFailed(Exception):
    pass


def _fill(argv: list[str], out: Path) -> list[str]:
    return [arg.replace("{out}", str(out)) for arg in argv]


def run_pipe(pipe: dict[str, Any], out: Path) -> None:
    commands = [_fill(argv, out) for argv in pipe["argv"]]
    stdout_file = open(out / _fill([pipe["stdout"]], out)[0], "wb") if pipe.get("stdout") else None  # noqa: SIM115
    errors = [tempfile.TemporaryFile() for _ in commands]  # noqa: SIM115 - closed below
    procs: list[subprocess.Popen[bytes]] = []
    try:
        previous: IO[bytes] | None = None
        for i, argv in enumerate(commands):
            last = i == len(commands) - 1
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=previous or subprocess.DEVNULL,
                    cwd=out,
                    stderr=errors[i],
                    stdout=(stdout_file or subprocess.DEVNULL) if last else subprocess.PIPE,
                )
            except OSError as exc:
                raise TaskFailed(f"cannot run {argv[0]}: {exc.strerror}") from None
            if previous is not None:
                previous.close()  # the next process owns the read end now
            previous = proc.stdout if not last else None
            procs.append(proc)
        codes = [proc.wait() for proc in procs]
        for err in errors:  # every tool's stderr reaches the job log
            err.seek(0)
            sys.stderr.buffer.write(err.read())
        sys.stderr.flush()
        for argv, code, err in zip(commands, codes, errors, strict=True):
            if code != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").splitlines()[-STDERR_TAIL_LINES:]
                raise TaskFailed(f"{' '.join(argv)} exited {code}" + ("\n" + "\n".join(tail) if tail else ""))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for err in errors:
            err.close()
        if stdout_file is not None:
            stdout_file.close()


BUILTINS = {"fastq_chunk": chunks.cut}  # operations a task may ask the runner to do before its commands


def run_task(spec: dict[str, Any]) -> None:
    target = Path(spec["target"])
    if target.is_dir():
        print(f"{spec['name']}: already done ({target})", file=sys.stderr)
        return
    job = os.environ.get("AWS_BATCH_JOB_ID", "local").replace(":", "_")
    partial = target.with_name(f"{target.name}.partial-{job}-{os.environ.get('AWS_BATCH_JOB_ATTEMPT', '1')}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.time()
    try:
        for name, lines in (spec.get("lists") or {}).items():  # files of paths: no command line grows with them
            (partial / name).write_text("".join(f"{line}\n" for line in lines))
        builtin = spec.get("builtin") or {}
        if builtin:
            BUILTINS[builtin["op"]](builtin, partial)
        for pipe in spec["pipes"]:
            run_pipe(pipe, partial)
        for name in builtin.get("names", []):  # what the builtin made for the commands (a chunk's reads)
            (partial / name).unlink(missing_ok=True)
        missing = [name for name in spec["outputs"] if not (partial / name).exists()]
        if missing:
            raise TaskFailed(f"finished without writing {', '.join(missing)}")
        done = {**spec, "seconds": round(time.time() - started, 3), "files": manifest(partial)}
        (partial / DONE_MARKER).write_text(json.dumps(done))
        try:
            partial.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(partial)  # another attempt finished the same work first
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (relative path -> size, mtime and SHA-256): how a later run proves a cached
    output is still what the task wrote."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.parent == folder and path.name == DONE_MARKER:
            continue
        st = path.stat()
        files[str(path.relative_to(folder))] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha256": file_sha256(path),
        }
    return files


def write_usage(path: str) -> None:
    """CPU seconds of this process and every tool it ran, and the largest peak RSS among them (KiB)."""
    own, tools = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + tools.ru_utime + tools.ru_stime
    usage = {"cpu_seconds": round(cpu, 3), "max_rss_kib": max(own.ru_maxrss, tools.ru_maxrss)}
    Path(path).write_text(json.dumps(usage))


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
        shutil.rmtree(scratch, ignore_errors=True)


def load_tasks(location: str) -> list[dict[str, Any]]:
    if location.startswith("s3://"):
        from genobatch.storage import s3 as storage

        bucket, key = storage.split(location)
        body = storage.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        specs: list[dict[str, Any]] = json.loads(body)
        return specs
    loaded: list[dict[str, Any]] = json.loads(Path(location).read_text())
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
