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
