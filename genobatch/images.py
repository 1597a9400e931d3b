"""Tool images: ``images/<name>/Containerfile``, one per tool as AWS Batch job definitions reference them.

``genobatch images build`` builds a base image (Debian, Python with boto3, a non-root user), then each image
on it: its tools, then the job runner's code (``RUNNER_FILES``) as the last layer. It runs each tool inside
its image to read its version (the smoke test) and records the versions (label ``io.genobatch.tools``, which
runs read to key their caches) and a digest of the runner's code (``io.genobatch.runner``: an image with
other runner code is stale and is not used). No registry is needed: ``--base`` takes a locally imported
Debian (``scripts/setup-podman.sh`` makes one).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from genobatch import __version__
from genobatch.batch.container import check_runtime, image_labels
from genobatch.pipeline.tools import probe_version

PACKAGE_DIR = Path(__file__).resolve().parent
IMAGES_DIR = PACKAGE_DIR.parent / "images"
# What of the genobatch package runs inside the images (standard library and boto3 only).
RUNNER_FILES = ("__init__.py", "pipeline/__init__.py", "pipeline/runner.py", "storage/__init__.py", "storage/s3.py")
RUNNER_LABEL = "io.genobatch.runner"
REPOSITORY = "localhost/genobatch"
LOCAL_BASE = "localhost/debian-base:bookworm"  # what scripts/setup-podman.sh imports from debootstrap
REGISTRY_BASE = "docker.io/library/debian:bookworm-slim"
TOOLS_LABEL = "io.genobatch.tools"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tools: tuple[str, ...]  # tools whose versions the image records (and whose tasks it can run)


# The runner first: every tool image is built FROM it.
IMAGES = (
    ImageSpec("runner", ()),
    ImageSpec("fastqc", ("fastqc",)),
    ImageSpec("bwa", ("bwa", "samtools")),
    ImageSpec("samtools", ("samtools",)),
    ImageSpec("bcftools", ("bcftools",)),
)


class ImageError(Exception):
    pass


def image_ref(name: str, repository: str = REPOSITORY, tag: str = __version__) -> str:
    return f"{repository}/{name}:{tag}"


def image_for(tools: Iterable[str]) -> ImageSpec | None:
    """The smallest image that holds all these tools (None: no image does, e.g. MultiQC)."""
    wanted = set(tools)
    fitting = [spec for spec in IMAGES if wanted <= set(spec.tools)]
    return min(fitting, key=lambda spec: len(spec.tools)) if fitting else None


def runner_digest() -> str:
    digest = hashlib.sha256()
    for name in RUNNER_FILES:
        digest.update(name.encode() + b"\0" + (PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def parse_tools_label(label: str | None) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in (label or "").split(",") if "=" in item)
    return {tool: version for tool, version in pairs}


def build(
    binary: str = "podman",
    base: str | None = None,
    repository: str = REPOSITORY,
    tag: str = __version__,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, str]]:
    """Build every image; returns image reference -> tool versions found inside it."""
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
        for spec in IMAGES:
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
    for tool in spec.tools:
        version = probe_version(tool, prefix)
        if version is None:
            raise ImageError(f"{ref}: smoke test failed: {tool} does not run or print its version")
        versions[tool] = version
    return versions


@dataclass(frozen=True)
class ImageStatus:
    ref: str
    present: bool
    tools: dict[str, str]
    stale: bool = False  # built from other job-runner code than this genobatch's


def status(binary: str = "podman", repository: str = REPOSITORY, tag: str = __version__) -> list[ImageStatus]:
    """Which images exist, and the tool versions each one recorded when it was built."""
    check_runtime(binary)
    rows = []
    for spec in IMAGES:
        ref = image_ref(spec.name, repository, tag)
        found = image_labels(binary, ref)
        labels = found or {}
        stale = found is not None and labels.get(RUNNER_LABEL) != runner_digest()
        rows.append(ImageStatus(ref, found is not None, parse_tools_label(labels.get(TOOLS_LABEL)), stale))
    return rows
