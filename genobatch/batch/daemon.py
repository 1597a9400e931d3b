"""One engine per state directory: the lock that guarantees it, and starting/stopping a background engine.

The lock is an ``flock`` on ``<state>/engine.lock``: the kernel drops it when the engine dies, even by
SIGKILL, so a crashed engine never blocks its successor.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .errors import EngineLockedError

DEFAULT_IDLE_EXIT_SECONDS = 60.0


class EngineLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "engine.lock"
        self.fd: int | None = None

    def __enter__(self) -> EngineLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_exclusive(fd)
        except BlockingIOError:
            os.close(fd)
            holder = engine_pid(self.path.parent)
            raise EngineLockedError(
                f"another genobatch engine (pid {holder}) is already scheduling jobs from {self.path.parent}; "
                "it runs every job submitted there. Stop it with `genobatch engine stop` "
                "or use another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def _lock_exclusive(fd: int, probe_seconds: float = 0.5) -> None:
    """Take the engine lock without waiting for an engine, but past ``engine_pid``'s probes: each holds a shared
    lock for an instant, and an engine starting in that instant must not take it for another engine's. A
    running engine holds the lock for its life, so it is still refused, ``probe_seconds`` later."""
    deadline = time.monotonic() + probe_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def engine_pid(state_dir: Path) -> int | None:
    """The pid of the engine holding the lock, or None if no engine runs."""
    path = state_dir / "engine.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def engine_command(state_dir: Path, *options: str) -> list[str]:
    """The command line of ``genobatch engine run`` on ``state_dir`` (used here and by tests)."""
    return [sys.executable, "-m", "genobatch", "engine", "run", "--state-dir", str(state_dir), *options]


def start_background_engine(
    state_dir: Path,
    idle_exit_seconds: float = DEFAULT_IDLE_EXIT_SECONDS,
    wait_seconds: float = 10.0,
    runtime: str = "host",
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> int | None:
    """Start ``genobatch engine run`` detached from this terminal, unless one already runs. Returns its pid.
    ``options``: more of its options (the endpoint's); ``env``: added to its environment (a token, kept out of
    the command line, which every user can read)."""
    pid = engine_pid(state_dir)
    if pid:
        return pid
    with open(state_dir / "engine.log", "ab") as log:
        subprocess.Popen(
            engine_command(
                state_dir,
                "--idle-exit",
                str(idle_exit_seconds),
                "--runtime",
                runtime,
                "--quiet-if-running",
                *options,
            ),
            env={**os.environ, **env} if env else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        pid = engine_pid(state_dir)
        if pid:
            return pid
        time.sleep(0.02)
    return None


def stop_engine(state_dir: Path, now: bool = False, wait_seconds: float = 60.0) -> int | None:
    """Ask the engine to stop: it drains (lets running attempts finish) or, with ``now``, kills them."""
    pid = engine_pid(state_dir)
    if pid is None:
        return None
    os.kill(pid, signal.SIGINT if now else signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    while engine_pid(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid
