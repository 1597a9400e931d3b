"""The web dashboard, ``genobatch serve``: its JSON API on a work directory made by the real engine, path safety
(traversal in every spelling, symlinks pointing out), read-only unless a token is shown, and a real demo run
watched in headless chromium (counts that change, a failed job's log, the finished report), with screenshots."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genobatch.batch import BatchClient
from genobatch.batch.jobs import set_status
from genobatch.batch.model import JobStatus
from genobatch.batch.store import Store
from genobatch.pipeline.runinfo import RunRecord
from genobatch.report.trace import FIELDS
from genobatch.web import state
from genobatch.web.api import Dashboard, NotFound
from genobatch.web.follow import TraceFollower, whole_rows
from genobatch.web.server import DashboardServer
from genobatch.web.tasks import TASK_PAGE, TIMELINE_BARS, TaskQuery, from_trace

from .conftest import EngineThread, define, run_until_idle
from .dashboard_helpers import RUN, SECRET, MadeRun, make_run, make_trace_run, post, raw_get
from .pipeline_helpers import DATA, failing_bwa, needs_tools
from .test_run_experience import browser, screenshot, texts  # noqa: F401 - the browser fixture, shared

MEASLES = DATA / "measles"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> MadeRun:
    return make_run(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture
def server(made: MadeRun) -> Iterator[DashboardServer]:
    served = DashboardServer(made.work)
    served.start()
    yield served
    served.shutdown()
    served.server_close()


def port(server: DashboardServer) -> int:
    return int(server.server_address[1])


# --- the JSON API -----------------------------------------------------------------------------------------------
def test_a_run_as_the_dashboard_shows_it(made: MadeRun) -> None:
    run = Dashboard(made.work).run(RUN)
    by_name = {t["name"]: t for t in run["tasks"]}
    assert by_name["reference"]["status"] == "CACHED", "the trace's cached tasks are joined with the engine's jobs"
    assert by_name["align:S1:1:0"]["status"] == "FAILED" and by_name["align:S1:1:0"]["exit"] == 3
    assert by_name["merge-S1"]["status"] == "ABORTED", "not run because the job it needs failed"
    assert {by_name["call-S1:0"]["status"], by_name["call-S1:1"]["status"]} == {"SUCCEEDED"}
    assert "no genobatch engine is running" in by_name["vcfstats-S1"]["reason"], "why a queued job waits"
    counts = {k: run[k] for k in ("total", "done", "cached", "running", "waiting", "failed")}
    assert counts == {"total": 7, "done": 3, "cached": 1, "running": 0, "waiting": 1, "failed": 2}
    steps = [s["step"] for s in run["steps"]]
    assert steps.index("reference") < steps.index("fastqc") < steps.index("align") < steps.index("call")
    assert {b["task"] for b in run["timeline"]} == {"fastqc-S1", "align:S1:1:0", "call-S1:0", "call-S1:1"}
    assert all(b["start"] <= b["stop"] for b in run["timeline"])
    assert run["report"] and not run["multiqc"], "MultiQC is linked once the run is over"
    with pytest.raises(NotFound, match=r"no run 2026-01-01_00-00-00 in .* \(yet\)"):
        Dashboard(made.work).run("2026-01-01_00-00-00")  # a run printed by `genobatch run`, still checking inputs
    listed = Dashboard(made.work).runs()["runs"]
    assert [r["id"] for r in listed] == [RUN] and listed[0]["samples"] == 1


def test_an_ended_run_is_worked_out_once_a_running_one_at_every_ask(
    made: MadeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page asks for a run every few seconds; a run that ended changes no more (0.6 s per ask at 10,000
    tasks), while a running one must be read afresh each time."""
    board = Dashboard(made.work)
    calls = []
    worked_out = board.tasks
    monkeypatch.setattr(board, "tasks", lambda record: calls.append(record.run_id) or worked_out(record))
    board.run(RUN)
    board.run(RUN)
    assert len(calls) == 2, "running: read at every ask"
    made.record.status, made.record.finished = "failed", time.time()
    made.record.save(made.work)
    first, again = board.run(RUN), board.run(RUN)
    assert len(calls) == 3, "ended: worked out once"
    assert first["tasks"] == again["tasks"] and first["status"] == again["status"] == "failed"
    assert again["now"] >= first["now"]


