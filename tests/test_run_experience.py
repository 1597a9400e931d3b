"""The run as an nf-core user expects it: reports and traces per run that later runs never touch, a trace that
grows while the run goes, a report and a trace however the run ends, Nextflow's trace format, results whose
headers say where they came from, and ``genobatch runs``. (The report in a browser: test_report_browser.py;
the live display in tmux: test_live_display.py.)"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from shlex import quote as shlex_quote
from typing import Any

import pytest

import genobatch

from .pipeline_helpers import DATA, failing_bwa, needs_tools, newest, report, run_pipeline, trace

pytestmark = needs_tools
SARS = DATA / "sarscov2"
FASTA = SARS / "MN908947.3.fa"
# Nextflow's trace fields, in its order (docs: "Trace file"), spelt here rather than imported from genobatch.
NEXTFLOW = [
    "task_id", "hash", "native_id", "name", "status", "exit", "submit", "duration", "realtime", "%cpu", "peak_rss",
    "peak_vmem", "rchar", "wchar", "workdir", "container",
]  # fmt: skip


def bom_tsv_sheet(folder: Path) -> Path:
    """The demo samples as Excel saves a TSV (a UTF-8 BOM), with sarek's optional read-group columns for one
    sample and none for the other (blank: the defaults)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        ["sample", "lane", "library", "platform", "fastq_1", "fastq_2"],
        ["subsample1", "HXXXXDSXY.2", "lib-A", "ILLUMINA", str(SARS / "subsample1_R1.fastq.gz")],
        ["subsample2", "", "", "", str(SARS / "subsample2_R1.fastq.gz")],
    ]
    rows[1].append(rows[1][-1].replace("_R1", "_R2"))
    rows[2].append(rows[2][-1].replace("_R1", "_R2"))
    sheet = folder / "samples.tsv"
    sheet.write_bytes("\n".join("\t".join(row) for row in rows).encode("utf-8-sig") + b"\n")
    return sheet


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and its modification time (ns)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def genobatch_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genobatch", *args], capture_output=True, text=True, timeout=120)


