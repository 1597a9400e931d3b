"""Run attempts in containers with podman (or docker): ``ContainerRuntime`` implements ``runtime.Runtime``.

An attempt runs in its job definition's image, with its vCPUs and memory as the container's limits, as a
non-root user, with no network, a read-only root file system, and only its working directory and its job's
declared mounts visible (inputs read-only). ``podman run`` is the attempt's process, so the engine waits on
it as on any other; when it ends, ``podman inspect`` says whether the kernel killed it at its memory limit
(reported as MEMLIMIT, as on AWS Batch) and the container is removed. Jobs without an image run on the host.

CPU time and peak memory are measured inside the container: a job may write ``$GENOBATCH_USAGE_FILE``
(JSON ``{"cpu_seconds", "max_rss_kib"}``), as the pipeline's job runner does.

``podman run`` runs under the same wrapper as a host command (``runtime``): the container's output goes
through the capped logs, and if the engine dies the client's exit, which is the container's, is recorded for
the next engine (as a plain exit code: a recovered attempt cannot be told to have been an OOM kill).

On cgroup v1 hosts podman 4 never sets ``OOMKilled`` (seen on Debian 12 with crun): there each container gets
a cgroup parent of its own, which outlives the container. An exit by SIGKILL that the engine did not send,
with the parent's peak memory at the limit, is the kernel's OOM kill; the parent also gives the CPU time.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from .runtime import (
    ATTEMPT_MARKER_ENV,
    HostRuntime,
    LaunchSpec,
    ProcessExit,
    RunningProcess,
    Runtime,
    finish_logs,
    kill_group,
    start_process,
)

RUNTIMES = ("podman", "docker")
STATE_LABEL = "io.genobatch.state"  # the engine state directory an attempt's container belongs to
USAGE_FILE_ENV = "GENOBATCH_USAGE_FILE"
USAGE_FILE = ".genobatch-usage.json"
CONTAINER_USER = 1000  # the images' "genobatch" user, used when the engine itself runs as root
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "genobatch"  # /sys/fs/cgroup/<controller>/genobatch/<container name>
OOM_PEAK_FRACTION = 0.98  # the parent also holds conmon (~1 MiB), so the container's peak is a little lower
SETUP_HINT = "run `scripts/setup-podman.sh` as root (installs and configures podman on Debian/Ubuntu)"


class RuntimeUnavailable(Exception):
    """The container runtime is not installed or does not work; ``fix`` says what to run."""

    def __init__(self, problem: str, fix: str = SETUP_HINT) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem, self.fix = problem, fix


def check_runtime(binary: str) -> str:
    """The runtime's version, or RuntimeUnavailable saying why it cannot run containers here."""
    if shutil.which(binary) is None:
        raise RuntimeUnavailable(f"{binary} is not installed", f"{SETUP_HINT}, or install {binary} yourself")
    try:
        result = subprocess.run(
            [binary, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True, timeout=60
        )
        info = subprocess.run([binary, "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise RuntimeUnavailable(f"`{binary} info` did not answer within 60 s") from None
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no error message"])[-1]
        raise RuntimeUnavailable(f"{binary} is installed but does not work (`{binary} info`: {last})")
    return result.stdout.strip() or "unknown"


def make_runtime(name: str) -> Runtime:
    """``host``, or a container runtime that has been checked to work (else RuntimeUnavailable)."""
    if name == "host":
        return HostRuntime()
    check_runtime(name)
    return ContainerRuntime(name)


def image_labels(binary: str, image: str) -> dict[str, str] | None:
    """The image's labels, or None when there is no such image."""
    result = subprocess.run(
        [binary, "image", "inspect", "--format", "{{json .Config.Labels}}", image], capture_output=True, text=True
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip() or "null") or {}


def image_id(binary: str, image: str) -> str | None:
    """The image's ID (a digest of its content), or None when there is no such image here."""
    result = subprocess.run([binary, "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True)
    return result.stdout.strip() or None if result.returncode == 0 else None


def container_name(spec: LaunchSpec) -> str:
    state = spec.environment.get(ATTEMPT_MARKER_ENV, "").split("|")[0]
    digest = hashlib.sha256(state.encode()).hexdigest()[:8]
    return f"genobatch-{digest}-{spec.job_id.replace(':', '-')}-{spec.attempt}"


class ContainerRuntime:
    """``podman run`` / ``docker run`` as the attempt's process."""

    def __init__(self, binary: str = "podman") -> None:
        self.binary = binary
        self.name = Path(binary).name
        self.host = HostRuntime()
        self.rootless = os.getuid() != 0
        self.uid, self.gid = (os.getuid(), os.getgid()) if self.rootless else (CONTAINER_USER, CONTAINER_USER)
        self.own_cgroups = not self.rootless and (CGROUP_ROOT / "memory" / "cgroup.procs").exists()  # v1, root

    # --- Runtime protocol -----------------------------------------------------------------------------------
    def launch(self, spec: LaunchSpec) -> RunningProcess:
        if spec.image is None:
            return self.host.launch(spec)
        name = container_name(spec)
        self._remove(name)  # a leftover of an engine that died before removing it
        writable = [spec.work_dir] + [Path(m.source) for m in spec.mounts if not m.read_only]
        for path in writable:
            path.mkdir(parents=True, exist_ok=True)
            if not self.rootless:
                os.chown(path, self.uid, self.gid)  # the container's user writes here, and only here
        environment = {
            **spec.environment,
            USAGE_FILE_ENV: str(spec.work_dir / USAGE_FILE),
            "HOME": str(spec.work_dir),
            "TMPDIR": str(spec.work_dir),
        }
        return start_process(
            spec,
            self.run_argv(spec, name, sorted(environment)),
            spec.log_dir,
            {**self.host.base_environment, **environment},  # `--env NAME` takes the value from here
            self.host.inherited,
            runtime=self.name,
            image=spec.image,
            container=name,
        )

    def run_argv(self, spec: LaunchSpec, name: str | None, env_names: list[str]) -> list[str]:
        """The ``run`` command line: limits, user, isolation, mounts (same path inside as outside). Without a
        name (a job another batch system runs), the container is removed when it ends (``--rm``)."""
        assert spec.image is not None
        state = spec.environment.get(ATTEMPT_MARKER_ENV, "").split("|")[0]
        argv = [
            self.binary,
            "run",
            f"--name={name}" if name else "--rm",
            "--pull=never",  # no registry here; a missing image is an error that says how to build it
            f"--cpus={spec.vcpus:g}",
            f"--memory={spec.memory_mib}m",
            f"--memory-swap={spec.memory_mib}m",  # no swap: over the limit is an OOM kill, not a slow job
            f"--user={self.uid}:{self.gid}",
            "--network=none",
            "--read-only",
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
            f"--label={STATE_LABEL}={state}",
            f"--workdir={spec.work_dir}",
            f"--volume={spec.work_dir}:{spec.work_dir}:rw",
        ]
        if self.own_cgroups and name:
            argv.append(f"--cgroup-parent=/{CGROUP_PARENT}/{name}")
        if self.rootless and self.name == "podman":
            argv.append("--userns=keep-id")  # files written in mounts belong to the user who ran genobatch
        argv += [f"--volume={m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts]
        argv += [f"--env={key}" for key in env_names]
        return [*argv, spec.image, *spec.command]

    def signal(self, proc: RunningProcess, signum: int) -> None:
        if proc.container is None:
            self.host.signal(proc, signum)
            return
        self._cli("kill", f"--signal={signum}", proc.container)
        if signum == signal.SIGKILL:
            kill_group(proc.pid, signal.SIGKILL)  # also the client, should the container not have started yet

    def reap(self, proc: RunningProcess) -> ProcessExit | None:
        if proc.container is None:
            return self.host.reap(proc)
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        finish_logs(proc)
        code = os.waitstatus_to_exitcode(status)
        if proc.popen is not None:
            proc.popen.returncode = code
        state = self._inspect(proc.container)
        self._remove(proc.container)
        usage = self._usage(proc.spec)
        peak, cpu = cgroup_usage(proc.container) if self.own_cgroups else (None, None)
        remove_cgroup(proc.container)
        if state is None or state.get("Error"):
            why = (state or {}).get("Error") or self._client_error(proc.spec)
            if "image not known" in why or "No such image" in why:
                why += f"; build the images with `genobatch images build --runtime {self.name}`"
            return ProcessExit(code if code > 0 else 125, None, None, None, cannot_start=why)
        exit_code = int(state.get("ExitCode", code))
        at_limit = peak is not None and peak >= proc.spec.memory_mib * 1024 * 1024 * OOM_PEAK_FRACTION
        return ProcessExit(
            exit_code,
            exit_code - 128 if 128 < exit_code < 128 + 65 else None,
            usage.get("cpu_seconds", cpu),
            usage.get("max_rss_kib"),
            oom_killed=bool(state.get("OOMKilled")) or (exit_code == 128 + signal.SIGKILL and at_limit),
            usage_exact=True,
        )

    def recover(self, state_dir: Path, recorded: list[tuple[int, str | None]]) -> None:
        self.host.recover(state_dir, recorded)
        listed = self._cli("ps", "--all", "--format={{.Names}}", f"--filter=label={STATE_LABEL}={state_dir}")
        names = listed.stdout.split()
        if names:
            self._cli("rm", "--force", *names)
        for name in names:
            remove_cgroup(name)

    # --- helpers --------------------------------------------------------------------------------------------
    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], capture_output=True, text=True, check=False)

    def _inspect(self, name: str) -> dict[str, Any] | None:
        result = self._cli("inspect", "--format", "{{json .State}}", name)
        if result.returncode != 0:
            return None
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def _remove(self, name: str) -> None:
        self._cli("rm", "--force", name)

    @staticmethod
    def _usage(spec: LaunchSpec) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            usage: dict[str, Any] = json.loads((spec.work_dir / USAGE_FILE).read_text())
            return usage
        return {}

    @staticmethod
    def _client_error(spec: LaunchSpec) -> str:
        with contextlib.suppress(OSError):
            lines = (spec.log_dir / "stderr.log").read_text(errors="replace").strip().splitlines()
            if lines:
                return lines[-1].removeprefix("Error: ")
        return "the container could not be created"


def cgroup_usage(name: str) -> tuple[int | None, float | None]:
    """Peak memory (bytes, page cache included) and CPU seconds of a container's own cgroup parent (v1)."""
    peak = cpu = None
    with contextlib.suppress(OSError, ValueError):
        peak = int((CGROUP_ROOT / "memory" / CGROUP_PARENT / name / "memory.max_usage_in_bytes").read_text())
    with contextlib.suppress(OSError, ValueError):
        cpu = int((CGROUP_ROOT / "cpuacct" / CGROUP_PARENT / name / "cpuacct.usage").read_text()) / 1e9
    return peak, cpu


def remove_cgroup(name: str) -> None:
    """Remove a container's (now empty) cgroup parent from every controller, deepest directories first."""
    for top in glob.glob(str(CGROUP_ROOT / "*" / CGROUP_PARENT / name)):
        for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