def test_a_running_run_is_read_again_only_where_it_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a run goes on, the page's asks read only the jobs with new events and the trace's new rows (a
    running run of 70,000 tasks took 1.1-1.5 s to read whole); what they show is what a whole read shows."""
    made = make_run(tmp_path)
    board = Dashboard(made.work)
    board.run(RUN)
    whole_reads = []
    monkeypatch.setattr(state, "run_jobs", lambda *a: whole_reads.append(a) or [])
    client = BatchClient(made.work / "engine")
    say = define(client, "later", ["sh", "-c", "echo later >&2"])
    tags = {"run": RUN, "step": "bamstats", "sample": "S2"}
    for request in ({"jobName": "bamstats-S2", "arrayProperties": {"size": 3}}, {"jobName": "late-S2"}):
        client.submit_job(jobQueue="default", jobDefinition=say, tags=tags, **request)
    client.submit_job(jobName="other-run", jobQueue="default", jobDefinition=say, tags={"run": "another"})
    client.cancel_job(jobId=made.queued, reason="no longer needed")
    client.close()
    run_until_idle(made.work / "engine")
    with open(made.record.trace, "a") as handle:
        row = {"task_id": "2", "name": "fastqc-S9", "status": "COMPLETED", "step": "fastqc", "sample": "S9",
               "submit": "2026-11-30 10:00:01.000", "duration": "2s", "realtime": "1s", "exit": "0"}  # fmt: skip
        handle.write("\t".join(row.get(f, "-") for f in FIELDS) + "\n" + "3\tpartial")  # a row still being written
    followed = board.run(RUN)
    assert not whole_reads, "only what changed was read"
    monkeypatch.undo()
    fresh = Dashboard(made.work).run(RUN)
    for key in ("tasks", "timeline", "steps", "total", "done", "waiting", "failed", "cached", "samples"):
        assert followed[key] == fresh[key], key
    names = [t["name"] for t in followed["tasks"]]
    assert names[-4:] == ["bamstats-S2:0", "bamstats-S2:1", "bamstats-S2:2", "late-S2"] and "other-run" not in names
    assert "fastqc-S9" in names and followed["total"] == 12
    assert {t["status"] for t in followed["tasks"] if t["job_id"] == made.queued} == {"ABORTED"}, "the cancelled job"


def test_a_retry_before_them_pushes_queued_jobs_out_of_the_explained(tmp_path: Path) -> None:
    """Why a queued job waits is worked out for the first ``WAIT_REASONS_MAX`` of them at each ask; one pushed
    out by a retry queued before it shows no reason, as a whole read shows it."""
    work = tmp_path / "work"
    client = BatchClient(work / "engine")
    definition = define(client, "say", ["true"])
    tags = {"run": RUN, "step": "s"}
    ids = [
        client.submit_job(jobName=f"t{i}", jobQueue="default", jobDefinition=definition, tags=tags)["jobId"]
        for i in range(state.WAIT_REASONS_MAX + 2)
    ]
    client.close()
    info = tmp_path / "results" / "pipeline_info"
    RunRecord(RUN, "genobatch run", str(work), str(info.parent), str(info), time.time(), os.getpid()).save(work)
    store = Store(work / "engine")

    def move(*statuses: JobStatus) -> None:
        with store.write() as conn:
            for status in statuses:
                set_status(conn, ids[0], status)

    board = Dashboard(work)
    move(JobStatus.PENDING, JobStatus.RUNNABLE, JobStatus.STARTING, JobStatus.RUNNING)
    explained = {t["job_id"] for t in board.run(RUN)["tasks"] if t["reason"]}
    assert ids[state.WAIT_REASONS_MAX] in explained and ids[0] not in explained
    move(JobStatus.RUNNABLE)  # its attempt failed: it is retried, queued before the others
    followed = board.run(RUN)["tasks"]
    assert followed == Dashboard(work).run(RUN)["tasks"]
    assert {t["job_id"]: t["reason"] for t in followed}[ids[state.WAIT_REASONS_MAX]] == ""
    store.close()


def test_a_trace_row_being_written_is_read_once_whole(tmp_path: Path) -> None:
    """The follower reads whole rows only: up to the last newline outside a quoted field (a cancel's reason may
    hold a newline), so a row cut at that newline is read at the next ask, once, as itself."""
    rows = io.StringIO()
    writer = csv.writer(rows, delimiter="\t", lineterminator="\n")
    writer.writerow(FIELDS)
    done = {"task_id": "1", "name": "a:S1", "status": "COMPLETED", "step": "a", "sample": "S1"}
    cancelled = {"task_id": "2", "name": "b:S1", "status": "ABORTED", "exit_reason": "cancelled:\nno longer needed"}
    for row in (done, cancelled):
        writer.writerow([row.get(f, "-") for f in FIELDS])
    text, trace = rows.getvalue(), tmp_path / "trace.txt"
    follower = TraceFollower(trace)
    trace.write_text(text[: text.index("no longer")])
    assert [(t.name, t.status) for t in follower.read()] == [("a:S1", "COMPLETED")]
    trace.write_text(text)
    assert [(t.name, t.status, t.reason) for t in follower.read()] == [
        ("a:S1", "COMPLETED", ""),
        ("b:S1", "ABORTED", "cancelled:\nno longer needed"),
    ]
    assert whole_rows(b'a\t"x\ny"\n') == len(b'a\t"x\ny"\n') and whole_rows(b'a\n"b\n') == 2


def test_a_trace_s_attempts_as_timeline_bars(tmp_path: Path) -> None:
    """Runs on AWS Batch or Slurm leave only their trace: its submit time (local, with milliseconds), duration
    and realtime place each attempt; a time that does not parse places none, and the rest still reads."""
    rows = [
        {"name": "align:S1", "status": "COMPLETED", "submit": "2026-11-29 21:49:05.123", "duration": "3s",
         "realtime": "2s", "step": "align", "sample": "S1", "exit": "0"},
        {"name": "call:S1", "status": "FAILED", "submit": "2026-11-29 21:49:05.x", "duration": "1s",
         "realtime": "1s", "step": "call", "sample": "S1", "exit": "1"},
    ]  # fmt: skip
    trace = tmp_path / "trace.txt"
    lines = ["\t".join(FIELDS)] + ["\t".join(row.get(f, "-") for f in FIELDS) for row in rows]
    trace.write_text("\n".join(lines) + "\n")
    align, call = from_trace(trace)
    submit = int(time.mktime(time.strptime("2026-11-29 21:49:05", "%Y-%m-%d %H:%M:%S"))) * 1000 + 123
    (bar,) = align.bars
    assert (bar.submit, bar.start, bar.stop, bar.ok) == (submit, submit + 1000, submit + 3000, True)
    assert call.status == "FAILED" and call.exit == 1 and call.bars[0].submit is None


def test_a_big_run_is_sent_a_page_at_a_time(tmp_path: Path) -> None:
    """The page asks for one page of the run's tasks, filtered by the server, and the earliest attempts for the
    timeline: a run of 70,000 tasks is tens of MB of JSON every few seconds otherwise."""
    make_trace_run(tmp_path, 2500, failed_every=100)
    board = Dashboard(tmp_path / "work")
    first = board.run(RUN)
    assert (first["total"], first["failed"], first["done"]) == (2500, 25, 2475), "counts are of every task"
    assert len(first["tasks"]) == TASK_PAGE == 1000 and first["matching"] == 2500 and first["offset"] == 0
    assert first["tasks"][0]["name"] == "step0:S00000"
    last = board.run(RUN, TaskQuery(offset=2000))
    assert len(last["tasks"]) == 500 and last["tasks"][-1]["name"] == "step9:S00249"
    failed = board.run(RUN, TaskQuery(group="failed"))
    assert failed["matching"] == 25 and {t["status"] for t in failed["tasks"]} == {"FAILED"}
    found = board.run(RUN, TaskQuery(search="s00042"))
    assert [t["name"] for t in found["tasks"]] == [f"step{i}:S00042" for i in range(10)], "name or sample, any case"
    assert len(first["timeline"]) == TIMELINE_BARS and first["timelineTotal"] == 2500
    starts = [b["start"] for b in first["timeline"]]
    assert starts == sorted(starts) and first["timeline"][0]["task"] == "step0:S00000", "the earliest attempts"
    assert len(json.dumps(first)) < 400_000, "a page, not the run"
    with pytest.raises(ValueError, match="state='stuck' is not a state: give one of all, done"):
        TaskQuery(group="stuck")
    served = DashboardServer(tmp_path / "work")
    served.start()
    try:
        status, body = raw_get(port(served), f"/api/runs/{RUN}?state=failed&offset=20&limit=3")
        answer = json.loads(body)
        assert status == 200 and answer["matching"] == 25 and len(answer["tasks"]) == 3
        assert [t["name"] for t in answer["tasks"]] == ["step9:S00209", "step9:S00219", "step9:S00229"]
        status, body = raw_get(port(served), f"/api/runs/{RUN}?limit=0")
        assert status == 400 and "limit=0 is out of range: give 1 to 5000" in json.loads(body)["error"]
    finally:
        served.shutdown()
        served.server_close()


def test_a_failed_job_its_command_attempts_and_log_followed_by_offset(made: MadeRun) -> None:
    board = Dashboard(made.work)
    job = board.job(RUN, made.failed)
    assert job["command"] == "bwa mem ref.fa S1_R1.fq | samtools sort -", "from the task file its command names"
    assert job["exitCode"] == 3 and [a["exitCode"] for a in job["attempts"]] == [3] and not job["active"]
    log = board.log(RUN, made.failed, None, "stderr", None)
    assert log["text"] == "[mem_sam_pe] paired reads differ\n" and log["nextOffset"] == log["size"]
    assert board.log(RUN, made.failed, 1, "stderr", log["nextOffset"])["text"] == "", "nothing new since"
    assert board.log(RUN, made.failed, 1, "stderr", 10**9)["text"] == log["text"], "a file that shrank: its end"
    assert board.log(RUN, made.failed, None, "stdout", None)["text"] == ""
    with pytest.raises(NotFound, match="stream must be one of stderr, stdout"):
        board.log(RUN, made.failed, None, "../../state.db", None)
    with pytest.raises(NotFound, match="no job"):
        board.job(RUN, "0000-not-a-job")
    queues = board.queues()["queues"]
    default = next(q for q in queues if q["name"] == "default")
    assert default["jobs"]["SUCCEEDED"] == 3 and default["jobs"]["FAILED"] == 2 and default["jobs"]["SUBMITTED"] == 1


def test_a_running_job_s_log_is_followed_from_its_offset(tmp_path: Path) -> None:
    made = make_run(tmp_path)
    go = tmp_path / "go"
    client = BatchClient(made.work / "engine")
    script = f"echo one >&2; while [ ! -e {go} ]; do sleep 0.05; done; echo two >&2"
    request = {"jobName": "follow", "jobQueue": "default", "tags": {"run": RUN, "step": "follow"}}
    job_id = str(client.submit_job(**request, jobDefinition=define(client, "follow", ["sh", "-c", script]))["jobId"])
    engine = EngineThread(made.work / "engine")
    try:
        board = Dashboard(made.work)

        def log_from(offset: int | None) -> dict[str, Any] | None:
            """The log's text from ``offset``; None until the attempt has started and written something."""
            try:
                piece = board.log(RUN, job_id, None, "stderr", offset)
            except NotFound:  # the engine has not started the attempt yet
                return None
            return piece if piece["text"] else None

        first = wait_until("the first line", lambda: log_from(None))
        assert first["text"] == "one\n" and first["active"], first
        assert board.run(RUN)["running"] == 1 and board.job(RUN, job_id)["active"]
        go.touch()
        rest = wait_until("the next line", lambda: log_from(first["nextOffset"]))
        assert rest["text"] == "two\n" and rest["offset"] == first["nextOffset"]
    finally:
        go.touch()
        engine.stop()
        client.close()