@dataclass
class FirstRun:
    sheet: Path
    outdir: Path
    work: Path
    report: Path  # this run's own report and trace (later runs add theirs beside them)
    trace: Path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """The demo samples from a BOM TSV sheet with read-group columns, run once for the tests that read it."""
    folder = tmp_path_factory.mktemp("first-run")
    sheet, outdir, work = bom_tsv_sheet(folder / "sheet"), folder / "results", folder / "work"
    result = run_pipeline(sheet, FASTA, outdir, work, "--ploidy", "1")
    assert "task(s) ran" in result.stdout
    return FirstRun(
        sheet, outdir, work, newest(outdir, "execution_report_*.html"), newest(outdir, "execution_trace_*.txt")
    )


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run where bwa fails one sample (subsample1). Returns its outdir."""
    folder = tmp_path_factory.mktemp("failed-run")
    env = failing_bwa(folder / "bin", "subsample1")
    outdir = folder / "results"
    run_pipeline(SARS / "samples.csv", FASTA, outdir, folder / "work", "--ploidy", "1", expect=1, env=env)
    return outdir


def test_a_noop_rerun_leaves_every_earlier_file_untouched_and_adds_its_own(first_run: FirstRun) -> None:
    sheet, outdir, work = first_run.sheet, first_run.outdir, first_run.work
    before = snapshot(outdir)
    published = [name for name in before if not name.startswith("pipeline_info/")]
    assert len(published) > 20 and "multiqc/multiqc_data/multiqc_fastqc.txt" in published

    again = run_pipeline(sheet, FASTA, outdir, work, "--ploidy", "1")
    assert "Nothing to run" in again.stdout
    after = snapshot(outdir)
    changed = [name for name, value in before.items() if after.get(name) != value]
    assert changed == [], "a rerun that ran nothing rewrote earlier files"
    added = sorted(re.sub(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_\d+)?", "<run>", n) for n in set(after) - set(before))
    assert added == [f"pipeline_info/{name}" for name in ("execution_report_<run>.html",
                     "execution_trace_<run>.txt", "params_<run>.json")]  # fmt: skip
    assert {row["status"] for row in trace(outdir)} == {"CACHED"}, "the new trace lists the cached tasks"

    runs = genobatch_cli("runs", "--work-dir", str(work))
    lines = runs.stdout.splitlines()
    assert runs.returncode == 0 and lines[0].split()[:4] == ["RUN", "STARTED", "DURATION", "STATUS"], runs.stdout
    assert len(lines) == 3 and all(line.split()[4] == "succeeded" for line in lines[1:]), runs.stdout
    assert f"genobatch run --input {sheet}" in lines[1]
    tasks = genobatch_cli("runs", "last", "--work-dir", str(work)).stdout.splitlines()
    assert tasks[0].split() == ["TASK", "STEP", "STATUS", "EXIT", "JOB", "ID", "LOG"]
    assert len(tasks) == 1 + len(trace(outdir)) and all(" CACHED " in line for line in tasks[1:])
    listed = genobatch_cli("runs", lines[1].split()[0], "--work-dir", str(work)).stdout
    assert re.search(r"align:subsample1:1:0\s+align\s+COMPLETED\s+0\s+\S+\s+/\S+\.log", listed), listed
    assert genobatch_cli("runs", "nope", "--work-dir", str(work)).returncode == 1


def test_trace_in_nextflow_format_and_headers_that_say_where_results_came_from(first_run: FirstRun) -> None:
    outdir, path = first_run.outdir, first_run.trace
    assert re.fullmatch(r"execution_trace_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.txt", path.name)
    header = path.read_text().splitlines()[0].split("\t")
    assert header[: len(NEXTFLOW)] == NEXTFLOW and {"step", "sample", "attempt", "exit_reason"} <= set(header)
    with open(path) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["task_id"] for row in rows] == [str(n) for n in range(1, len(rows) + 1)]
    for row in rows:
        assert row["status"] == "COMPLETED" and row["exit"] == "0", row
        assert re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{6}", row["hash"]), row
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", row["submit"]), row
        for field in ("duration", "realtime"):
            assert re.fullmatch(r"\d+ms|\d+\.\ds|\d+m \d+s|\d+h \d+m \d+s", row[field]), row
        assert re.fullmatch(r"\d+\.\d%", row["%cpu"]), row
        # Sub-second tasks may end between two samples of their memory: "-" (not measured), never a made-up 0.
        measured = row["step"] in ("fastqc", "align", "multiqc")
        assert re.fullmatch(r"\d+(\.\d)? (KB|MB|GB)" + ("" if measured else "|-"), row["peak_rss"]), row
        intermediate = row["step"] in ("align", "call")  # their folders are gone once gathered
        assert (intermediate or Path(row["workdir"]).is_dir()) and row["native_id"] != "-", row

    vcf_header = subprocess.run(
        ["bcftools", "view", "-h", str(outdir / "subsample1" / "subsample1.vcf.gz")],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert f"##reference=file://{FASTA.resolve()}" in vcf_header
    assert f"##source=genobatch-{genobatch.__version__}" in vcf_header
    assert f"##genobatchCommand=genobatch run --ploidy 1; Version={genobatch.__version__}" in vcf_header
    assert not any(str(first_run.work) in line for line in vcf_header if line.startswith("##reference"))
    groups = {}
    for sample in ("subsample1", "subsample2"):
        bam = outdir / sample / f"{sample}.bam"
        lines = subprocess.run(["samtools", "view", "-H", str(bam)], capture_output=True, text=True, check=True)
        groups[sample] = [line for line in lines.stdout.splitlines() if line.startswith("@RG")]
    assert groups["subsample1"] == ["@RG\tID:subsample1.1\tSM:subsample1\tLB:lib-A\tPL:ILLUMINA\tPU:HXXXXDSXY.2"]
    assert groups["subsample2"] == ["@RG\tID:subsample2.1\tSM:subsample2\tLB:subsample2\tPL:ILLUMINA\tPU:1"]
    fastqc = (outdir / "multiqc" / "multiqc_data" / "multiqc_fastqc.txt").read_text()
    assert {line.split("\t")[0] for line in fastqc.splitlines()[1:]} == {
        "subsample1_R1", "subsample1_R2", "subsample2_R1", "subsample2_R2",
    }, "MultiQC names the FASTQ reports after the sheet's samples"  # fmt: skip


def wait_for(condition: object, proc: subprocess.Popen[str], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert proc.poll() is None, "the run ended first"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def default_sigint() -> None:
    """Ctrl-C as a terminal delivers it, even when this suite runs in the background (``make test &``): a
    shell starts background commands with SIGINT ignored, and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_the_trace_grows_during_a_run_and_ctrl_c_leaves_a_report_and_a_resumable_run(tmp_path: Path) -> None:
    outdir, work = tmp_path / "results", tmp_path / "work"
    args = ["--input", str(SARS / "samples.csv"), "--fasta", str(FASTA), "--outdir", str(outdir),
            "--work-dir", str(work), "--ploidy", "1", "--runtime", "host"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "genobatch", "run", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=default_sigint,
    )  # fmt: skip
    seen: list[int] = []

    def rows_so_far() -> int:
        found = list((outdir / "pipeline_info").glob("execution_trace_*.txt"))
        seen.append(len(found[0].read_text().splitlines()) - 1 if found else -1)
        return seen[-1]

    wait_for(lambda: rows_so_far() >= 2, proc)
    assert 1 in seen or 0 in seen, f"the trace was seen growing row by row: {sorted(set(seen))}"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "Run the same command again to resume" in stderr, stderr
    assert "Run interrupted" in report(outdir)
    assert trace(outdir) and all(row["status"] in ("COMPLETED", "FAILED", "CACHED", "ABORTED") for row in trace(outdir))
    assert subprocess.run(["pgrep", "-f", str(work / "tasks")], capture_output=True).stdout == b""
    runs = genobatch_cli("runs", "--work-dir", str(work)).stdout
    assert "interrupted" in runs.lower(), runs
    finished = {row["name"] for row in trace(outdir) if row["status"] == "COMPLETED"}
    resumed = run_pipeline(SARS / "samples.csv", FASTA, outdir, work, "--ploidy", "1")
    assert "task(s) ran" in resumed.stdout
    assert finished <= {row["name"] for row in trace(outdir) if row["status"] == "CACHED"}
    assert len(list((outdir / "pipeline_info").glob("execution_report_*.html"))) == 2


