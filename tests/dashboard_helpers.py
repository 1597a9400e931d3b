"""A work directory as a run leaves it, made with the real engine (fast, no tools): a run record, a trace with a
cached task, task files, jobs that succeed, fail, are not run because of a failure, and one still queued; and
HTTP requests sent byte for byte (no client normalising ``..`` away)."""

from __future__ import annotations

import http.client
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genobatch.batch import BatchClient
from genobatch.pipeline.runinfo import RunRecord
from genobatch.report.trace import FIELDS
from genobatch.web.server import DashboardServer

from .conftest import define, run_until_idle

RUN = "2026-11-30_10-00-00"
SECRET = "top-secret-outside-the-work-dir"


@dataclass
class MadeRun:
    work: Path
    outdir: Path
    record: RunRecord
    ok: str  # job ids
    failed: str
    not_run: str
    array: str
    queued: str
    secret: Path  # a file outside the work directory and the outdir


def task_file(work: Path, name: str, specs: list[dict[str, object]]) -> str:
    path = work / "tasks" / f"{name}-0123456789abcdef.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(specs))
    return str(path)


def make_run(root: Path) -> MadeRun:
    work, outdir = root / "work", root / "results"
    (outdir / "pipeline_info").mkdir(parents=True)
    (outdir / "multiqc").mkdir()
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    client = BatchClient(work / "engine")
    tags = {"run": RUN}
    say = define(client, "say", ["sh", "-c", "echo said >&2"])
    pipes = [{"argv": [["bwa", "mem", "ref.fa", "S1_R1.fq"], ["samtools", "sort", "-"]], "stdout": None}]
    failing = task_file(work, "align-S1", [{"name": "align:S1:1:0", "step": "align", "sample": "S1", "pipes": pipes}])
    fail_def = define(
        client, "fail", ["sh", "-c", "echo '[mem_sam_pe] paired reads differ' >&2; exit 3", "sh", failing]
    )

    def submit(name: str, definition: str, step: str, **extra: object) -> str:
        request = {"jobName": name, "jobQueue": "default", "jobDefinition": definition,
                   "tags": {**tags, "step": step, "sample": "S1"}, **extra}  # fmt: skip
        return str(client.submit_job(**request)["jobId"])

    ok = submit("fastqc-S1", say, "fastqc")
    failed = submit("align-S1", fail_def, "align")
    not_run = submit("merge-S1", say, "merge", dependsOn=[{"jobId": failed}])
    array = submit("call-S1", say, "call", arrayProperties={"size": 2})
    run_until_idle(work / "engine")
    queued = submit("vcfstats-S1", say, "vcfstats")  # no engine runs now: it waits, saying why
    client.close()
    record = RunRecord(RUN, "genobatch run --input s.csv", str(work), str(outdir), str(outdir / "pipeline_info"),
                       time.time() - 60, os.getpid(), status="running")  # fmt: skip
    record.save(work)
    with open(record.trace, "w") as handle:
        handle.write("\t".join(FIELDS) + "\n")
        cached = {"task_id": "1", "name": "reference", "status": "CACHED", "step": "reference", "sample": "-"}
        handle.write("\t".join(cached.get(f, "-") for f in FIELDS) + "\n")
    record.report.write_text("<html><body>Run failed: the report</body></html>")
    (outdir / "multiqc" / "multiqc_report.html").write_text("<html><body>MultiQC report</body></html>")
    return MadeRun(work, outdir, record, ok, failed, not_run, array, queued, secret)


def raw_get(port: int, path: str, host: str = "127.0.0.1", headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``path`` exactly as given (``..``, ``%2e%2e`` and ``//`` included)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", f"{host}:{port}")
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    conn.close()
    return response.status, body


def post(port: int, path: str, token: str | None, body: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json", **({"X-Genobatch-Token": token} if token is not None else {})}
    conn.request("POST", path, body=json.dumps(body or {}), headers=headers)
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, data


def make_trace_run(root: Path, tasks: int, failed_every: int = 100) -> RunRecord:
    """A run that ended leaving only its trace (as on AWS Batch or Slurm): ``tasks`` tasks of 10 samples each,
    one second apart, every ``failed_every``-th one FAILED."""
    work, info = root / "work", root / "results" / "pipeline_info"
    info.mkdir(parents=True)
    record = RunRecord(RUN, "genobatch run --input big.csv", str(work), str(root / "results"), str(info),
                       time.time() - tasks, os.getpid(), status="failed", finished=time.time())  # fmt: skip
    record.save(work)
    start = time.localtime(record.started)
    with open(record.trace, "w") as handle:
        handle.write("\t".join(FIELDS) + "\n")
        for i in range(tasks):
            submit = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.mktime(start) + i)) + ".000"
            status = "FAILED" if i % failed_every == failed_every - 1 else "COMPLETED"
            row = {"task_id": str(i + 1), "name": f"step{i % 10}:S{i // 10:05d}", "status": status,
                   "step": f"step{i % 10}", "sample": f"S{i // 10:05d}", "submit": submit, "duration": "2s",
                   "realtime": "1s", "exit": "1" if status == "FAILED" else "0"}  # fmt: skip
            handle.write("\t".join(row.get(f, "-") for f in FIELDS) + "\n")
    return record


def port(server: DashboardServer) -> int:
    return int(server.server_address[1])


def wait_until(what: str, condition: Any, seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value