# --- nothing outside the work directory -----------------------------------------------------------------------
TRAVERSALS = [
    "/static/../../../../etc/passwd", "/static/..%2fserver.py", "/static/%2e%2e/%2e%2e/api.py",
    "/static/%252e%252e%252fapi.py", "/runs/..%2f..%2fsecret.txt/report", "/runs/%2e%2e/report",
    "/runs/../../secret.txt", "//etc/passwd", "/runs//etc/passwd/report", "/api/runs/%2fetc%2fpasswd",
    f"/api/runs/{RUN}/jobs/..%2f..%2fstate.db/log", f"/api/runs/{RUN}/jobs/x/log?stream=..%2f..%2f..%2fsecret.txt",
    "/static/app.js%00.py", "/static/server.py", "/templates/page.html", "/api/files?path=/etc/passwd",
]  # fmt: skip


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_attempts_are_refused(server: DashboardServer, path: str) -> None:
    status, body = raw_get(port(server), path)
    assert status in (400, 404), (status, body[:200])
    assert "root:" not in body and SECRET not in body and "import" not in body


def test_symlinks_out_of_the_work_dir_and_outdir_are_not_followed(made: MadeRun, server: DashboardServer) -> None:
    assert raw_get(port(server), f"/runs/{RUN}/report")[0] == 200, "the run's own report is served"
    record = Dashboard(made.work).record(RUN)
    board = Dashboard(made.work)
    stdout = _log_dir(made, made.ok) / "stdout.log"
    multiqc = made.outdir / "multiqc" / "multiqc_report.html"
    saved = {p: p.read_bytes() for p in (stdout, multiqc, record.report)}
    try:
        for link in saved:
            link.unlink()
            link.symlink_to(made.secret)
        assert board.log(RUN, made.ok, None, "stdout", None)["missing"], "a log that points out is not read"
        status, body = raw_get(port(server), f"/api/runs/{RUN}/jobs/{made.ok}/log?stream=stdout")
        assert status == 200 and SECRET not in body
        for which in ("report", "multiqc"):
            status, body = raw_get(port(server), f"/runs/{RUN}/{which}")
            assert status == 404 and SECRET not in body, which
    finally:
        for link, data in saved.items():
            link.unlink()
            link.write_bytes(data)


