"""The Slurm executor (``--executor slurm``): jobs through sbatch on the cluster this machine submits to,
task data in the work directory, which the nodes must share (as Nextflow's and Snakemake's do)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..base import Executor, RunContext

STEP_ARGUMENTS = "extra sbatch arguments for the step's jobs, e.g. --constraint=avx2 --gres=gpu:1"
POLL_ENV = "GENOBATCH_SLURM_POLL_SECONDS"  # set by admins (e.g. in /etc/profile.d) to spare the controller


def _default_poll() -> float:
    return float(os.environ.get(POLL_ENV, "10"))


@dataclass
class Settings:
    partition: str = field(default="", metadata={"flag": "--partition", "help": "Slurm partition (default: its own)"})
    account: str = field(default="", metadata={"flag": "--account", "help": "Slurm account to charge"})
    qos: str = field(default="", metadata={"flag": "--qos", "help": "Slurm quality of service"})
    poll_seconds: float = field(
        default_factory=_default_poll,
        metadata={"flag": "--slurm-poll", "help": f"seconds between sacct calls (default: ${POLL_ENV}, else 10)"},
    )
    array_parallelism: int = field(
        default=100,
        metadata={"flag": "--slurm-array-parallelism", "help": "tasks of an array running at once (%%T; 0: no cap)"},
    )
    retries: int = field(
        default=1,
        metadata={"flag": "--slurm-retries", "help": "new tries after a timeout (with twice the time), preemption "
                  "or node failure (default 1); out-of-memory kills get twice the memory until no node has more"},
    )  # fmt: skip
    retry_failures: int = field(
        default=0, metadata={"flag": "--slurm-retry-failures", "help": "new tries after an application error"}
    )
    memory_cap_mib: int = field(
        default=0, metadata={"flag": "--slurm-memory-cap", "help": "most MiB an out-of-memory retry may ask"}
    )


def open_executor(context: RunContext, settings: Settings) -> Executor:
    from .executor import SlurmExecutor

    return SlurmExecutor(context, settings)
