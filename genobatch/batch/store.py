"""The durable state: one SQLite database (WAL) that is both the source of truth and the queue.

Every writer (CLI, Python API, engine) opens its own connection; SQLite serialises the writers, so a
read-check-write done inside ``Store.write()`` cannot race another process. Layout of a state directory::

    <state>/state.db            this database
    <state>/engine.lock         held (flock) by the one engine scheduling from this directory
    <state>/engine.log          the background engine's own log
    <state>/jobs/<job-id>.<attempt>/{stdout.log,stderr.log,exit_status,work/}  (job-id: ':' as '_')
    <state>/state.db.lock       held while a database is created or a damaged one is set aside
    <state>/state.db.damaged    left by a use that found the database damaged: the next open sets it aside

A database that is not one (garbage, truncated, empty, another program's tables) is moved aside as
``state.db.corrupt-<time>`` (with its -wal and -shm), with a warning, and a new one is begun: jobs are
re-created by whoever submits them (the pipeline's own record of finished work is its cache). Opening checks
only what SQLite reads anyway (the header, the schema, ``meta``), because the CLI opens the store for every
command; the engine, which opens it once per start, asks for a ``PRAGMA quick_check`` too (``verify``), and
damage that a query meets later is remembered (``state.db.damaged``) for the next open to act on.
A read-only, full or failing file system raises ``StateUnusable`` naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StateUnusable
from .faults import SQLITE_ERROR, as_fault, is_damaged, sqlite_code

SCHEMA_VERSION = 2
# version -> statements that bring a database of that version to the next one
MIGRATIONS = {
    1: [
        "ALTER TABLE jobs ADD COLUMN container TEXT",
        "ALTER TABLE attempts ADD COLUMN runtime TEXT",
        "ALTER TABLE attempts ADD COLUMN image TEXT",
    ],
}
STATE_DIR_ENV = "GENOBATCH_STATE_DIR"
DAMAGED_MARK = "state.db.damaged"  # "<inode of the damaged state.db> <what was seen>"
log = logging.getLogger("genobatch.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
INSERT OR IGNORE INTO meta VALUES ('done_seq', 0);
CREATE TABLE IF NOT EXISTS compute_environments (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, vcpus REAL NOT NULL, memory_mib INTEGER NOT NULL,
    spec TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS job_queues (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, priority INTEGER NOT NULL,
    compute_environments TEXT NOT NULL, spec TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS job_definitions (
    name TEXT NOT NULL, revision INTEGER NOT NULL, status TEXT NOT NULL, spec TEXT NOT NULL,
    created_at INTEGER NOT NULL, PRIMARY KEY (name, revision));
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    queue TEXT NOT NULL,
    definition TEXT NOT NULL,              -- name:revision
    status TEXT NOT NULL,
    status_reason TEXT,
    created_at INTEGER NOT NULL, started_at INTEGER, stopped_at INTEGER,  -- epoch ms, as AWS reports
    vcpus REAL NOT NULL, memory_mib INTEGER NOT NULL,
    command TEXT NOT NULL, environment TEXT NOT NULL,  -- JSON, parameters already substituted
    timeout_s INTEGER, retry TEXT NOT NULL,
    parent_id TEXT, array_index INTEGER, array_size INTEGER,
    attempts_made INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    done_seq INTEGER,                       -- order in which jobs became terminal (engine's change cursor)
    runnable_at INTEGER,                    -- when it last became RUNNABLE (for starvation)
    stop_requested TEXT,                    -- terminate-job reason for a STARTING/RUNNING job
    request TEXT NOT NULL,                  -- the submit request, echoed by describe-jobs
    container TEXT                          -- JSON {"image", "mounts"}: where a container runtime runs it
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, queue, seq);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_id, status) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_done ON jobs (done_seq) WHERE done_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS deps (
    job_id TEXT NOT NULL, depends_on TEXT NOT NULL, type TEXT,
    PRIMARY KEY (job_id, depends_on)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deps_reverse ON deps (depends_on);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL, number INTEGER NOT NULL,
    compute_environment TEXT NOT NULL,
    pid INTEGER, proc_start TEXT,          -- proc_start guards against pid reuse after a crash (NULL until
                                           -- the engine's next memory poll: recovery finds those by marker)
    engine_pid INTEGER NOT NULL,
    started_at INTEGER, stopped_at INTEGER,
    exit_code INTEGER, exit_reason TEXT, status_reason TEXT, container_reason TEXT,
    cpu_seconds REAL, max_rss_kib INTEGER,
    log_dir TEXT NOT NULL,
    runtime TEXT, image TEXT,              -- what ran it: "host", or "podman"/"docker" and the image
    PRIMARY KEY (job_id, number)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL, at INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id);
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def resolve_state_dir(state_dir: str | os.PathLike[str] | None) -> Path:
    """The state directory a ``Store`` of ``state_dir`` uses (None: the default)."""
    return Path(state_dir).expanduser().resolve() if state_dir else default_state_dir()


def default_state_dir() -> Path:
    """``$GENOBATCH_STATE_DIR`` if set, else ``~/.genobatch`` (one engine per user, like one AWS account)."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".genobatch").expanduser().resolve()