def _log_dir(made: MadeRun, job_id: str) -> Path:
    client = BatchClient(made.work / "engine")
    try:
        return client.log_paths(job_id)[0].parent
    finally:
        client.close()


def test_a_run_record_naming_paths_outside_is_not_listed_or_served(made: MadeRun, server: DashboardServer) -> None:
    bad = made.work / "runs" / "evil.json"
    fields = json.loads((made.work / "runs" / f"{RUN}.json").read_text())
    bad.write_text(json.dumps({**fields, "run_id": "../../secret", "info": str(made.secret.parent)}))
    try:
        assert [r["id"] for r in Dashboard(made.work).runs()["runs"]] == [RUN]
        assert raw_get(port(server), "/runs/..%2f..%2fsecret/report")[0] == 404
    finally:
        bad.unlink()


def test_bad_numbers_are_named_and_head_gives_a_get_s_headers(made: MadeRun, server: DashboardServer) -> None:
    status, body = raw_get(port(server), f"/api/runs/{RUN}/jobs/{made.failed}/log?offset=abc")
    assert status == 400 and "offset='abc' is not a whole number" in json.loads(body)["error"]
    for number in ("%C2%B2", "9" * 5000):  # a superscript digit, and more digits than int() takes
        status, body = raw_get(port(server), f"/api/runs/{RUN}?offset={number}")
        assert status == 400 and "offset=" in json.loads(body)["error"], body[:200]
    assert raw_get(port(server), f"/api/runs/{RUN}/jobs/{made.failed}/log?attempt=-1")[0] == 400
    conn = http.client.HTTPConnection("127.0.0.1", port(server), timeout=10)
    try:
        conn.request("HEAD", "/api/runs")
        response = conn.getresponse()
        assert response.status == 200 and int(response.headers["Content-Length"]) > 0 and response.read() == b""
    finally:
        conn.close()


