"""The embedded batch engine: AWS Batch's model (definitions, queues, environments, jobs) on one machine.

Public API::

    from genobatch.batch import BatchClient, Engine, JobStatus, ExitReason, ClientException

The names are imported when first used (PEP 562), so that a light module such as ``genobatch.batch.model``
can be imported without the engine, the store and SQLite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers; at run time __getattr__ imports them
    from .client import BatchClient as BatchClient
    from .engine import Engine as Engine
    from .engine import Settings as Settings
    from .errors import ClientException as ClientException
    from .errors import EngineLockedError as EngineLockedError
    from .model import ExitReason as ExitReason
    from .model import JobStatus as JobStatus
    from .store import default_state_dir as default_state_dir

_WHERE = {
    "BatchClient": "client",
    "Engine": "engine",
    "Settings": "engine",
    "ClientException": "errors",
    "EngineLockedError": "errors",
    "ExitReason": "model",
    "JobStatus": "model",
    "default_state_dir": "store",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
