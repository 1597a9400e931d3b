"""The engine against the machine's faults: a full disk, a damaged or read-only state database, a job that
prints 100 MB, an engine killed while its job runs on. Real SQLite, real processes, real tmpfs mounts (root).

The mounts need root: without it these tests skip, unless GENOBATCH_REQUIRE_ROOT_MOUNTS=1 (then they fail).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from genobatch.batch import BatchClient, Engine
from genobatch.batch.container import STATE_LABEL
from genobatch.batch.daemon import engine_command
from genobatch.batch.errors import EngineFailed, StateUnusable
from genobatch.batch.jobs import abandon_open_jobs
from genobatch.batch.logcap import LOG_HEAD_BYTES, LOG_LIMIT_BYTES, LogCopier
from genobatch.batch.model import ExitReason, JobStatus, Mount
from genobatch.batch.runtime import find_marked_processes
from genobatch.batch.store import Store
from genobatch.executors.contract import JobSpec
from genobatch.executors.local import LocalBackend

from .conftest import FAST, define, run_until_idle, sh, submit
from .container_helpers import RUNNER
from .mounts import mount, unmount


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system (tmpfs), to fill."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount(["-t", "tmpfs", "-o", "size=4m", "tmpfs"], disk)
    try:
        yield disk
    finally:
        unmount(disk)


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a directory, the same directory mounted read-only elsewhere): chmod does not stop root, a mount does."""
    source, view = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    view.mkdir()
    mount(["--bind", str(source)], view)
    try:
        mount(["-o", "remount,bind,ro"], view)
        yield source, view
    finally:
        unmount(view)


