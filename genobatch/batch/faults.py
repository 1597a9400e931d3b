"""Which errors are the machine's fault (a full disk, a read-only file system, an I/O error, a damaged database),
worded as one line that names the file and the fix: the store, the engine and the local backend raise these as
``EnvironmentFault``s, never as tracebacks.

The error alone can mislead (SQLite says "unable to open database file" on a read-only mount, and may report a
full disk as an I/O error), so the file system holding the file is asked too (``statvfs``).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import TypeVar

from .errors import EnvironmentFault

# SQLite's primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte.
SQLITE_ERROR, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT = 1, 8, 10, 11
SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 13, 14, 26
_SQLITE_FAULTS = {SQLITE_READONLY: errno.EROFS, SQLITE_IOERR: errno.EIO, SQLITE_FULL: errno.ENOSPC}
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
# With less than this free, a failed write is a full disk, whatever the error said (a WAL frame is ~4 KiB).
NEARLY_FULL_BYTES = 64 * 1024
STATE_DIR_HINT = "or use another state directory (--state-dir; for genobatch run, --work-dir)"

Fault = TypeVar("Fault", bound=EnvironmentFault)


def sqlite_code(exc: BaseException) -> int:
    """SQLite's primary result code of ``exc`` (0 when it is not an SQLite error)."""
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_damaged(exc: BaseException) -> bool:
    """The database file is not (or no longer) a database: garbage, truncated, overwritten."""
    return isinstance(exc, sqlite3.DatabaseError) and sqlite_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def file_system_state(path: Path) -> int | None:
    """EROFS or ENOSPC when the file system holding ``path`` (or its nearest existing parent) is read-only or full."""
    for candidate in (path, *path.parents):
        try:
            stats = os.statvfs(candidate)
        except OSError:
            continue
        if stats.f_flag & os.ST_RDONLY:
            return errno.EROFS
        if stats.f_bavail * stats.f_frsize < NEARLY_FULL_BYTES:
            return errno.ENOSPC
        return None
    return None


def describe(code: int, path: Path, detail: str) -> tuple[str, str]:
    """(cause, fix) for a fault of kind ``code`` (an errno) at ``path``."""
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk holding {path} is full ({detail})", f"free space on it and start again, {STATE_DIR_HINT}"
    if code == errno.EROFS:
        return (
            f"{path} is on a read-only file system ({detail})",
            f"remount it read-write and start again, {STATE_DIR_HINT}",
        )
    if code == errno.EBADMSG:
        return (
            f"the state database {path} is damaged ({detail})",
            "start again: genobatch moves it aside and begins a new one (a pipeline's cache keeps finished tasks)",
        )
    if code in (errno.EACCES, errno.EPERM):
        return f"{path} cannot be opened ({detail})", f"make it writable by you and start again, {STATE_DIR_HINT}"
    return f"I/O error on {path} ({detail})", "check the disk (e.g. `dmesg`), then start again"


def as_fault(exc: BaseException, path: Path, kind: type[Fault]) -> Fault | None:
    """``exc`` as a ``kind`` naming ``path`` (the file the caller was using) when it is the machine's fault,
    else None: a bug, or the caller's mistake, which must surface as it is."""
    if isinstance(exc, EnvironmentFault):
        return kind(exc.errno or errno.EIO, exc.cause, exc.fix, exc.path)
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        path = Path(exc.filename) if exc.filename else path
        code, detail = exc.errno, exc.strerror or str(exc)
    elif is_damaged(exc):
        code, detail = errno.EBADMSG, str(exc)
    elif sqlite_code(exc) in (*_SQLITE_FAULTS, SQLITE_CANTOPEN):
        code, detail = _SQLITE_FAULTS.get(sqlite_code(exc), errno.EACCES), str(exc)
    else:
        return None
    if code != errno.EBADMSG:
        code = file_system_state(path) or code
    cause, fix = describe(code, path, detail)
    return kind(code, cause, fix, str(path))