class Store:
    """A connection to one state directory's database."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None, verify: bool = False) -> None:
        """``verify``: also run ``PRAGMA quick_check`` (milliseconds per 10,000 jobs; the engine's start)."""
        self.state_dir = resolve_state_dir(state_dir)
        self.jobs_dir = self.state_dir / "jobs"
        self.db_path = self.state_dir / "state.db"
        self.verify = verify
        self._inode: int | None = None  # of the database file this connection uses (``note_damage``)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.conn = self._open()
            self._inode = self.db_path.stat().st_ino
        except (OSError, sqlite3.Error) as exc:
            fault = as_fault(exc, self.db_path, StateUnusable)
            if fault is None:
                raise
            raise fault from None

    def _open(self) -> sqlite3.Connection:
        """A checked connection; a damaged database is set aside (under the lock, so only one process does it)."""
        if not self.db_path.exists() or self.db_path.stat().st_size == 0:  # new: created under the lock
            with self._repair_lock():
                return self._checked_connection(repair=True)
        try:
            return self._checked_connection(repair=False)
        except _Damaged:
            with self._repair_lock():  # another process may have repaired it meanwhile: check again
                return self._checked_connection(repair=True)

    def _checked_connection(self, repair: bool) -> sqlite3.Connection:
        if repair and self.db_path.exists() and self.db_path.stat().st_size == 0:
            self._set_aside("it is empty (0 bytes)")
        try:
            return self._connect()
        except _Damaged as exc:
            if not repair:
                raise
            self._set_aside(exc.reason)
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        """A connection, checked (``_Damaged``, and closed, if it is no sound genobatch database: the checks only
        read, so another program's database is left as it was) and brought to this schema version."""
        # isolation_level=None: we issue BEGIN ourselves, so a transaction is exactly a ``write()`` block.
        conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        self.conn = conn
        try:
            self._check(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (the case we design for); only an OS crash may lose
            # the last transactions, never corrupt the database.
            conn.execute("PRAGMA synchronous=NORMAL")
            # In WAL mode fsync happens only at checkpoints; SQLite's default (every 1,000 pages) made fsync the
            # engine's largest cost on virtual disks (10.4 s vs 4.4 s for 2,000 jobs). ~40 MB of WAL between
            # checkpoints keeps the same guarantees with a few fsyncs per thousand jobs.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            self._migrate()
        except (sqlite3.DatabaseError, _Damaged) as exc:
            conn.close()
            if isinstance(exc, _Damaged):
                raise
            if is_damaged(exc):
                raise _Damaged(str(exc)) from None
            if sqlite_code(exc) == SQLITE_ERROR:  # our schema does not fit its tables
                raise _Damaged(f"its tables are not genobatch's ({exc})") from None
            raise
        return conn

    def _check(self, conn: sqlite3.Connection) -> None:
        """``_Damaged`` unless ``conn``'s database is empty or genobatch's (and, with ``verify``, sound)."""
        with contextlib.suppress(OSError, ValueError):
            inode, seen = (self.state_dir / DAMAGED_MARK).read_text().split(" ", 1)
            if int(inode) == self.db_path.stat().st_ino:  # not a database set aside since
                raise _Damaged(f"an earlier use found it damaged: {seen.strip()}")
        if self.verify:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise _Damaged("PRAGMA quick_check: " + "; ".join(problems).replace("\n", "; "))
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and (
            "meta" not in tables or not conn.execute("SELECT 1 FROM meta WHERE key='schema_version'").fetchone()
        ):
            raise _Damaged(f"it is not a genobatch state database (its tables: {', '.join(sorted(tables))})")

    @contextmanager
    def _repair_lock(self) -> Iterator[None]:
        fd = os.open(self.state_dir / "state.db.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _set_aside(self, reason: str) -> None:
        """Move the database (and its -wal, -shm) to ``state.db.corrupt-<time>``, saying so."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_dir / DAMAGED_MARK)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.db_path.with_name(f"state.db.corrupt-{stamp}")
        for n in range(2, 1000):
            if not target.exists():
                break
            target = self.db_path.with_name(f"state.db.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{self.db_path}{suffix}", f"{target}{suffix}")
        log.warning(
            "genobatch: the engine's state database %s is unusable (%s): moved it to %s and started a new one. "
            "Jobs it held are forgotten (a pipeline run re-creates its own; its cache keeps finished tasks)",
            self.db_path,
            reason,
            target,
        )

    def _migrate(self) -> None:
        with self.write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) < SCHEMA_VERSION and int(row[0]) in MIGRATIONS:  # an older state dir: upgrade it
                for version in range(int(row[0]), SCHEMA_VERSION):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.db_path} has schema version {row[0]}, this genobatch expects {SCHEMA_VERSION}: "
                    "use a new --state-dir or the genobatch release that created it"
                )

    def note_damage(self, exc: BaseException) -> None:
        """If ``exc`` says the database is damaged, remember it, so that the next open sets the database aside
        (an open checks only what every query reads; a damaged page elsewhere shows up later, in some query)."""
        if self._inode is not None and is_damaged(exc):  # (while opening, damage is dealt with at once)
            with contextlib.suppress(OSError):
                (self.state_dir / DAMAGED_MARK).write_text(f"{self._inode} {exc}\n")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE), so checks and writes see one state."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:  # a failed COMMIT (a full disk) may leave it open, or SQLite ended it
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            self.note_damage(exc)
            raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-query reads."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        except sqlite3.DatabaseError as exc:
            self.note_damage(exc)
            raise
        finally:
            self.conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes when another connection commits: the engine's cheap "anything new?" check."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def attempt_dir(self, job_id: str, attempt: int) -> Path:
        """One directory per attempt, not one per job holding its attempts: a ``mkdir`` less per launch. (Older
        attempts keep the directory recorded with them, ``attempts.log_dir``.)"""
        return self.jobs_dir / f"{job_id.replace(':', '_')}.{attempt}"


class _Damaged(Exception):
    """The database file is not a usable genobatch database; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