def fill(disk: Path) -> None:
    """Fill the file system of ``disk`` to the last byte."""
    block = b"\0" * 4096
    with open(disk / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(disk / "filler", "ab", buffering=0) as filler, pytest.raises(OSError):
        filler.write(b"x")  # a partial block: now nothing at all is left


def statuses_of(client: BatchClient, job_ids: list[str]) -> dict[str, str]:
    return {d["jobId"]: d["status"] for d in client.describe_jobs(job_ids)["jobs"]}


# --- a full disk --------------------------------------------------------------------------------------------
def test_a_full_disk_stops_the_engine_within_seconds_and_a_new_engine_finishes_the_jobs(
    small_disk: Path, tmp_path: Path
) -> None:
    state, ran = (small_disk / "state").resolve(), tmp_path / "ran.log"
    backend = LocalBackend(state, engine="thread", settings=FAST)
    script = f'sleep 1; echo "$AWS_BATCH_JOB_ID" >> {ran}'
    specs = [JobSpec(f"job{i}", sh(script), vcpus=0.5, memory_mib=64, retry_attempts=3) for i in range(8)]
    job_ids = [backend.submit(spec) for spec in specs]
    fill(small_disk)
    filled = time.monotonic()
    with pytest.raises(EngineFailed) as failed:
        while True:  # as the pipeline's driver polls; before the fix the engine thread died and this looped forever
            backend.poll(job_ids)
            assert time.monotonic() - filled < 15, "the engine went on (or hung) on a full disk"
            time.sleep(0.1)
    noticed = time.monotonic() - filled
    assert noticed < 15
    fault = failed.value
    assert fault.errno == errno.ENOSPC and "is full" in fault.cause and str(state) in fault.cause, fault
    assert "free space" in fault.fix
    with pytest.raises(EngineFailed):
        backend.submit(JobSpec("late", ["true"], memory_mib=64))  # submit raises it too
    assert find_marked_processes(state) == [], "the engine killed its attempts before it stopped"
    backend.close()

    with sqlite3.connect(state / "state.db") as conn:  # still a sound database: nothing half-written
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == len(job_ids)

    (small_disk / "filler").unlink()
    run_until_idle(state)
    client = BatchClient(state)
    assert set(statuses_of(client, job_ids).values()) == {"SUCCEEDED"}
    assert set(ran.read_text().split()) == set(job_ids)
    client.close()
    print(f"full disk noticed by the backend {noticed:.2f} s after the disk filled")


def test_a_full_disk_under_a_log_loses_its_end_but_never_blocks_the_job(small_disk: Path) -> None:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    copier = LogCopier([(read_end, small_disk / "stdout.log")])
    fill(small_disk)
    writer = threading.Thread(target=lambda: [os.write(write_end, b"y" * 65536) for _ in range(128)])
    writer.start()
    writer.join(timeout=20)
    assert not writer.is_alive(), "the job blocked on its own output"
    os.close(write_end)
    copier.finish(5)
    [log] = copier.logs.values()
    assert log.lost == 128 * 65536 and log.error is not None and "space" in log.error


# --- a damaged state database -------------------------------------------------------------------------------
def make_state(state_dir: Path, jobs: int = 300) -> None:
    client = BatchClient(state_dir)
    definition = define(client, "old", ["true"])
    client.submit_jobs([{"jobName": f"j{i}", "jobQueue": "default", "jobDefinition": definition} for i in range(jobs)])
    client.close()  # the last connection: SQLite checkpoints the WAL into state.db and removes it


def garbage(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


def truncated(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def zero_bytes(db: Path) -> None:
    os.truncate(db, 0)


def wrong_schema(db: Path) -> None:
    db.unlink()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE samples (name TEXT, reads INTEGER)")
        conn.execute("INSERT INTO samples VALUES ('s1', 100)")
    conn.close()


@pytest.mark.parametrize("damage", [garbage, truncated, zero_bytes, wrong_schema], ids=lambda f: f.__name__)
def test_a_damaged_state_database_is_moved_aside_with_a_warning_and_a_new_one_works(
    damage: object, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_state(state_dir)
    db = state_dir / "state.db"
    assert callable(damage)
    damage(db)
    damaged = db.read_bytes()
    with caplog.at_level(logging.WARNING, logger="genobatch.store"):
        client = BatchClient(state_dir)  # the CLI's open: no traceback
    [aside] = [p for p in state_dir.glob("state.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == damaged, "the damaged file is kept, as it was"
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(aside) in warning and str(db) in warning
    job = submit(client, define(client, "new", ["true"]))
    run_until_idle(state_dir)
    assert statuses_of(client, [job]) == {job: "SUCCEEDED"}
    assert client.list_jobs(jobQueue="default", jobStatus="SUBMITTED")["jobSummaryList"] == [], "a new database"
    client.close()


def test_damage_the_open_does_not_read_is_found_by_the_engine_start(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_state(state_dir, jobs=3000)
    db = state_dir / "state.db"
    with open(db, "r+b") as handle:  # the table's pages, not the header or the schema
        handle.seek(db.stat().st_size // 2)
        handle.write(os.urandom(8 * 4096))
    Store(state_dir).close()  # the CLI's quick open does not read those pages...
    assert not list(state_dir.glob("state.db.corrupt-*"))
    with caplog.at_level(logging.WARNING, logger="genobatch.store"):
        engine = Engine(state_dir, settings=FAST)  # ...the engine's quick_check does
    assert len([p for p in state_dir.glob("state.db.corrupt-*") if p.name.count("-") == 2]) == 1
    assert any("quick_check" in r.getMessage() for r in caplog.records)
    engine.run(until_idle=True)
    engine.store.close()


def test_damage_a_query_meets_is_remembered_and_the_next_open_sets_the_database_aside(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_state(state_dir, jobs=3000)
    db = state_dir / "state.db"
    with open(db, "r+b") as handle:
        handle.seek(db.stat().st_size // 2)
        handle.write(os.urandom(8 * 4096))
    store = Store(state_dir)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        abandon_open_jobs(store, "gone")  # what `genobatch run` does first: it reads every open job
    store.close()
    with caplog.at_level(logging.WARNING, logger="genobatch.store"):
        Store(state_dir).close()  # else every later run would fail the same way
    assert any("an earlier use found it damaged" in r.getMessage() for r in caplog.records)
    assert len([p for p in state_dir.glob("state.db.corrupt-*") if p.name.count("-") == 2]) == 1
    assert not (state_dir / "state.db.damaged").exists()
    Store(state_dir).close()  # the new database is not set aside in turn
    assert len([p for p in state_dir.glob("state.db.corrupt-*") if p.name.count("-") == 2]) == 1


def test_a_read_only_state_directory_is_a_clear_error(read_only_view: tuple[Path, Path]) -> None:
    source, view = read_only_view
    make_state(source / "state", jobs=3)
    for open_it in (BatchClient, Engine, Store):
        with pytest.raises(StateUnusable) as refused:
            open_it(view / "state")
        fault = refused.value
        assert fault.errno == errno.EROFS, fault
        assert str(view / "state") in fault.cause and "read-only file system" in fault.cause
        assert "remount it read-write" in fault.fix and "--state-dir" in fault.fix
    with pytest.raises(StateUnusable, match=r"read-only file system.*remount"):
        BatchClient(view / "new-state")  # one that does not exist yet
    assert sorted(os.listdir(source / "state")) == ["state.db", "state.db.lock"], "nothing was moved aside"


# --- a job that prints 100 MB -------------------------------------------------------------------------------
PRINT_100_MB = r"""
import sys
own = open(sys.argv[1], "wb")  # the job's own output file: all of it, whatever its log keeps
pad = b"x" * 52
for block in range(100):
    data = b"".join(b"%04d:%05d %s\n" % (block, line, pad) for line in range(16384))  # 1 MiB
    sys.stdout.buffer.write(data)
    own.write(data)
sys.stdout.buffer.write(b"THE END\n")
own.write(b"THE END\n")
print("errors go here", file=sys.stderr)
"""


def test_a_job_printing_100_mb_keeps_the_head_and_the_tail_of_it(
    client: BatchClient, state_dir: Path, tmp_path: Path
) -> None:
    own = tmp_path / "own.txt"
    job = submit(client, define(client, "loud", [sys.executable, "-c", PRINT_100_MB, str(own)], memory=512))
    started = time.monotonic()
    run_until_idle(state_dir)
    engine_seconds = time.monotonic() - started
    detail = client.describe_jobs([job])["jobs"][0]
    assert detail["status"] == "SUCCEEDED"
    everything = own.read_bytes()
    assert len(everything) == 100 * 2**20 + len(b"THE END\n"), "the job's own file is whole"

    stdout, stderr = client.log_paths(job)
    log = stdout.read_bytes()
    assert len(log) <= LOG_LIMIT_BYTES + 200
    assert log[:LOG_HEAD_BYTES] == everything[:LOG_HEAD_BYTES], "the head, as written"
    marker = re.search(rb"\[genobatch: ([\d,]+) bytes of this log were dropped here[^\n]*\]\n", log)
    assert marker is not None and marker.start() == LOG_HEAD_BYTES
    tail = log[marker.end() :]
    assert everything.endswith(tail) and tail.endswith(b"THE END\n"), "the tail, as written, up to the last line"
    assert tail.startswith(b"00") and b"\n" not in tail[:10], "the tail starts on a whole line"
    dropped = int(marker.group(1).replace(b",", b""))
    assert LOG_HEAD_BYTES + dropped + len(tail) == len(everything), "the marker counts what is missing"
    assert stderr.read_text() == "errors go here\n"

    direct_started = time.monotonic()
    with open(tmp_path / "direct.log", "wb") as direct:  # the same job writing straight to a file
        subprocess.run([sys.executable, "-c", PRINT_100_MB, str(tmp_path / "own2.txt")], stdout=direct, check=True)
    direct_seconds = time.monotonic() - direct_started
    print(f"100 MB job: {engine_seconds:.2f} s through the engine, {direct_seconds:.2f} s writing to a file")
    assert engine_seconds < 3 * direct_seconds + 3, "the capped log does not slow the job down"


# --- an engine killed while its jobs run on -----------------------------------------------------------------
WAIT_THEN_EXIT = (
    'echo start >> {side}; while [ ! -e {go} ]; do sleep 0.05; done; echo done >> {side}; echo "output after"; '
    "exit {code}"
)


@contextlib.contextmanager
def engine_process(state_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``genobatch engine run`` as its own process, as the CLI starts it; killed at the end whatever happens."""
    engine = subprocess.Popen(engine_command(state_dir, "--poll-interval", "0.05"), stderr=subprocess.DEVNULL)
    try:
        yield engine
    finally:
        engine.kill()
        engine.wait()


@pytest.fixture
def no_orphans(state_dir: Path) -> Iterator[None]:
    """Whatever a test leaves running of the state directory's attempts is killed after it."""
    yield
    for pid in find_marked_processes(state_dir.resolve()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_engine_when(engine: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        assert time.monotonic() < deadline and engine.poll() is None, "the engine did not start the jobs"
        time.sleep(0.05)
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()


def waiting_job(client: BatchClient, name: str, side: Path, go: Path, code: int, **extra: Any) -> str:
    script = WAIT_THEN_EXIT.format(side=side, go=go, code=code)
    return submit(client, define(client, name, sh(script), vcpus=0.5), **extra)


def log_dir(client: BatchClient, job_id: str) -> Path:
    return client.log_paths(job_id)[0].parent


def test_a_job_that_finished_while_no_engine_ran_keeps_its_exit(
    client: BatchClient, state_dir: Path, tmp_path: Path, no_orphans: None
) -> None:
    go, never = tmp_path / "go", tmp_path / "never"
    sides = {name: tmp_path / f"{name}.side" for name in ("ok", "bad", "stuck")}
    jobs = {
        "ok": waiting_job(client, "ok", sides["ok"], go, 0),
        "bad": waiting_job(client, "bad", sides["bad"], go, 3, retryStrategy={"attempts": 2}),
        "stuck": waiting_job(client, "stuck", sides["stuck"], never, 0),
    }
    with engine_process(state_dir) as engine:
        kill_engine_when(engine, lambda: all(side.exists() for side in sides.values()))
    go.touch()  # ok and bad finish now, with no engine; stuck runs on
    deadline = time.monotonic() + 30
    while not all((log_dir(client, jobs[name]) / "exit_status").exists() for name in ("ok", "bad")):
        assert time.monotonic() < deadline, "the jobs did not record their exit"
        time.sleep(0.05)

    run_until_idle(state_dir)
    details = {name: client.describe_jobs([job])["jobs"][0] for name, job in jobs.items()}
    ok, bad, stuck = details["ok"], details["bad"], details["stuck"]
    assert ok["status"] == "SUCCEEDED" and len(ok["attempts"]) == 1, "ok finished: it is not run again"
    assert sides["ok"].read_text() == "start\ndone\n", "its side effect happened exactly once"
    assert ok["attempts"][0]["genobatch"]["exitReason"] == "FINISHED"
    assert Path(ok["attempts"][0]["genobatch"]["stdout"]).read_text() == "output after\n", "written with no engine"
    assert bad["status"] == "FAILED" and [a["container"]["exitCode"] for a in bad["attempts"]] == [3, 3]
    assert [a["genobatch"]["exitReason"] for a in bad["attempts"]] == ["FAILED", "FAILED"], "its exit, then a retry"
    assert sides["bad"].read_text() == "start\ndone\nstart\ndone\n"
    assert stuck["status"] == "FAILED" and stuck["attempts"][0]["genobatch"]["exitReason"] == "LOST"
    assert stuck["attempts"][0]["statusReason"].startswith("Host lost"), "still running at the restart: lost"
    assert find_marked_processes(state_dir.resolve()) == []


def test_recovery_ignores_an_exit_status_that_is_not_a_whole_record(
    client: BatchClient, state_dir: Path, no_orphans: None
) -> None:
    job = submit(client, define(client, "slow", ["sleep", "30"]))
    with engine_process(state_dir) as engine:
        kill_engine_when(engine, lambda: client.describe_jobs([job])["jobs"][0]["status"] == "RUNNING")
    for pid in find_marked_processes(state_dir.resolve()):  # the job dies with no record...
        os.kill(pid, signal.SIGKILL)
    (log_dir(client, job) / "exit_status").write_text("0")  # ...but a torn one, with no newline: no success
    run_until_idle(state_dir)
    attempt = client.describe_jobs([job])["jobs"][0]["attempts"][0]
    assert attempt["genobatch"]["exitReason"] == "LOST"


def test_a_container_that_finished_while_no_engine_ran_keeps_its_exit(
    podman: None, state_dir: Path, tmp_path: Path, no_orphans: None
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    script = "while [ ! -e /shared/go ]; do sleep 0.1; done; echo finished; exit 5"
    backend = LocalBackend(state_dir, engine="none")
    job = backend.submit(
        JobSpec("boxed", sh(script), memory_mib=64, image=RUNNER, mounts=[Mount(str(shared), "/shared", True)])
    )
    engine_cmd = [*engine_command(state_dir, "--poll-interval", "0.05"), "--runtime", "podman"]
    engine = subprocess.Popen(engine_cmd, stderr=subprocess.DEVNULL)
    try:
        kill_engine_when(engine, lambda: backend.poll([job])[0].status is JobStatus.RUNNING)
        (shared / "go").touch()
        status_file = log_dir(backend.client, job) / "exit_status"
        deadline = time.monotonic() + 60
        while not status_file.exists():
            assert time.monotonic() < deadline, "the container's exit was not recorded"
            time.sleep(0.1)
        subprocess.run([*engine_cmd, "--idle-exit", "0"], check=True, capture_output=True)
    finally:
        engine.kill()
        engine.wait()
    [attempt] = backend.poll([job])[0].attempts
    assert attempt.exit_reason is ExitReason.FAILED and attempt.exit_code == 5, attempt
    assert Path(attempt.log or "").with_name("stdout.log").read_text() == "finished\n"
    label = f"--filter=label={STATE_LABEL}={state_dir.resolve()}"
    assert subprocess.run(["podman", "ps", "--all", "--quiet", label], capture_output=True, text=True).stdout == ""
    backend.close()
