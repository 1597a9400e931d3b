"""Per-step settings from a file (``genobatch run -c settings.yaml``), as nf-core's ``withName`` and ``ext.args``:

```yaml
steps:
  align: {cpus: 4, memory: 8 GB, time: 2h, args: -Y}
  call: {args: --min-MQ 20, args2: --prior 1e-2}   # args: bcftools mpileup; args2: bcftools call
  align: {slurm: --constraint=avx2}                 # an executor's own, for its jobs (sbatch's here)
```

Extra arguments enter the commands, so they enter the cache keys: changing them reruns the step and what
follows it. Resources do not: more memory or threads change how a task runs, not what it writes; nor do an
executor's arguments.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from genobatch.executors.registry import EXECUTORS
from genobatch.executors.registry import load as load_executor
from genobatch.problems import InputError, Problem

from .declarations import Step
from .templates import StepTemplates
from .units import seconds, step_memory_mib
from .yamlfile import Located, load, unknown_keys

ARGS = ("args", "args2", "args3")
TAKE_STEP_ARGUMENTS = [name for name in EXECUTORS if hasattr(load_executor(name), "STEP_ARGUMENTS")]
KEYS = ["cpus", "memory", "time", *ARGS, *TAKE_STEP_ARGUMENTS]


@dataclass(frozen=True)
class StepSettings:
    cpus: int | None = None
    memory_mib: int | None = None
    timeout_seconds: int | None = None
    args: dict[str, list[str]] = field(default_factory=dict)  # "args"/"args2"/"args3" -> words
    executor_args: dict[str, list[str]] = field(default_factory=dict)  # executor name -> its own arguments


def load_settings(path: Path, steps: dict[str, Step]) -> dict[str, StepSettings]:
    """Read and check the file against the loaded steps; InputError lists every problem with its line."""
    data = load(path, "settings file")
    problems = unknown_keys(data, ["steps"], path, "settings")
    section = data.get("steps", {})
    if not isinstance(section, Located):
        raise InputError([*problems, Problem(path, data.line_of("steps"), "steps must map step names to settings", "")])
    settings = {}
    for name, values in section.items():
        line = section.line_of(name)
        if name not in steps:
            close = difflib.get_close_matches(name, list(steps), n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"steps: {', '.join(sorted(steps))}"
            problems.append(Problem(path, line, f"there is no step {name!r}", fix))
            continue
        if not isinstance(values, Located):
            problems.append(Problem(path, line, f"{name}: give a mapping, e.g. {{cpus: 2, args: -Y}}", ""))
            continue
        problems.extend(unknown_keys(values, KEYS, path, f"steps.{name}"))
        settings[name] = _step_settings(steps[name], values, path, problems)
    if problems:
        raise InputError(problems)
    return settings


def _step_settings(step: Step, values: Located, path: Path, problems: list[Problem]) -> StepSettings:
    cpus = values.get("cpus")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1):
        problems.append(
            Problem(path, values.line_of("cpus"), f"{step.name}: cpus {cpus!r} is not valid", "e.g. cpus: 4")
        )
        cpus = None
    memory = timeout = None
    try:
        memory = step_memory_mib(values["memory"]) if "memory" in values else None
        timeout = seconds(values["time"]) if "time" in values else None
    except ValueError as exc:
        key = "time" if "memory" not in values or memory is not None else "memory"
        problems.append(Problem(path, values.line_of(key), f"{step.name}: {exc}", "e.g. memory: 8 GB, time: 2h"))
    args = {}
    templates = StepTemplates(step)
    for key in ARGS:
        if key not in values:
            continue
        if not templates.uses(key):
            where = ", ".join(k for k in ARGS if templates.uses(k)) or "none"
            problems.append(
                Problem(
                    path,
                    values.line_of(key),
                    f"{step.name} has no place for {key} (its command uses: {where})",
                    f"see {step.source}",
                )
            )
            continue
        args[key] = shlex.split(str(values[key]))
    executor_args = {name: shlex.split(str(values[name])) for name in TAKE_STEP_ARGUMENTS if name in values}
    return StepSettings(cpus, memory, timeout, args, executor_args)
