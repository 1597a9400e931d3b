"""Runtimes launch one attempt as a process and observe it. ``HostRuntime`` runs the command on this machine.

Each attempt is the leader of its own session and process group, so terminate/timeout/OOM kill the whole
tree. The engine waits on a pidfd and reaps with ``wait4`` to get exact CPU time and peak RSS from the kernel.
``container.ContainerRuntime`` implements the same protocol by launching ``podman run`` (or ``docker run``)
as that process.

**An attempt outlives its engine, and so does its exit status.** The attempt's process is a small POSIX shell
(``ATTEMPT_WRAPPER``) that runs the command as its child and, when the command ends, writes its exit status
(as a shell reports it: 128 + N for signal N) to ``exit_status`` in the attempt's log directory, then exits
with it; so an exit code of 128 + N reads as death by signal N, as from a container runtime. While the engine
lives it reaps the wrapper as before and ignores the file. If the engine dies (even by SIGKILL), the attempt
runs on in its own session; the next engine (``Engine._recover``) first kills the attempts that still run and
waits until they are gone, then reads ``exit_status``: an attempt whose exit was recorded ends with that exit
(a success is not run again), one killed or gone without a record is LOST. The file is one ``printf`` of a few
bytes, accepted only as a whole line, so a half-written one reads as no record. The wrapper outlasts the
signals a job's group may be sent (TERM, INT, HUP, QUIT: it traps them, its command does not inherit that)
until its command ended, so a timeout's SIGTERM still gives the command its grace period; SIGKILL ends both,
unrecorded.

The attempt's stdout and stderr are pipes that the engine copies into capped logs (``logcap``). The wrapper
opens a read end of each too (the engine's, through /proc), so a command whose engine died never gets SIGPIPE:
it may write up to a pipe's buffer (1 MiB) more, which the wrapper appends to the logs when it finds the engine
gone (a command that writes more blocks until the next engine kills it, as LOST). The command runs as the
wrapper's child, so a missing executable is checked before the launch (``check_executable``), where ``exec``
used to report it. The wrapper costs a ``dash`` process per attempt (about 0.4 ms of CPU, beside the engine's).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import signal
import stat
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .logcap import PIPE_BYTES, LogCopier
from .model import Mount

if TYPE_CHECKING:
    from .lifecycle import AttemptOutcome

ATTEMPT_MARKER_ENV = "GENOBATCH_ATTEMPT"  # "<state dir>|<job id>|<attempt>": finds orphans after a crash
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
EXIT_STATUS_FILE = "exit_status"  # in the attempt's log directory, written by ATTEMPT_WRAPPER
LOG_FINISH_SECONDS = 5.0  # after an attempt ended, how long a process that left its group may still hold its logs
ORPHAN_DEATH_SECONDS = 10.0  # how long recovery waits for the attempts it killed to be gone
# $1 the log directory, $2 the engine's pid, $3 and $4 the engine's read ends of the stdout and stderr pipes (the
# wrapper opens its own through /proc: dash knows no descriptor above 9), $5 the working directory (posix_spawn
# has no chdir: the shell's ``cd`` does it, and sets $PWD), then the command.
ATTEMPT_WRAPPER = """_gb_dir=$1 _gb_engine=$2 _gb_held=
cd "$5" || exit 126
command exec 3<"/proc/$2/fd/$3" 4<"/proc/$2/fd/$4" && _gb_held=1
shift 5
trap : HUP INT QUIT TERM
"$@" 3<&- 4<&-
_gb_status=$?
if [ "$_gb_held" ] && ! kill -0 "$_gb_engine" 2>/dev/null; then
    exec >/dev/null 2>&1  # the pipes end once no process writes to them, this one included
    command -p cat <&3 >>"$_gb_dir/stdout.log"; command -p cat <&4 >>"$_gb_dir/stderr.log"
