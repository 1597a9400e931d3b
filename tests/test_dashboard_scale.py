"""The dashboard on big and running runs: one page of a run's tasks at a time, filtered by the server, and a
running run read again only where it changed (the engine's new events, the trace's new rows), which must show
what a whole read shows; paged, filtered and searched in headless chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import time
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
from genobatch.web.api import Dashboard
from genobatch.web.follow import TraceFollower, whole_rows
from genobatch.web.server import DashboardServer
from genobatch.web.tasks import TASK_PAGE, TIMELINE_BARS, TaskQuery

from .conftest import define, run_until_idle
from .dashboard_helpers import RUN, make_run, make_trace_run, port, raw_get, wait_until
from .test_run_experience import browser, screenshot, texts  # noqa: F401 - the browser fixture, shared


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