def test_a_failed_run_has_its_report_and_trace(failed_run: Path) -> None:
    outdir = failed_run
    html = report(outdir)
    assert "Run failed: 1 task(s) failed, 5 not run because of it" in html, html[:2000]
    assert "paired reads have different names" in html and "bwa mem" in html
    failed = [row for row in trace(outdir) if row["status"] == "FAILED"]
    assert [row["name"] for row in failed] == ["align:subsample1:1:0"] and failed[0]["exit"] not in ("0", "-")
    aborted = {row["name"] for row in trace(outdir) if row["status"] == "ABORTED"}
    assert aborted == {f"{step}:subsample1" for step in ("merge", "bamstats", "concat", "vcfstats")} | {
        "call:subsample1:0"
    }, "what needed the failed task never ran"


def test_dry_run_shows_what_will_run_and_needs_no_credentials(tmp_path: Path) -> None:
    common = (SARS / "samples.csv", FASTA, tmp_path / "results", tmp_path / "work", "--ploidy", "1", "--dry-run")
    capped = run_pipeline(*common, "--max-memory", "400MB")
    assert "3072 MiB" not in capped.stdout and "400 MiB" in capped.stdout, capped.stdout
    assert "_JAVA_OPTIONS=-Xmx300m" in capped.stdout, "FastQC's heap follows its job's memory (3/4 of it)"
    assert "samtools index" in capped.stdout and "bcftools index" in capped.stdout, "every command of a job"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent", AWS_EC2_METADATA_DISABLED="true"
    )
    aws = subprocess.run(
        [sys.executable, "-m", "genobatch", "run", "--input", str(SARS / "samples.csv"), "--fasta", str(FASTA),
         "--outdir", str(tmp_path / "r"), "--work-dir", str(tmp_path / "w"), "--ploidy", "1", "--executor",
         "awsbatch", "--aws-stack", "demo", "--dry-run"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert aws.returncode == 0 and "Traceback" not in aws.stderr, aws.stderr
    assert "spot about $" in aws.stdout and "credentials" in (aws.stdout + aws.stderr).lower()


def without_boto3(*args: str) -> subprocess.CompletedProcess[str]:
    """``genobatch ARGS`` in an environment where boto3 and botocore cannot be imported (a local-only install)."""
    block = "import sys; sys.modules.update(boto3=None, botocore=None); from genobatch.cli import main; main()"
    return subprocess.run([sys.executable, "-c", block, *args], capture_output=True, text=True, timeout=300)


def test_boto3_is_an_extra_only_aws_needs(tmp_path: Path) -> None:
    common = ["run", "--input", str(SARS / "samples.csv"), "--fasta", str(FASTA), "--work-dir", str(tmp_path / "w"),
              "--runtime", "host", "--dry-run"]  # fmt: skip
    local = without_boto3(*common, "--outdir", str(tmp_path / "r"))
    assert local.returncode == 0 and "Estimated compute" in local.stdout, local.stderr
    hint = "pip install 'genobatch[aws]'"
    aws = without_boto3(*common, "--outdir", str(tmp_path / "r"), "--executor", "awsbatch", "--aws-stack", "lab")
    assert aws.returncode == 2 and "--executor awsbatch needs boto3" in aws.stderr and hint in aws.stderr, aws.stderr
    s3 = without_boto3(*common, "--outdir", "s3://bucket/results")
    assert s3.returncode == 2 and "--outdir s3://bucket/results needs boto3" in s3.stderr, s3.stderr
    stack = without_boto3("aws", "status", "--name", "lab")
    assert stack.returncode == 1 and hint in stack.stderr and "Traceback" not in stack.stderr, stack.stderr


DRY_RUN = ["run", "--input", str(SARS / "samples.csv"), "--fasta", str(FASTA), "--outdir", "{tmp}/r", "--work-dir",
           "{tmp}/w", "--runtime", "host", "--dry-run"]  # fmt: skip


@pytest.mark.parametrize("command", [["steps"], ["engine", "status"], DRY_RUN], ids=["steps", "engine", "dry-run"])
def test_a_reader_that_left_early_gets_no_traceback(tmp_path: Path, command: list[str]) -> None:
    """``genobatch engine status | head -1``: the reader has gone before genobatch writes (here: at once)."""
    read, write = os.pipe()
    os.close(read)
    args = [part.format(tmp=tmp_path) for part in command]
    env = {**os.environ, "GENOBATCH_STATE_DIR": str(tmp_path / "engine")}
    proc = subprocess.run([sys.executable, "-m", "genobatch", *args], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=120, env=env)  # fmt: skip
    os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 128 + signal.SIGPIPE, proc.stderr


# --- what a person looks at: the report in a real browser, the live display in a real terminal ------------------
def require(program_or_module: str, variable: str) -> None:
    """A skip where the browser or tmux is missing, a failure in CI (``variable=1``)."""
    missing = shutil.which(program_or_module) is None
    if program_or_module == "selenium":
        import importlib.util

        missing = importlib.util.find_spec("selenium") is None
    if missing:
        why = f"{program_or_module} is not installed (./bootstrap test installs it)"
        if os.environ.get(variable) == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium, headless, driven through its chromedriver (nothing downloaded); its temporary files
    (a profile, the singleton's socket folder) go into the test's own folder, not /tmp."""
    for needed in ("chromium", "chromedriver", "selenium"):
        require(needed, "GENOBATCH_REQUIRE_BROWSER")
    from selenium import webdriver

    scratch = tmp_path_factory.mktemp("chromium")

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={scratch / 'profile'}")
    service = webdriver.ChromeService(
        executable_path=shutil.which("chromedriver") or "", env={**os.environ, "TMPDIR": str(scratch)}
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str, tmp_path: Path) -> Path:
    """The whole page as PNG, into $GENOBATCH_SCREENSHOTS (CI keeps them) or the test's folder."""
    folder = Path(os.environ.get("GENOBATCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 100, 12000))
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 20_000
    return path


def texts(driver: Any, selector: str) -> list[str]:
    script = "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent)"
    return list(driver.execute_script(script, selector))


def computed(driver: Any, selector: str, prop: str) -> list[str]:
    script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => getComputedStyle(e)[arguments[1]])"
    return list(driver.execute_script(script, selector, prop))


def test_the_report_of_a_successful_run_in_a_browser(first_run: FirstRun, browser: Any, tmp_path: Path) -> None:
    browser.get(first_run.report.as_uri())
    assert texts(browser, ".banner")[0].startswith("Run succeeded")
    ticks = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.timeline text.tick'), t => t.textContent)"
    )
    assert len(ticks) >= 3 and ticks[0] == "0 s", ticks
    with open(first_run.trace) as handle:
        tasks = len(list(csv.DictReader(handle, delimiter="\t")))
    bars = computed(browser, "svg.timeline rect.ran", "fill")
    assert len(bars) == tasks and "rgb(176, 0, 32)" not in bars, "one bar per task, none in the failure colour"
    legend = texts(browser, ".legend span")
    assert legend[:3] == ["reference", "fastqc", "align"] and legend[-2:] == ["queued", "failed"], legend
    assert len(browser.execute_script("return document.querySelectorAll('svg.boxplot')")) == 4
    order = "return Array.from(document.querySelectorAll('#tasks tbody tr'), r => parseFloat(r.cells[7].dataset.sort))"
    header = browser.find_elements("css selector", "#tasks th")[7]
    assert header.text == "run time (s)"
    header.click()
    up = browser.execute_script(order)
    header.click()
    down = browser.execute_script(order)
    assert len(up) == tasks and up == sorted(up) and down == sorted(up, reverse=True) and up != down
    print(f"screenshot: {screenshot(browser, 'report-succeeded', tmp_path)}")


def test_the_report_of_a_failed_run_in_a_browser(failed_run: Path, browser: Any, tmp_path: Path) -> None:
    browser.get(newest(failed_run, "execution_report_*.html").as_uri())
    assert texts(browser, ".banner")[0].startswith("Run failed")
    assert computed(browser, ".banner", "backgroundColor") == ["rgb(176, 0, 32)"]
    failed = computed(browser, "svg.timeline rect.failed", "fill")
    assert failed and set(failed) == {"rgb(176, 0, 32)"}, "a failed attempt is drawn in the failure colour"
    assert browser.execute_script("return document.querySelectorAll('svg.timeline text.tick').length") >= 2
    failures = browser.execute_script(
        "return document.querySelector('h2.failed-heading').nextElementSibling.textContent"
    )
    assert failures.startswith("align:subsample1")
    text = browser.find_element("tag name", "body").text
    assert "bwa mem" in text and "paired reads have different names" in text
    print(f"screenshot: {screenshot(browser, 'report-failed', tmp_path)}")


NAP = """\
name: nap
description: A long task after every other (sleeps), to watch the display while nothing changes.
scatter: all_samples
inputs: {vcfs: vcf}
command:
  - sleep 8
  - ls {{ vcfs }} > {{ out }}/nap.txt
outputs:
  list: {path: nap.txt, publish: nap/}
image: host
tools: {sleep: sleep --version}
resources: {cpus: 1, memory: 64 MB}
rate: 0.01
colour: "#777777"
"""


def live_row(screen: str, step: str) -> dict[str, str]:
    """A step's row of the live table (rich's box characters between cells), by column name."""
    lines = screen.splitlines()
    header = next((line for line in lines if line.startswith("step ")), "")
    row = next((line for line in lines if line.startswith(f"{step} ")), "")
    if not header or not row:
        return {}
    names = [cell.strip() for cell in header.split("┃")]
    return dict(zip(names, (cell.strip() for cell in row.split("│")), strict=True))


def test_the_live_display_ticks_while_one_long_task_runs(first_run: FirstRun, tmp_path: Path) -> None:
    """In a real terminal (tmux): the clock moves while the only running task (a sleep) changes nothing."""
    require("tmux", "GENOBATCH_REQUIRE_TMUX")
    work = tmp_path / "work"
    shutil.copytree(first_run.work, work)  # everything else is cached: only the nap runs
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "nap.yaml").write_text(NAP)
    command = [sys.executable, "-m", "genobatch", "run", "--input", str(first_run.sheet), "--fasta", str(FASTA),
               "--outdir", str(tmp_path / "results"), "--work-dir", str(work), "--ploidy", "1", "--runtime", "host",
               "--steps", str(tmp_path / "steps")]  # fmt: skip
    session = f"genobatch-test-{os.getpid()}"
    shell = f"{' '.join(map(shlex_quote, command))}; echo EXIT=$?; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "40", shell], check=True)
    try:

        def pane() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

        deadline = time.monotonic() + 120
        while live_row(pane(), "nap").get("running") != "1":
            assert time.monotonic() < deadline and "EXIT=" not in pane(), pane()
            time.sleep(0.2)
        first = pane()
        time.sleep(2.5)
        second = pane()
        clocks = [re.search(r"genobatch run\s+(\d+:\d\d:\d\d)", text) for text in (first, second)]
        assert clocks[0] and clocks[1] and clocks[0].group(1) != clocks[1].group(1), (first, second)
        assert live_row(second, "nap") == live_row(first, "nap"), "nothing changed but the clock"
        assert live_row(first, "fastqc") == {"step": "fastqc", "of": "4", "cached": "4", "done": "", "running": "",
                                             "waiting": "", "failed": "", "progress": "━" * 16}  # fmt: skip
        while "EXIT=" not in pane():
            assert time.monotonic() < deadline, pane()
            time.sleep(0.2)
        assert "EXIT=0" in pane(), pane()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
