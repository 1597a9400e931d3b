"""A backend that sends each job where it can run: jobs with an image to a remote batch system, jobs without one
(steps with ``image: host``, such as a user's own tool) to this machine's engine, staged the same way."""

from __future__ import annotations

from collections.abc import Sequence

from .contract import Backend, Capabilities, JobSpec, JobState, Recoveries, Stuck


class RoutedBackend(Backend):
    """Jobs with an image go to ``remote``; jobs without one run on ``local``. Its capabilities are the
    stricter of the two's."""

    capabilities = Capabilities(name="routed", min_timeout_seconds=60, shared_filesystem=False)

    def __init__(self, remote: Backend, local: Backend) -> None:
        self.remote, self.local = remote, local
        self.owner: dict[str, Backend] = {}

    def _of(self, job_id: str) -> Backend:
        return self.owner.get(job_id.partition(":")[0], self.remote)

    def submit(self, spec: JobSpec) -> str:
        target = self.remote if spec.image else self.local
        if any(self._of(d) is not target for d in spec.depends_on):
            raise ValueError(f"job {spec.name} would depend on jobs of another backend")
        job_id = target.submit(spec)
        self.owner[job_id] = target
        return job_id

    def poll(self, job_ids: Sequence[str]) -> list[JobState]:
        remote = [j for j in job_ids if self._of(j) is self.remote]
        local = [j for j in job_ids if self._of(j) is self.local]
        return (self.remote.poll(remote) if remote else []) + (self.local.poll(local) if local else [])

    def cancel(self, job_ids: Sequence[str], reason: str) -> None:
        for job_id in job_ids:
            self._of(job_id).cancel([job_id], reason)

    def stuck(self, seconds: float) -> list[Stuck]:
        return self.remote.stuck(seconds) + self.local.stuck(seconds)

    def recoveries(self) -> Recoveries:
        return self.remote.recoveries()

    def close(self) -> None:
        self.remote.close()
        self.local.close()
