"""Whether podman and the tool images are here; tests that need them skip without them, except in CI
(``GENOBATCH_REQUIRE_PODMAN=1``), where their absence is a failure."""

from __future__ import annotations

import os

import pytest

from genobatch.batch.container import RuntimeUnavailable, check_runtime
from genobatch.images import image_ref, status
from genobatch.pipeline.library import Library

RUNNER = image_ref("runner")


def podman_missing() -> str | None:
    try:
        check_runtime("podman")
    except RuntimeUnavailable as exc:
        return str(exc)
    missing = [row.ref for row in status(Library.load().images, "podman") if not row.present]
    return f"images missing ({', '.join(missing)}): genobatch images build" if missing else None


def require_podman() -> None:
    why = podman_missing()
    if why is not None:
        if os.environ.get("GENOBATCH_REQUIRE_PODMAN") == "1":
            pytest.fail(why)
        pytest.skip(why)
