"""Shared fixtures: a fresh state directory per test, a client on it, and an engine running in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genobatch.batch import BatchClient, Engine, Settings
from genobatch.batch.store import Store

from .container_helpers import require_podman
from .slurm_helpers import slurm_cluster  # noqa: F401 - one session-wide cluster, for every test module

# Short grace and poll times keep tests fast; production defaults are larger.
FAST = Settings(poll_interval=0.05, kill_grace_seconds=1.0, memory_poll_seconds=0.1)


@pytest.fixture(scope="module")
def podman() -> None:
    """podman and the tool images: a skip without them, a failure in CI (GENOBATCH_REQUIRE_PODMAN=1)."""
    require_podman()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def client(state_dir: Path) -> Iterator[BatchClient]:
    c = BatchClient(state_dir)
    yield c
    c.close()


class EngineThread:
    """An engine running in a background thread for the duration of a test."""

    def __init__(self, state_dir: Path, settings: Settings = FAST) -> None:
        self.engine = Engine(state_dir, settings=settings)
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.engine.request_stop(drain=False)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "engine thread did not stop"


@pytest.fixture
def engine(state_dir: Path, client: BatchClient) -> Iterator[EngineThread]:
    runner = EngineThread(state_dir)
    yield runner
    runner.stop()


def define(client: BatchClient, name: str, command: list[str], vcpus: float = 1, memory: int = 64, **extra: Any) -> str:
    """Register a job definition; returns ``name:revision``."""
    response = client.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={"command": command, "vcpus": vcpus, "memory": memory},
        **extra,
    )
    return f"{name}:{response['revision']}"


def submit(client: BatchClient, definition: str, name: str = "job", **extra: Any) -> str:
    job_id: str = client.submit_job(jobName=name, jobQueue="default", jobDefinition=definition, **extra)["jobId"]
    return job_id


def run_until_idle(state_dir: Path, settings: Settings = FAST) -> None:
    Engine(state_dir, settings=settings).run(until_idle=True)


def statuses(state_dir: Path, job_id: str) -> list[str]:
    """The sequence of states a job went through, from the event log."""
    store = Store(state_dir)
    try:
        return [r[0] for r in store.conn.execute("SELECT status FROM events WHERE job_id=? ORDER BY rowid", (job_id,))]
    finally:
        store.close()


def sh(script: str) -> list[str]:
    """A command that asks for a shell explicitly (the engine never adds one)."""
    return ["sh", "-c", script]