fi
printf '%s\\n' "$_gb_status" >"$_gb_dir/exit_status"
exit "$_gb_status"
"""


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
    fault: str | None = None  # the job's genobatch:fault tag (faultinject.FaultInjection acts on it)

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
    injected: AttemptOutcome | None = None  # how an injected fault ended it (faultinject), as AWS words it


@dataclass
class RunningProcess:
    spec: LaunchSpec
    pid: int
    pidfd: int
    # /proc's start time of ``pid``, read later (``process_start_time``): read at the launch, it waits for the
    # exec to finish (about 0.3 ms, the engine's longest wait per launch)
    proc_start: str | None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    runtime: str = "host"
    image: str | None = None
    container: str | None = None  # the container's name, if it runs in one
    logs: LogCopier | None = field(default=None, repr=False)  # copying its stdout and stderr


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


def start_process(
    spec: LaunchSpec, argv: list[str], cwd: Path, env: dict[str, str], inherited: list[int], **labels: Any
) -> RunningProcess:
    """Start ``argv`` as the attempt's process (under ``ATTEMPT_WRAPPER``): its own session, output copied into
    the attempt's capped log files, the ``inherited`` descriptors closed. ``labels`` (runtime, image, container)
    describe what it runs in."""
    check_executable(argv[0], env.get("PATH"), cwd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spec.log_dir / EXIT_STATUS_FILE)  # left by a launch that its engine did not live to record
    (out_r, out_w), (err_r, err_w) = os.pipe2(os.O_CLOEXEC), os.pipe2(os.O_CLOEXEC)
    for read_end in (out_r, err_r):
        with contextlib.suppress(OSError):
            fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    logs = LogCopier([(out_r, spec.log_dir / "stdout.log"), (err_r, spec.log_dir / "stderr.log")])
    wrapper = ["/bin/sh", "-c", ATTEMPT_WRAPPER, "genobatch-attempt", str(spec.log_dir), str(os.getpid())]
    # posix_spawn (vfork and exec in glibc) costs the engine half of what subprocess.Popen does, in Python and in
    # the kernel; every descriptor the engine opens is close-on-exec (Python's default, SQLite's O_CLOEXEC).
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
        *((os.POSIX_SPAWN_CLOSE, fd) for fd in inherited if _still_inheritable(fd)),
    ]
    try:
        pid = os.posix_spawn(
            "/bin/sh", [*wrapper, str(out_r), str(err_r), str(cwd), *argv], env, file_actions=actions, setsid=True
        )
    except OSError as exc:
        raise LaunchError(f"{argv[0]}: {exc.strerror or exc}") from None
    finally:
        os.close(out_w)  # the copiers see the end of the output when the attempt's processes are gone
        os.close(err_w)
    pidfd = os.pidfd_open(pid)
    return RunningProcess(spec, pid, pidfd, None, None, logs=logs, **labels)


def inherited_descriptors() -> list[int]:
    """The descriptors above stderr that an exec would pass on: ones this process inherited (a make jobserver,
    a test runner's capture files). Every descriptor the engine opens is close-on-exec (Python's default,
    SQLite's O_CLOEXEC), so this is usually empty. Attempts are spawned with these closed, as ``close_fds`` did,
    without changing them for anything else the process starts. A runtime lists them once, when it is made
    (listing /proc/self/fd at every launch cost 0.08 ms): Python makes no descriptor inheritable unless asked."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone by now
            if int(name) > 2 and os.get_inheritable(int(name)):
                found.append(int(name))
    return found


def _still_inheritable(fd: int) -> bool:
    try:
        return os.get_inheritable(fd)
    except OSError:  # closed since
        return False


def check_executable(program: str, path: str | None, cwd: Path) -> None:
    """LaunchError, worded as ``exec`` words it, unless ``program`` resolves (as Python's ``subprocess`` resolves
    it, from ``cwd``) to a file that can be executed: the wrapper shell would report a missing program as exit 127,
    and run a file without ``#!`` as a script. A file found before is only checked to be the same file still
    (one ``stat``: the search and the read of its first bytes cost more than the rest of a launch)."""
    searched = [program] if "/" in program else (path if path is not None else os.defpath).split(":")
    key = (program, path, str(cwd) if any(not d.startswith("/") for d in searched) else "")  # relative: per cwd
    known = _EXECUTABLES.get(key)
    if known is not None:
        with contextlib.suppress(OSError):
            st = os.stat(known[0])
            if (st.st_ino, st.st_mtime_ns, st.st_mode) == known[1:]:
                return
        del _EXECUTABLES[key]
    candidates = [os.path.join(cwd, program)] if "/" in program else [os.path.join(cwd, d, program) for d in searched]
    failure = errno.ENOENT
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not os.access(candidate, os.X_OK):
            failure = errno.EACCES
            continue
        with open(candidate, "rb") as handle:
            magic = handle.read(4)
        if magic == b"\x7fELF" or magic.startswith(b"#!"):
            if len(_EXECUTABLES) >= 1024:
                _EXECUTABLES.clear()
            _EXECUTABLES[key] = (candidate, st.st_ino, st.st_mtime_ns, st.st_mode)
            return
        failure = errno.ENOEXEC
    raise LaunchError(f"{program}: {os.strerror(failure)}")


# (program, PATH, cwd for a relative path) -> (the file found, its inode, mtime and mode when it was checked)
_EXECUTABLES: dict[tuple[str, str | None, str], tuple[str, int, int, int]] = {}


def make_attempt_dirs(spec: LaunchSpec) -> None:
    """The attempt's directory and its ``work``: two ``mkdir`` calls (``os.makedirs`` makes four, failing first;
    on a well-used ext4 a ``mkdir`` took 0.1 ms, the largest part of the engine's cost of a short job)."""
    try:
        for directory in (spec.log_dir, spec.work_dir):
            with contextlib.suppress(FileExistsError):  # a launch its engine did not live to record
                os.mkdir(directory)
    except FileNotFoundError:  # the first attempt of the state directory: no jobs/ yet
        os.makedirs(spec.work_dir, exist_ok=True)


def finish_logs(proc: RunningProcess) -> None:
    """Wait until the ended attempt's output is all in its logs (what any reader of them expects)."""
    if proc.logs is not None:
        proc.logs.finish(LOG_FINISH_SECONDS)


def signal_of_exit(code: int) -> int | None:
    """The signal that killed a process whose exit a shell (or a container runtime) reports as ``code``."""
    return code - 128 if 128 < code < 128 + signal.NSIG else None


def read_exit_status(log_dir: Path) -> int | None:
    """The exit status ``ATTEMPT_WRAPPER`` recorded for an attempt, or None if it recorded none (whole)."""
    try:
        text = (log_dir / EXIT_STATUS_FILE).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if re.fullmatch(r"[0-9]{1,3}\n", text) else None


class HostRuntime:
    """Run the command directly on this machine (no shell unless the command is one)."""

    name = "host"

    def __init__(self) -> None:
        self.base_environment = dict(os.environ)
        self.inherited = inherited_descriptors()

    def launch(self, spec: LaunchSpec) -> RunningProcess:
        make_attempt_dirs(spec)
        environment = {**self.base_environment, **spec.environment}
        return start_process(spec, spec.command, spec.work_dir, environment, self.inherited)

    def signal(self, proc: RunningProcess, signum: int) -> None:
        kill_group(proc.pid, signum)

    def reap(self, proc: RunningProcess) -> ProcessExit | None:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        kill_group(proc.pid, signal.SIGKILL)  # leftovers of the attempt die with it, as in a container
        finish_logs(proc)
        code = os.waitstatus_to_exitcode(status)
        if proc.popen is not None:
            proc.popen.returncode = code  # we reaped it; keep subprocess from trying again
        code = 128 - code if code < 0 else code  # the wrapper killed (SIGKILL), or reporting its command's signal
        return ProcessExit(code, signal_of_exit(code), usage.ru_utime + usage.ru_stime, usage.ru_maxrss)

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
    process whose environment marks it as an attempt of ``state_dir`` (launched, but not yet recorded). Returns
    once they are gone, so that no attempt records an exit status after the caller has read them."""
    doomed = []
    for pid, start in recorded:
        pidfd = _pidfd(pid)  # before the check: the pid cannot be reused while it is open
        if pidfd is not None and process_start_time(pid) == start:
            kill_group(pid, signal.SIGKILL)
            doomed.append(pidfd)
        elif pidfd is not None:
            os.close(pidfd)
    for pid in find_marked_processes(state_dir):
        pidfd = _pidfd(pid)
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(pid)  # an orphan that left its session still carries the marker
            os.kill(pid, signal.SIGKILL)
            kill_group(group, signal.SIGKILL)
        if pidfd is not None:
            doomed.append(pidfd)
    _wait_gone(doomed, ORPHAN_DEATH_SECONDS)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:  # gone already
        return None


def _wait_gone(pidfds: list[int], timeout: float) -> None:
    """Wait until every process (pidfd) has exited, then close the pidfds."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)  # a pidfd is readable once its process has exited
    waiting = set(pidfds)
    while waiting and time.monotonic() < deadline:
        for fd, _ in poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            poller.unregister(fd)
            waiting.discard(fd)
    for fd in pidfds:
        os.close(fd)
