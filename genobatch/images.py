"""Tool images: ``images/<name>/Containerfile``, one per tool as AWS Batch job definitions reference them.

``genobatch images build`` builds the runner image (Debian, Python, the job runner, a non-root user) and the
tool images on top of it, then runs each tool inside its image to read its version (the smoke test) and
records the versions in the image's ``io.genobatch.tools`` label, which runs read to key their caches.
No registry is needed: ``--base`` takes a locally imported Debian (``scripts/setup-podman.sh`` makes one).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from genobatch import __version__
from genobatch.batch.container import check_runtime, image_labels
from genobatch.pipeline import runner
from genobatch.pipeline.tools import probe_version

IMAGES_DIR = Path(__file__).resolve().parents[1] / "images"
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
    built = {}
    for spec in IMAGES:
        ref = image_ref(spec.name, repository, tag)
        args = {"BASE": base, "GENOBATCH_VERSION": __version__, "RUNNER": image_ref("runner", repository, tag)}
        log(f"building {ref} (from {base if spec.name == 'runner' else args['RUNNER']})")
        with tempfile.TemporaryDirectory() as context:
            shutil.copy(IMAGES_DIR / spec.name / "Containerfile", Path(context) / "Containerfile")
            shutil.copy(runner.__file__, Path(context) / "runner.py")
            _podman_build(binary, context, ref, args, {})
            versions = smoke_test(binary, ref, spec)
            label = ",".join(f"{tool}={version}" for tool, version in versions.items())
            _podman_build(binary, context, ref, args, {TOOLS_LABEL: label})  # cached layers: only the label
        log(f"  {ref}: {label or 'genobatch-runner'}")
        built[ref] = versions
    return built


def _podman_build(binary: str, context: str, ref: str, args: dict[str, str], labels: dict[str, str]) -> None:
    argv = [binary, "build", "--quiet", f"--tag={ref}", *(f"--build-arg={k}={v}" for k, v in args.items())]
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


def status(binary: str = "podman", repository: str = REPOSITORY, tag: str = __version__) -> list[ImageStatus]:
    """Which images exist, and the tool versions each one recorded when it was built."""
    check_runtime(binary)
    rows = []
    for spec in IMAGES:
        ref = image_ref(spec.name, repository, tag)
        labels = image_labels(binary, ref)
        rows.append(ImageStatus(ref, labels is not None, parse_tools_label((labels or {}).get(TOOLS_LABEL))))
    return rows
