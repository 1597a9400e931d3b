"""The executors, by name: each is one module (or package) imported only when asked for (after Toil's registry
of batch systems), so that a local run never imports boto3. Each module has:

- ``Settings``: a dataclass of its options; every field becomes a ``genobatch run`` flag (its metadata
  gives the flag and the help), after Snakemake's executor settings;
- ``open_executor(context, settings)``: the ``base.Executor`` for a run;
- ``STEP_ARGUMENTS`` (optional): what a step's ``<executor name>: ...`` in the settings file means (sbatch's
  extra arguments for Slurm), or absent when it takes none.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXECUTORS = {
    "local": "genobatch.executors.local",
    "awsbatch": "genobatch.executors.awsbatch",
    "slurm": "genobatch.executors.slurm",
}


def load(name: str) -> ModuleType:
    """The executor's module; KeyError for a name that is not registered."""
    return importlib.import_module(EXECUTORS[name])


class MissingExtra(Exception):
    """An optional dependency is not installed; the message says which extra brings it."""


def import_extra(extra: str, module: str, needed_by: str) -> None:
    """Import ``module`` (of the ``genobatch[extra]`` extra), or raise MissingExtra saying how to install it."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        message = f"{needed_by} needs {module}, which is not installed: pip install 'genobatch[{extra}]'"
        raise MissingExtra(message) from exc