# --- read-only unless the token is shown --------------------------------------------------------------------------
def test_read_only_by_default_and_stop_only_with_the_token(tmp_path: Path) -> None:
    made = make_run(tmp_path)
    server = DashboardServer(made.work)
    guarded = DashboardServer(made.work, token="s3cret-token")
    server.start()
    guarded.start()
    try:
        stop = f"/api/runs/{RUN}/jobs/{made.queued}/stop"
        status, answer = post(port(server), stop, token="anything")
        assert status == 403 and "read-only" in str(answer["error"])
        assert "read-only" in raw_get(port(server), f"/runs/{RUN}")[1]
        assert post(port(guarded), stop, token=None)[0] == 403
        assert post(port(guarded), stop, token="wrong")[0] == 403
        assert Dashboard(made.work).job(RUN, made.queued)["status"] == "SUBMITTED", "nothing changed"
        status, answer = post(port(guarded), stop, token="s3cret-token", body={"reason": "not needed"})
        assert status == 200 and answer["verb"] == "cancel", answer
        assert Dashboard(made.work).job(RUN, made.queued)["status"] == "FAILED"
    finally:
        for served in (server, guarded):
            served.shutdown()
            served.server_close()


def test_a_foreign_host_name_is_refused_and_the_network_needs_a_token(made: MadeRun, server: DashboardServer) -> None:
    status, _ = raw_get(port(server), "/api/runs", host="attacker.example")  # DNS rebinding
    assert status == 403
    assert raw_get(port(server), "/api/runs", host="localhost")[0] == 200
    with pytest.raises(ValueError, match="give --token"):
        DashboardServer(made.work, host="0.0.0.0")
    exposed = DashboardServer(made.work, host="0.0.0.0", token="t0ken")
    exposed.start()
    try:
        assert raw_get(port(exposed), "/api/runs", host="10.0.0.5")[0] == 401
        assert raw_get(port(exposed), "/?token=t0ken", host="10.0.0.5")[0] == 200
        assert raw_get(port(exposed), "/api/runs", headers={"Cookie": "genobatch_token=t0ken"})[0] == 200
    finally:
        exposed.shutdown()
        exposed.server_close()


