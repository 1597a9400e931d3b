"""The embedded batch engine: AWS Batch's model (definitions, queues, environments, jobs) on one machine.

Public API::

    from genobatch.batch import BatchClient, Engine, JobStatus, ExitReason, ClientException
"""

from .client import BatchClient
from .engine import Engine, Settings
from .errors import ClientException, EngineLockedError
from .model import ExitReason, JobStatus
from .store import default_state_dir

__all__ = [
    "BatchClient",
    "ClientException",
    "Engine",
    "EngineLockedError",
    "ExitReason",
    "JobStatus",
    "Settings",
    "default_state_dir",
]
