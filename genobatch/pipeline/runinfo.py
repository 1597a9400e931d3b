"""What a run leaves about itself, as nf-core pipelines do: ``pipeline_info/`` files named with the run's start
(``execution_trace_<run>.txt`` growing as attempts end, ``execution_report_<run>.html``,
``params_<run>.json``; ``software_versions.yml``, rewritten only when it changes), never overwritten by a
later run, and a record per run in ``<work>/runs/`` for ``genobatch runs`` (after ``nextflow log``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RUN_ID_FORMAT = "%Y-%m-%d_%H-%M-%S"


def new_run_id(work: Path, started: float) -> str:
    """The run's start, as nf-core names its pipeline_info files; ``_2``... if another run began that second."""
    base = time.strftime(RUN_ID_FORMAT, time.localtime(started))
    run_id, n = base, 1
    while (work / "runs" / f"{run_id}.json").exists():
        n += 1
        run_id = f"{base}_{n}"
    return run_id


@dataclass
class RunRecord:
    run_id: str
    command: str
    work_dir: str
    outdir: str
    info: str  # the pipeline_info folder with its trace and report
    started: float
    pid: int
    status: str = "running"  # running, succeeded, failed, interrupted (killed: running with its pid gone)
    finished: float | None = None
    ran: int = 0
    cached: int = 0
    failed: int = 0

    @property
    def trace(self) -> Path:
        return Path(self.info) / f"execution_trace_{self.run_id}.txt"

    @property
    def report(self) -> Path:
        return Path(self.info) / f"execution_report_{self.run_id}.html"

    def save(self, work: Path) -> None:
        path = work / "runs" / f"{self.run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".partial")
        temporary.write_text(json.dumps(asdict(self), indent=1) + "\n")
        temporary.replace(path)

    def shown_status(self) -> str:
        """``killed`` for a run recorded as running whose process is gone (SIGKILL, a crash, a reboot)."""
        if self.status != "running":
            return self.status
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return "killed"
        except PermissionError:
            pass
        return "running"


def load_runs(work: Path) -> list[RunRecord]:
    records = []
    for path in sorted((work / "runs").glob("*.json")):
        try:
            records.append(RunRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return records


def write_if_changed(path: Path, text: str) -> None:
    """Leave a file that already says this untouched (its mtime too)."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(text)
    temporary.replace(path)


def software_versions(versions: dict[str, dict[str, str]], workflow: dict[str, Any]) -> str:
    """nf-core's ``software_versions.yml``: each step's tools and versions, then the workflow's own."""
    lines = []
    for step, tools in versions.items():
        lines.append(f"{step}:")
        lines += [f"  {tool}: {json.dumps(version)}" for tool, version in sorted(tools.items())]
    lines.append("Workflow:")
    for key, value in workflow.items():
        if isinstance(value, dict) and value:
            lines.append(f"  {key}:")
            lines += [f"    {k}: {json.dumps(v)}" for k, v in sorted(value.items())]
        else:
            lines.append(f"  {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"
