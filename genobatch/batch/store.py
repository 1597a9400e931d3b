"""The durable state: one SQLite database (WAL) that is both the source of truth and the queue.

Every writer (CLI, Python API, engine) opens its own connection; SQLite serialises the writers, so a
read-check-write done inside ``Store.write()`` cannot race another process. Layout of a state directory::

    <state>/state.db            this database
    <state>/engine.lock         held (flock) by the one engine scheduling from this directory
    <state>/engine.log          the background engine's own log
    <state>/jobs/<job-id>/<attempt>/{stdout.log,stderr.log,work/}
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    pid INTEGER, proc_start TEXT,          -- proc_start guards against pid reuse after a crash
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


def default_state_dir() -> Path:
    """``$GENOBATCH_STATE_DIR`` if set, else ``~/.genobatch`` (one engine per user, like one AWS account)."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".genobatch").expanduser().resolve()


class Store:
    """A connection to one state directory's database."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve() if state_dir else default_state_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.jobs_dir = self.state_dir / "jobs"
        self.db_path = self.state_dir / "state.db"
        # isolation_level=None: we issue BEGIN ourselves, so a transaction is exactly a ``write()`` block.
        self.conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (the case we design for); only an OS crash may lose
        # the last transactions, never corrupt the database.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        # In WAL mode fsync happens only at checkpoints; SQLite's default (every 1,000 pages) made fsync the
        # engine's largest cost on virtual disks (10.4 s vs 4.4 s for 2,000 jobs). ~40 MB of WAL between
        # checkpoints keeps the same guarantees with a few fsyncs per thousand jobs.
        self.conn.execute("PRAGMA wal_autocheckpoint=10000")
        self._migrate()

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

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE), so checks and writes see one state."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-query reads."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes when another connection commits: the engine's cheap "anything new?" check."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def attempt_dir(self, job_id: str, attempt: int) -> Path:
        return self.jobs_dir / job_id.replace(":", "_") / str(attempt)
