"""Runtimes launch one attempt as a process and observe it. ``HostRuntime`` runs the command on this machine.

Each attempt is the leader of its own session and process group, so terminate/timeout/OOM kill the whole
tree. The engine waits on a pidfd and reaps with ``wait4`` to get exact CPU time and peak RSS from the kernel.
``container.ContainerRuntime`` implements the same protocol by launching ``podman run`` (or ``docker run``)
as that process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .model import Mount

ATTEMPT_MARKER_ENV = "GENOBATCH_ATTEMPT"  # "<state dir>|<job id>|<attempt>": finds orphans after a crash
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class LaunchError(Exception):
    """The command could not be started (missing executable, permission denied...)."""


@dataclass(frozen=True)
class LaunchSpec:
    job_id: str
    attempt: int
    command: list[str]
    environment: dict[str, str]  # the job's own variables (a host runtime adds the engine's environment)
    log_dir: Path
    vcpus: float
    memory_mib: int
    image: str | None = None
    mounts: tuple[Mount, ...] = ()

    @property
    def work_dir(self) -> Path:
        return self.log_dir / "work"


@dataclass
class ProcessExit:
    exit_code: int  # as a shell reports it: 128 + N when killed by signal N
    signal: int | None
    cpu_seconds: float | None
    max_rss_kib: int | None
    oom_killed: bool = False  # the kernel killed it at its memory limit (containers)
    cannot_start: str | None = None  # the runtime could not start it at all (e.g. an image that is missing)
    usage_exact: bool = False  # cpu/rss measured inside the container (else: wait4 of a host process tree)


@dataclass
class RunningProcess:
    spec: LaunchSpec
    pid: int
    pidfd: int
    proc_start: str | None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    runtime: str = "host"
    image: str | None = None
    container: str | None = None  # the container's name, if it runs in one


class Runtime(Protocol):
    """Launch an attempt as a child process; the engine owns (and closes) the returned pidfd."""

    name: str

    def launch(self, spec: LaunchSpec) -> RunningProcess: ...

    def signal(self, proc: RunningProcess, signum: int) -> None: ...

    def reap(self, proc: RunningProcess) -> ProcessExit | None: ...

    def recover(self, state_dir: Path, recorded: list[tuple[int, str | None]]) -> None:
        """Kill what a dead engine of ``state_dir`` left running (``recorded``: its attempts' pid, start)."""


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the pid, identifies a process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def start_process(spec: LaunchSpec, argv: list[str], cwd: Path, env: dict[str, str], **labels: Any) -> RunningProcess:
    """Start ``argv`` as the attempt's process: its own session, output to the attempt's log files.
    ``labels`` (runtime, image, container) describe what it runs in."""
    with open(spec.log_dir / "stdout.log", "wb") as out, open(spec.log_dir / "stderr.log", "wb") as err:
        try:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LaunchError(f"{argv[0]}: {exc.strerror or exc}") from None
    return RunningProcess(spec, popen.pid, os.pidfd_open(popen.pid), process_start_time(popen.pid), popen, **labels)


class HostRuntime:
    """Run the command directly on this machine (no shell unless the command is one)."""

    name = "host"

    def __init__(self) -> None:
        self.base_environment = dict(os.environ)

    def launch(self, spec: LaunchSpec) -> RunningProcess:
        os.makedirs(spec.work_dir, exist_ok=True)
        return start_process(spec, spec.command, spec.work_dir, {**self.base_environment, **spec.environment})

    def signal(self, proc: RunningProcess, signum: int) -> None:
        kill_group(proc.pid, signum)

    def reap(self, proc: RunningProcess) -> ProcessExit | None:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        kill_group(proc.pid, signal.SIGKILL)  # leftovers of the attempt die with it, as in a container
        code = os.waitstatus_to_exitcode(status)
        if proc.popen is not None:
            proc.popen.returncode = code  # we reaped it; keep subprocess from trying again
        signum = -code if code < 0 else None
        return ProcessExit(128 + signum if signum else code, signum, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)

    def recover(self, state_dir: Path, recorded: list[tuple[int, str | None]]) -> None:
        kill_orphans(state_dir, recorded)


def own_peak_rss_kib() -> int:
    """This process's VmHWM. The kernel copies a parent's peak RSS into a child's ``ru_maxrss`` at exec, so a
    child's ``ru_maxrss`` is the child's own peak only when it exceeds this value."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def session_rss_kib(sessions: Iterable[int]) -> dict[int, int]:
    """Resident memory summed over every process of each session (an attempt's whole process tree)."""
    wanted = set(sessions)
    totals = dict.fromkeys(wanted, 0)
    if not wanted:
        return totals
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        session = int(fields[3])
        if session in wanted:
            totals[session] += int(fields[21]) * PAGE_KIB
    return totals


def find_marked_processes(state_dir: Path) -> list[int]:
    """Pids whose environment marks them as attempts of this state directory (orphans after a crash)."""
    prefix = f"{ATTEMPT_MARKER_ENV}={state_dir}|".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                if any(item.startswith(prefix) for item in environ.read().split(b"\0")):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_orphans(state_dir: Path, recorded: list[tuple[int, str | None]]) -> None:
    """Kill what a dead engine left running: the recorded (pid, start time) pairs that still match, and any
    process whose environment marks it as an attempt of ``state_dir`` (launched, but not yet recorded)."""
    for pid, start in recorded:
        if process_start_time(pid) == start:
            kill_group(pid, signal.SIGKILL)
    for pid in find_marked_processes(state_dir):
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(pid)  # an orphan that left its session still carries the marker
            os.kill(pid, signal.SIGKILL)
            kill_group(group, signal.SIGKILL)
