"""The web dashboard, ``genobatch serve``: its JSON API on a work directory made by the real engine, path safety
(traversal in every spelling, symlinks pointing out), read-only unless a token is shown, and a real demo run
watched in headless chromium (counts that change, a failed job's log, the finished report), with screenshots."""

from __future__ import annotations

import http.client
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
from genobatch.report.trace import FIELDS
from genobatch.web.api import Dashboard, NotFound
from genobatch.web.follow import TraceFollower
from genobatch.web.server import DashboardServer

from .conftest import EngineThread, define
from .dashboard_helpers import RUN, SECRET, MadeRun, make_run, port, post, raw_get, wait_until
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
    align, call = TraceFollower(trace).read()
    submit = int(time.mktime(time.strptime("2026-11-29 21:49:05", "%Y-%m-%d %H:%M:%S"))) * 1000 + 123
    (bar,) = align.bars
    assert (bar.submit, bar.start, bar.stop, bar.ok) == (submit, submit + 1000, submit + 3000, True)
    assert call.status == "FAILED" and call.exit == 1 and call.bars[0].submit is None


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
