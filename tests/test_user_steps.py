"""Users' own steps, declared in their own folder (not the package) and loaded with --steps: run in a genobatch
image, in an image genobatch did not build, and on the host; scattered; published, cached on a rerun, in the
trace and the report. A bad declaration stops the run before anything starts."""

from __future__ import annotations

from pathlib import Path

from .pipeline_helpers import DATA, needs_tools, ran, report, run_pipeline, trace
from .test_step_declarations import IDXSTATS

pytestmark = needs_tools
SARS = DATA / "sarscov2"
FOREIGN = "localhost/debian-base:bookworm"  # Debian from debootstrap: bash, coreutils, no Python, no genobatch

STEPS = {
    "idxstats.yaml": IDXSTATS,
    "depth.yaml": """\
name: depth
description: Reads in each region of the reference (samtools view -c), one task per region.
scatter: region
inputs: {bam: bam}
command: samtools view -c {{ bam }} {{ region }} > {{ out }}/{{ id }}.{{ region.start }}.count
outputs:
  count: {path: "{{ id }}.{{ region.start }}.count", publish: "{{ sample }}/depth/"}
image: samtools
tools: [samtools]
resources: {cpus: 1, memory: 256 MB}
rate: 0.01
colour: "#669933"
""",
    "checksum.yaml": f"""\
name: checksum
description: MD5 of each VCF, in an image genobatch did not build.
scatter: sample
inputs: {{vcf: vcf}}
command: md5sum {{{{ vcf }}}} > {{{{ out }}}}/{{{{ id }}}}.md5
outputs:
  md5: {{path: "{{{{ id }}}}.md5", publish: "{{{{ sample }}}}/"}}
image: {FOREIGN}
tools: []
resources: {{cpus: 1, memory: 128 MB}}
rate: 0.01
colour: "#993366"
""",
    "lines.yaml": """\
name: lines
description: Lines of each sample's BAM statistics, with the host's own wc.
scatter: sample
inputs: {bam: bam}
command: wc -c {{ bam }} > {{ out }}/{{ id }}.bytes
outputs:
  bytes: {path: "{{ id }}.bytes", publish: "{{ sample }}/"}
image: host
tools: {wc: wc --version}
resources: {cpus: 1, memory: 128 MB}
rate: 0.01
colour: "#339999"
""",
}


def write_steps(folder: Path) -> Path:
    folder.mkdir()
    for name, text in STEPS.items():
        (folder / name).write_text(text)
    return folder


def test_user_steps_run_in_images_and_on_the_host_are_published_cached_traced(podman: None, tmp_path: Path) -> None:
    steps = write_steps(tmp_path / "my-steps")
    outdir, work = tmp_path / "results", tmp_path / "work"
    args = (SARS / "samples.csv", SARS / "MN908947.3.fa", outdir, work, "--ploidy", "1", "--regions", "2")
    run_pipeline(*args, "--steps", str(steps), "--runtime", "podman")
    for sample in ("subsample1", "subsample2"):
        idxstats = (outdir / sample / "idxstats" / f"{sample}.idxstats").read_text()
        assert idxstats.startswith("MN908947.3\t29903\t"), idxstats
        counts = sorted((outdir / sample / "depth").glob("*.count"))
        assert [p.name for p in counts] == [f"{sample}.1.count", f"{sample}.14953.count"]
        assert sum(int(p.read_text()) for p in counts) > 1000
        md5 = (outdir / sample / f"{sample}.md5").read_text().split()
        assert len(md5[0]) == 32 and md5[1].endswith(f"{sample}.vcf.gz")
        assert int((outdir / sample / f"{sample}.bytes").read_text().split()[0]) > 10_000
    rows = {(r["step"], r["sample"]): r for r in trace(outdir) if r["status"] == "COMPLETED"}
    assert rows[("idxstats", "subsample1")]["container"].endswith("/samtools:0.1.0")
    checksum = rows[("checksum", "subsample1")]
    assert checksum["container"] == FOREIGN and checksum["runtime"] == "podman"
    assert rows[("lines", "subsample1")]["runtime"] == "host"
    assert len([r for r in trace(outdir) if r["step"] == "depth"]) == 4, "two regions for each of two samples"
    assert all(f"<td>{step}</td>" in report(outdir) for step in ("idxstats", "depth", "checksum", "lines"))
    assert "#993366" in report(outdir), "the step's own colour in the timeline"
    assert "samtools-idxstats-mapped-reads-plot" in (outdir / "multiqc" / "multiqc_report.html").read_text().lower()

    again = run_pipeline(*args, "--steps", str(steps), "--runtime", "podman")
    assert "Nothing to run" in again.stdout and ran(outdir) == []
    cached = {r["step"] for r in trace(outdir) if r["status"] == "CACHED"}
    assert {"idxstats", "depth", "checksum", "lines"} <= cached


def test_a_bad_user_step_stops_the_run_before_anything_starts(tmp_path: Path) -> None:
    steps = write_steps(tmp_path / "my-steps")
    (steps / "checksum.yaml").write_text(STEPS["checksum.yaml"].replace("{{ vcf }}", "{{ vfc }}"))
    (steps / "lines.yaml").write_text(STEPS["lines.yaml"].replace("rate: 0.01\n", ""))
    result = run_pipeline(
        SARS / "samples.csv", SARS / "MN908947.3.fa", tmp_path / "results", tmp_path / "work", "--steps", str(steps),
        expect=2,
    )  # fmt: skip
    assert f"{steps / 'checksum.yaml'}:5: step checksum: uses vfc: a sample step has no such value" in result.stderr
    assert "use its inputs (vcf)" in result.stderr
    assert f"{steps / 'lines.yaml'}:1: step lines has no 'rate'" in result.stderr and "add  rate: 0.1" in result.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "results").exists()
