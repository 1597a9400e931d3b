"""The Slurm commands genobatch uses, and what they print read into ``Record``s. Every call is counted
(``calls``): a cluster's controller is shared, and genobatch asks it once per poll for all of a run's jobs,
never once per job.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SQUEUE_TIMES = ("submit_time", "start_time", "end_time")
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Reason", "Submit", "Start", "End", "TotalCPU", "MaxRSS")
_ARRAY = re.compile(r"^(\d+)_\[([^\]]+)\]$")  # a pending array, not yet split into tasks: 123_[0-9%4]


class ClusterError(Exception):
    pass


@dataclass
class Record:
    """One job, or one task of an array (``native_id`` ``123`` or ``123_4``), as Slurm reports it."""

    native_id: str
    state: str
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    submitted_ms: int | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    cpu_seconds: float | None = None
    max_rss_kib: int | None = None
    ran: bool = False  # its batch script started (a job cancelled while it waited did not)


class Cluster:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # command -> how many times it was run

    def run(self, *argv: str, check: bool = True) -> str:
        self.calls[argv[0]] += 1
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        except FileNotFoundError:
            raise ClusterError(f"{argv[0]} is not installed: this machine cannot submit to Slurm") from None
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(argv[:2])} failed: {result.stderr.strip()[-500:]}")
        return result.stdout

    # --- facts ----------------------------------------------------------------------------------------------
    def config(self) -> dict[str, str]:
        return dict(
            _pairs(line, " = ") for line in self.run("scontrol", "show", "config").splitlines() if " = " in line
        )

    def partitions(self) -> list[dict[str, str]]:
        return [_record(line) for line in self.run("scontrol", "show", "partition", "--oneliner").splitlines()]

    def nodes(self) -> list[dict[str, str]]:
        return [_record(line) for line in self.run("scontrol", "show", "node", "--oneliner").splitlines()]

    # --- jobs -----------------------------------------------------------------------------------------------
    def sbatch(self, options: list[str], script: Path) -> str:
        """Submit; returns the job id (``--parsable`` prints ``id`` or ``id;cluster``)."""
        return self.run("sbatch", "--parsable", *options, str(script)).strip().split(";")[0]

    def scancel(self, native_ids: list[str]) -> None:
        if native_ids:
            self.run("scancel", *native_ids, check=False)

    def sacct(self, native_ids: list[str], name: str) -> dict[str, Record]:
        """These jobs (an array's id brings its tasks), with their batch steps' CPU time and peak memory: one
        call. By id, not by ``--name``: sacct's time window leaves out jobs cancelled before they were eligible
        (those whose dependency failed)."""
        if not native_ids:
            return {}
        fields = ",".join(SACCT_FIELDS)
        out = self.run("sacct", "--noheader", "--parsable2", f"--jobs={','.join(native_ids)}", f"--format={fields}")
        return parse_sacct(out)

    def pending_reasons(self, native_ids: list[str]) -> dict[str, str]:
        """Why these jobs wait, from the controller (sacct knows no reason while a job waits): one call."""
        if not native_ids:
            return {}
        out = self.run("squeue", "--noheader", f"--jobs={','.join(native_ids)}", "--format=%i|%r", check=False)
        reasons = {}
        for line in out.splitlines():
            job_id, _, reason = line.partition("|")
            reasons.update(dict.fromkeys(_expand(job_id.strip()), reason.strip()))
        return reasons

    def squeue(self, native_ids: list[str], name: str) -> dict[str, Record]:
        """Without accounting: the jobs named ``name`` the controller still holds (it forgets finished jobs
        after MinJobAge), from one ``squeue --json`` call."""
        return parse_squeue(self.run("squeue", "--json", "--states=all"), name)


def parse_sacct(out: str) -> dict[str, Record]:
    records: dict[str, Record] = {}
    steps: dict[str, tuple[float | None, int | None]] = {}
    for line in out.splitlines():
        values = dict(zip(SACCT_FIELDS, line.split("|"), strict=False))
        job_id = values.get("JobID", "")
        if not job_id:
            continue
        if "." in job_id:  # a step: the batch script's own CPU time and peak memory
            parent, step = job_id.split(".", 1)
            if step == "batch":
                steps[parent] = (_cpu_seconds(values.get("TotalCPU", "")), _kib(values.get("MaxRSS", "")))
            continue
        code, signal = _exit_code(values.get("ExitCode", ""))
        for native_id in _expand(job_id):
            records[native_id] = Record(
                native_id,
                values.get("State", ""),
                code,
                signal,
                values.get("Reason", ""),
                _ms(values.get("Submit", "")),
                _ms(values.get("Start", "")),
                _ms(values.get("End", "")),
                _cpu_seconds(values.get("TotalCPU", "")),
            )
    for native_id, (cpu, rss) in steps.items():
        if native_id in records:
            record = records[native_id]
            record.cpu_seconds = cpu if cpu is not None else record.cpu_seconds
            record.max_rss_kib, record.ran = rss, True
    return records


def parse_squeue(out: str, name: str) -> dict[str, Record]:
    records = {}
    for job in json.loads(out).get("jobs", []):
        if job.get("name") != name:
            continue
        array_task = job.get("array_task_id")
        native_id = (
            f"{job['array_job_id']}_{array_task}"
            if job.get("array_job_id") and array_task is not None
            else str(job["job_id"])
        )
        status = job.get("exit_code")  # a wait status: the code in the high byte, a signal in the low
        submitted, started, ended = (int(job[k]) * 1000 if job.get(k) else None for k in SQUEUE_TIMES)
        records[native_id] = Record(
            native_id,
            str(job.get("job_state", "")),
            status >> 8 if isinstance(status, int) else None,
            (status & 0x7F) or None if isinstance(status, int) else None,
            str(job.get("state_reason", "")),
            submitted,
            started,
            ended,
            ran=bool(job.get("batch_host")),
        )
    return records


def _expand(job_id: str) -> list[str]:
    """``123_[0-2,5%4]`` (tasks not started yet) -> 123_0, 123_1, 123_2, 123_5."""
    match = _ARRAY.match(job_id)
    if not match:
        return [job_id]
    indices: list[int] = []
    for part in match.group(2).split("%")[0].split(","):
        low, _, high = part.partition("-")
        indices += range(int(low), int(high or low) + 1)
    return [f"{match.group(1)}_{i}" for i in indices]


def _exit_code(text: str) -> tuple[int | None, int | None]:
    code, _, signal = text.partition(":")
    return (int(code) if code.isdigit() else None, int(signal) if signal.isdigit() and int(signal) else None)


def _ms(text: str) -> int | None:
    try:
        return int(time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S")) * 1000)
    except ValueError:
        return None


def _cpu_seconds(text: str) -> float | None:
    """``MM:SS.mmm``, ``HH:MM:SS`` or ``D-HH:MM:SS``."""
    if not text:
        return None
    days, _, clock = text.rpartition("-")
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds + (int(days) * 86400 if days else 0)


def _kib(text: str) -> int | None:
    match = re.fullmatch(r"([\d.]+)([KMGT]?)", text)
    if not match:
        return None
    return int(float(match.group(1)) * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}[match.group(2)])


def _pairs(line: str, separator: str) -> tuple[str, str]:
    key, _, value = line.partition(separator)
    return key.strip(), value.strip()


def _record(line: str) -> dict[str, str]:
    """``scontrol --oneliner`` output: ``Key=Value`` words."""
    return dict(word.split("=", 1) for word in line.split() if "=" in word)
