"""Tool images: ``images/<name>/Containerfile``, one per tool as AWS Batch job definitions reference them.

``genobatch images build`` builds a base image (Debian, Python with boto3, a non-root user), then the runner
image and each image the steps name: its tools, then the job runner's code (``RUNNER_FILES``) as the last
layer. It runs each tool inside its image to read its version (the smoke test: the tool's version command
from the step declarations) and records the versions (label ``io.genobatch.tools``, which runs read to key
their caches) and a digest of the runner's code (``io.genobatch.runner``: an image with other runner code is
stale and is not used). No registry is needed: ``--base`` takes a locally imported Debian
(``scripts/setup-podman.sh`` makes one).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from genobatch import __version__
from genobatch.batch.container import check_runtime, image_labels

PACKAGE_DIR = Path(__file__).resolve().parent
IMAGES_DIR = PACKAGE_DIR.parent / "images"
# What of the genobatch package runs inside the images (standard library and boto3 only).
RUNNER_FILES = (
    "__init__.py",
    "executors/__init__.py",
    "executors/runner.py",
    "executors/chunks.py",
    "storage/__init__.py",
    "storage/s3.py",
)
RUNNER_LABEL = "io.genobatch.runner"
REPOSITORY = "localhost/genobatch"
LOCAL_BASE = "localhost/debian-base:bookworm"  # what scripts/setup-podman.sh imports from debootstrap
REGISTRY_BASE = "docker.io/library/debian:bookworm-slim"
TOOLS_LABEL = "io.genobatch.tools"


VERSION = re.compile(r"(\d+(?:\.\d+)+[\w.+~-]*)")  # the first dotted number a tool prints


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tools: tuple[tuple[str, str], ...] = ()  # (tool, the command that prints its version): recorded at build


RUNNER = ImageSpec("runner")  # the job runner alone: barrier jobs, and the base of nothing else


class ImageError(Exception):
    pass


def image_ref(name: str, repository: str = REPOSITORY, tag: str = __version__) -> str:
    return f"{repository}/{name}:{tag}"


def probe_version(command: str, prefix: Sequence[str] = ()) -> str | None:
    """The version a tool's command prints (stdout or stderr), run after ``prefix`` (``podman run IMAGE``).
    bwa prints it in its usage text and exits 1: the exit status is not looked at."""
    try:
        result = subprocess.run([*prefix, *shlex.split(command)], capture_output=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = VERSION.search((result.stdout + result.stderr).decode(errors="replace"))
    return match.group(1) if match else None


def runner_digest() -> str:
    digest = hashlib.sha256()
    for name in RUNNER_FILES:
        digest.update(name.encode() + b"\0" + (PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def parse_tools_label(label: str | None) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in (label or "").split(",") if "=" in item)
    return {tool: version for tool, version in pairs}


def build(
    specs: Sequence[ImageSpec],
    binary: str = "podman",
    base: str | None = None,
    repository: str = REPOSITORY,
    tag: str = __version__,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, str]]:
    """Build the base, the runner and these images; returns image reference -> tool versions found inside."""
    check_runtime(binary)
    if base is None:
        base = LOCAL_BASE if image_labels(binary, LOCAL_BASE) is not None else REGISTRY_BASE
    base_ref = image_ref("base", repository, tag)
    args = {"BASE": base, "BASE_IMAGE": base_ref, "GENOBATCH_VERSION": __version__}
    built = {}
    with tempfile.TemporaryDirectory() as context:
        for name in RUNNER_FILES:
            (Path(context) / "genobatch" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PACKAGE_DIR / name, Path(context) / "genobatch" / name)
        log(f"building {base_ref} (from {base})")
        _podman_build(binary, context, "base", base_ref, args, {})
        for spec in (RUNNER, *specs):
            ref = image_ref(spec.name, repository, tag)
            log(f"building {ref}")
            _podman_build(binary, context, spec.name, ref, args, {})
            versions = smoke_test(binary, ref, spec)
            labels = {
                TOOLS_LABEL: ",".join(f"{tool}={version}" for tool, version in versions.items()),
                RUNNER_LABEL: runner_digest(),
            }
            _podman_build(binary, context, spec.name, ref, args, labels)  # cached layers: only the labels
            log(f"  {ref}: {labels[TOOLS_LABEL] or 'genobatch-runner'}")
            built[ref] = versions
    return built


def _podman_build(binary: str, context: str, name: str, ref: str, args: dict[str, str], labels: dict[str, str]) -> None:
    argv = [binary, "build", "--quiet", f"--tag={ref}", f"--file={IMAGES_DIR / name / 'Containerfile'}"]
    argv += [f"--build-arg={k}={v}" for k, v in args.items()]
    argv += [f"--label={k}={v}" for k, v in labels.items()]
    result = subprocess.run([*argv, context], capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ImageError(f"building {ref} failed:\n{tail}")


def smoke_test(binary: str, ref: str, spec: ImageSpec) -> dict[str, str]:
    """Run the job runner and each tool inside the image; their versions, or ImageError."""
    prefix = (binary, "run", "--rm", "--pull=never", "--network=none", ref)
    check = subprocess.run([*prefix, "genobatch-runner", "--help"], capture_output=True, text=True)
    if check.returncode != 0:
        raise ImageError(f"{ref}: smoke test `genobatch-runner --help` failed: {check.stderr.strip()[-500:]}")
    versions = {}
    for tool, command in spec.tools:
        version = probe_version(command, prefix)
        if version is None:
            raise ImageError(f"{ref}: smoke test failed: {tool} does not run or print its version")
        versions[tool] = version
    return versions


@dataclass(frozen=True)
class ImageStatus:
    ref: str
    present: bool
    tools: dict[str, str]
    stale: str = ""  # why it cannot be used as it is: other job-runner code, or a tool it lacks

    @property
    def usable(self) -> bool:
        return self.present and not self.stale


def status(
    specs: Sequence[ImageSpec], binary: str = "podman", repository: str = REPOSITORY, tag: str = __version__
) -> list[ImageStatus]:
    """Which images exist (the runner's, then these), and the tool versions each recorded when it was built."""
    check_runtime(binary)
    rows = []
    for spec in (RUNNER, *specs):
        ref = image_ref(spec.name, repository, tag)
        labels = image_labels(binary, ref)
        tools = parse_tools_label((labels or {}).get(TOOLS_LABEL))
        stale = ""
        if labels is not None and labels.get(RUNNER_LABEL) != runner_digest():
            stale = "other job-runner code"
        elif labels is not None and (missing := [tool for tool, _ in spec.tools if tool not in tools]):
            stale = f"no {', '.join(missing)}"
        rows.append(ImageStatus(ref, labels is not None, tools, stale))
    return rows