def test_serve_refuses_bad_options_with_the_fix(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "genobatch", "serve", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    exposed = serve("--work-dir", str(tmp_path), "--host", "0.0.0.0")
    assert exposed.returncode == 2 and "give --token" in exposed.stderr
    (tmp_path / "file").write_text("")
    assert "is a file" in serve("--work-dir", str(tmp_path / "file")).stderr
    assert "--port 70000 is not a port" in serve("--work-dir", str(tmp_path), "--port", "70000").stderr


# --- a real run, watched in a real browser -----------------------------------------------------------------------
class Watched:
    def __init__(self, root: Path) -> None:
        self.work, self.outdir = root / "work", root / "results"
        env = failing_bwa(root / "bin", "SRR7517490")
        args = ["--input", str(MEASLES / "samples.csv"), "--fasta", str(MEASLES / "MH356245.1.reference.fasta"),
                "--outdir", "results", "--work-dir", "work", "--ploidy", "1", "--runtime", "host"]  # fmt: skip
        self.log = root / "run.log"
        with open(self.log, "w") as out:
            self.run = subprocess.Popen([sys.executable, "-m", "genobatch", "run", *args], stdout=out,
                                        stderr=subprocess.STDOUT, text=True, env=env, cwd=root)  # fmt: skip

    def watch_command(self) -> list[str]:
        """The line `genobatch run` prints first, as a person would copy it."""
        deadline = time.monotonic() + 60
        while not (found := re.search(r"^Watch: (genobatch serve .*)$", self.log.read_text(), re.M)):
            assert time.monotonic() < deadline and self.run.poll() is None, self.log.read_text()
            time.sleep(0.05)
        return found.group(1).split()


def wait_until(what: str, condition: Any, seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@needs_tools
def test_a_run_watched_in_a_browser(tmp_path: Path, browser: Any) -> None:  # noqa: F811 - the fixture
    from selenium.webdriver.common.by import By

    watched = Watched(tmp_path)
    command = watched.watch_command()
    assert command[:4] == ["genobatch", "serve", "--work-dir", "work"] and command[-1] == "--open", command
    serve = subprocess.Popen([sys.executable, "-m", "genobatch", *command[1:]], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "BROWSER": "true"})  # fmt: skip
    try:
        assert serve.stdout is not None
        url = re.search(r"(http://\S+)", serve.stdout.readline())
        assert url and url.group(1).endswith(f"/runs/{command[5]}"), url
        browser.get(url.group(1))
        seen: list[str] = []

        def counts_changed() -> bool:
            seen.extend(t for t in texts(browser, "#fact-tasks .value") if not seen or seen[-1] != t)
            return len(set(seen)) >= 3 and bool(texts(browser, "tr.task[data-group=failed]"))

        wait_until("the counts to change and a failure", counts_changed, 90)
        screenshot(browser, "dashboard-running", tmp_path)
        failed = browser.find_element(By.CSS_SELECTOR, "tr.task[data-group=failed][data-task^='align']")
        failed.click()
        wait_until(
            "the failed job's log", lambda: "paired reads have different names" in "".join(texts(browser, "#job-log"))
        )
        assert "bwa mem" in texts(browser, "#job-command")[0] and texts(browser, "#job-exit") == ["1"]
        screenshot(browser, "dashboard-failed-job", tmp_path)
        assert watched.run.wait(timeout=120) == 1
        wait_until("the run's report link", lambda: texts(browser, "#report-link"), 30)
        assert texts(browser, "#run-status .badge") == ["failed"] and texts(browser, "#multiqc-link")
        assert len(set(seen)) >= 3, seen
        screenshot(browser, "dashboard-finished", tmp_path)
        browser.get(browser.find_element(By.ID, "report-link").get_attribute("href"))
        assert "Run failed" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(url.group(1).rsplit("/runs/", 1)[0] + "/")
        wait_until("the runs list", lambda: texts(browser, "tr.run-row"))
        failed_in_queues = sum(int(n) for n in texts(browser, "tr.queue .count-FAILED"))
        assert failed_in_queues == 6, "the engine's queues count the run's failed and never-run jobs"
        screenshot(browser, "dashboard-runs", tmp_path)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        if watched.run.poll() is None:
            watched.run.terminate()
            watched.run.wait(timeout=60)


def test_cancel_from_the_browser_with_the_token(tmp_path: Path, browser: Any) -> None:  # noqa: F811 - the fixture
    from selenium.webdriver.common.by import By

    made = make_run(tmp_path)
    served = DashboardServer(made.work, token="t0ken")
    served.start()
    try:
        browser.get(f"{served.url}/runs/{RUN}?token=t0ken")
        wait_until("the tasks", lambda: texts(browser, "tr.task[data-task='vcfstats-S1']"), 30)
        assert "token" not in browser.current_url, "the token leaves the address bar (and the history)"
        browser.find_element(By.CSS_SELECTOR, "tr.task[data-task='vcfstats-S1']").click()
        wait_until("the cancel button", lambda: browser.find_elements(By.ID, "stop-job"), 30).pop().click()
        browser.switch_to.alert.accept()
        wait_until("the job cancelled", lambda: texts(browser, "#job-panel .badge") == ["FAILED"], 30)
        assert Dashboard(made.work).job(RUN, made.queued)["status"] == "FAILED"
        screenshot(browser, "dashboard-cancelled", tmp_path)
    finally:
        served.shutdown()
        served.server_close()


def test_a_big_run_paged_filtered_and_searched_in_a_browser(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains

    make_trace_run(tmp_path, 2500, failed_every=100)
    served = DashboardServer(tmp_path / "work")
    served.start()
    try:
        browser.get(f"{served.url}/runs/{RUN}")
        wait_until("a page of tasks", lambda: texts(browser, "#page-range") == ["1–1,000 of 2,500"], 30)
        assert len(texts(browser, "tr.task")) == 1000
        assert texts(browser, "#timeline-capped") == ["the first 400 of 2500 attempts"]
        click(browser, "#page-next")
        wait_until("the second page", lambda: texts(browser, "#page-range") == ["1,001–2,000 of 2,500"], 30)
        active = "return document.activeElement.id"
        assert browser.execute_script(active) == "page-next", "the clicked button keeps the focus (keyboard paging)"
        assert texts(browser, "tr.task td.col-0")[0] == "step0:S00100"
        screenshot(browser, "dashboard-big-run", tmp_path)
        click(browser, "button.chip[data-filter=failed]")
        wait_until("the failed tasks", lambda: len(texts(browser, "tr.task[data-group=failed]")) == 25, 30)
        assert not texts(browser, "tr.task[data-group=done]") and not texts(browser, "#tasks-pager"), "one page"
        click(browser, "button.chip[data-filter=all]")
        wait_until("every task again", lambda: texts(browser, "#page-range") == ["1–1,000 of 2,500"], 30)
        click(browser, "#task-search")
        ActionChains(browser).send_keys("S00042").perform()  # typed into whatever has the focus, as a person does
        wait_until("the sample's tasks", lambda: len(texts(browser, "tr.task")) == 10, 30)
        assert browser.switch_to.active_element.get_attribute("id") == "task-search", "typing keeps the focus"
    finally:
        served.shutdown()
        served.server_close()


def click(driver: Any, selector: str) -> None:
    """Click (and focus) what ``selector`` finds now: the page redraws its cards as it polls, so an element found
    earlier may be gone by the time it is clicked."""
    driver.execute_script("const e = document.querySelector(arguments[0]); e.focus(); e.click()", selector)
