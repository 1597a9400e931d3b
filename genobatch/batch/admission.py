"""Resource admission: which RUNNABLE jobs start now, and why the others wait. Pure; no I/O.

Order is queue priority (higher first), then submission order. A job that does not fit does not block
smaller jobs behind it (backfill, up to ``BACKFILL_DEPTH`` jobs deep), except when it has waited longer than
the starvation limit: then its compute environments take no more backfill until it starts, so large jobs
cannot wait forever.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from .model import Resources

MIN_VCPUS = 0.25
MIN_MEMORY_MIB = 4
BACKFILL_DEPTH = 200  # jobs that do not fit, examined per queue and pass (cf. Slurm's bf_max_job_test)


@dataclass
class Pool:
    """One compute environment's capacity and what running attempts hold of it."""

    name: str
    capacity: Resources
    enabled: bool = True
    used_vcpus: float = 0.0
    used_memory_mib: int = 0
    reserved: bool = False  # a starving job claims the pool: no backfill this pass

    @property
    def free(self) -> Resources:
        return Resources(self.capacity.vcpus - self.used_vcpus, self.capacity.memory_mib - self.used_memory_mib)

    def fits(self, need: Resources) -> bool:
        free = self.free
        return self.enabled and need.vcpus <= free.vcpus + 1e-9 and need.memory_mib <= free.memory_mib

    def can_ever_fit(self, need: Resources) -> bool:
        return need.vcpus <= self.capacity.vcpus + 1e-9 and need.memory_mib <= self.capacity.memory_mib

    def take(self, need: Resources) -> None:
        self.used_vcpus += need.vcpus
        self.used_memory_mib += need.memory_mib

    def give_back(self, need: Resources) -> None:
        self.used_vcpus = max(0.0, self.used_vcpus - need.vcpus)
        self.used_memory_mib = max(0, self.used_memory_mib - need.memory_mib)

    @property
    def full(self) -> bool:
        free = self.free
        return not self.enabled or self.reserved or free.vcpus < MIN_VCPUS or free.memory_mib < MIN_MEMORY_MIB


@dataclass(frozen=True)
class Candidate:
    job_id: str
    seq: int  # submission order
    need: Resources
    runnable_since_ms: int


@dataclass
class QueueStream:
    """One job queue's RUNNABLE jobs in submission order, and the pools it places them in (in order)."""

    priority: int
    pools: tuple[str, ...]
    candidates: Iterator[Candidate]


def admit(
    streams: list[QueueStream],
    pools: dict[str, Pool],
    now_ms: int,
    starvation_ms: int,
    backfill_depth: int = BACKFILL_DEPTH,
) -> list[tuple[Candidate, str]]:
    """Place candidates, higher-priority queues first, then submission order; returns (candidate, pool) pairs.

    A queue stops being read once all its pools are full, or after ``backfill_depth`` jobs that did not fit,
    so a pass costs about as much as the jobs it starts, not as many as are waiting.
    """
    heap: list[tuple[int, int, int, Candidate]] = []

    def pull(index: int) -> None:
        candidate = next(streams[index].candidates, None)
        if candidate is not None:
            heapq.heappush(heap, (-streams[index].priority, candidate.seq, index, candidate))

    for index in range(len(streams)):
        pull(index)
    skipped = [0] * len(streams)
    placed: list[tuple[Candidate, str]] = []
    while heap:
        _, _, index, cand = heapq.heappop(heap)
        own = [pools[name] for name in streams[index].pools if name in pools]
        if all(pool.full for pool in own):
            continue  # this queue can place nothing more: stop reading it
        target = next((pool for pool in own if not pool.reserved and pool.fits(cand.need)), None)
        if target is not None:
            target.take(cand.need)
            placed.append((cand, target.name))
        else:
            skipped[index] += 1
            if now_ms - cand.runnable_since_ms >= starvation_ms:
                for pool in own:
                    if pool.can_ever_fit(cand.need):
                        pool.reserved = True
            if skipped[index] >= backfill_depth:
                continue
        pull(index)
    return placed


def why_waiting(need: Resources, own: list[Pool], jobs_ahead: int) -> str:
    """The statusReason shown for a RUNNABLE job (the answer to "why is my job not running?")."""
    enabled = [pool for pool in own if pool.enabled]
    if not enabled:
        return "Waiting: every compute environment of this job queue is DISABLED"
    fitting = [pool for pool in enabled if pool.fits(need)]
    if fitting and jobs_ahead:
        return f"Waiting: {jobs_ahead} job(s) of equal or higher priority are ahead in the queue"
    if fitting:
        return "Waiting: resources are free; the engine will start this job at its next pass (is an engine running?)"
    parts = [
        f"{pool.name} has {pool.free.vcpus:g} of {pool.capacity.vcpus:g} vCPU and "
        f"{pool.free.memory_mib} of {pool.capacity.memory_mib} MiB free"
        for pool in enabled
    ]
    return f"Waiting for resources: needs {need.describe()}; " + "; ".join(parts)
