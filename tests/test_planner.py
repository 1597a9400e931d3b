"""The planner on the built-in steps: tasks per step, edges, resources and published paths for each option set,
with no tools, no engine and no files read (the FASTQ files named here do not exist)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from genobatch.cli import build_parser
from genobatch.cli.run import options, with_params_file
from genobatch.executors.task import Task
from genobatch.pipeline.inputs import Lane, Sample
from genobatch.pipeline.library import Library
from genobatch.pipeline.planner import Graph, Limits, Params, Planner, RunInputs
from genobatch.pipeline.settings import StepSettings
from genobatch.problems import InputError

DATA = Path("/data")
CONTIGS = [("chr1", 25_000), ("chr2", 5_000)]
LIBRARY = Library.load()
HAPLOID = Params(ploidy=1, regions=3)
TWO_CPUS = Limits(vcpus=2)


def sample(name: str, lanes: int = 1, paired: bool = True) -> Sample:
    return Sample(
        name,
        [
            Lane(DATA / f"{name}_L{n}_R1.fq.gz", DATA / f"{name}_L{n}_R2.fq.gz" if paired else None, n + 1)
            for n in range(1, lanes + 1)
        ],
    )


def chunker(first: Path, second: Path | None, reads: int, batch_bases: int) -> list[int]:
    """Three chunks for any lane that is cut: what the planner asked is checked by the tests."""
    assert batch_bases == 10_000_000
    return [reads // 3, reads // 3, reads - 2 * (reads // 3)]


def plan(
    tools: Sequence[str] = (),
    skip: Sequence[str] = (),
    samples: Sequence[Sample] = (sample("S1"), sample("S2")),
    reads: int = 1000,
    params: Params = HAPLOID,
    limits: Limits = TWO_CPUS,
    settings: dict[str, StepSettings] | None = None,
    library: Library = LIBRARY,
) -> tuple[Graph, Graph]:
    counts = {lane.fastq_1: reads for s in samples for lane in s.lanes}
    run = RunInputs(list(samples), DATA / "ref.fa", CONTIGS, counts, chunker)
    planner = Planner(library.select(tools, skip), run, params, limits, settings)
    graph = planner.samples()
    return graph, planner.summary({s.name for s in samples})


def per_step(*graphs: Graph) -> dict[str, int]:
    return dict(Counter(t.step for g in graphs for t in g.tasks))


def by_name(*graphs: Graph) -> dict[str, Task]:
    return {t.name: t for g in graphs for t in g.tasks}


def published(*graphs: Graph) -> dict[str, str]:
    """outdir path -> task:file"""
    return {target: f"{p.task}:{file}" for g in graphs for p in g.published for file, target in p.files.items()}


def command(task: Task) -> str:
    return " ; ".join(" | ".join(" ".join(argv) for argv in pipe.argv) for pipe in task.pipes)


def test_default_pipeline_tasks_edges_and_published_paths() -> None:
    graph, summary = plan()
    assert [s.name for s in graph.steps] == [
        "reference", "fastqc", "align", "merge", "bamstats", "call", "concat", "vcfstats", "multiqc",
    ]  # fmt: skip
    assert per_step(graph) == {
        "reference": 1, "fastqc": 4, "align": 2, "merge": 2, "bamstats": 2, "call": 8, "concat": 2, "vcfstats": 2,
    }  # fmt: skip
    assert per_step(summary) == {"multiqc": 1}
    tasks = by_name(graph, summary)
    assert tasks["align:S1:1:0"].upstream == ["reference"] and tasks["align:S1:1:0"].files == [
        DATA / "S1_L1_R1.fq.gz",
        DATA / "S1_L1_R2.fq.gz",
    ]
    assert tasks["merge:S1"].upstream == ["align:S1:1:0"]
    assert tasks["call:S1:2"].upstream == ["merge:S1", "reference"]
    assert tasks["concat:S1"].upstream == ["call:S1:0", "call:S1:1", "call:S1:2", "call:S1:3"]  # chr2 is a region
    assert tasks["vcfstats:S2"].upstream == ["concat:S2"]
    assert len(tasks["multiqc"].upstream) == 4 + 2 + 2  # FastQC zips, BAM and VCF stats of both samples
    assert {t.group for t in graph.tasks if t.step in ("align", "call")} == {
        "align:S1",
        "align:S2",
        "call:S1",
        "call:S2",
    }
    assert {t.name for t in graph.tasks if t.intermediate} == {n for n in tasks if n.startswith(("align", "call"))}
    paths = published(graph, summary)
    assert paths["S1/S1.bam"] == "merge:S1:S1.bam" and paths["S1/S1.bam.bai"] == "merge:S1:S1.bam.bai"
    assert paths["S2/S2.vcf.gz"] == "concat:S2:S2.vcf.gz" and "S2/S2.vcf.gz.tbi" in paths
    assert paths["S1/fastqc/S1_L1_R2_fastqc.zip"] == "fastqc:S1:1:S1_L1_R2.fq.gz:S1_L1_R2_fastqc.zip"
    assert paths["S1/stats/S1.flagstat.txt"] and paths["S2/stats/S2.bcftools_stats.txt"]
    assert paths["multiqc/multiqc_report.html"] == "multiqc:multiqc_report.html"
    assert paths["multiqc/multiqc_data"] == "multiqc:multiqc_data"
    assert len(paths) == 2 * (4 + 4 + 3) + 2


def test_commands_are_what_the_by_hand_pipeline_runs() -> None:
    graph, _ = plan()
    tasks = by_name(graph)
    assert command(tasks["align:S1:1:0"]) == (
        "bwa mem -t {threads} -K 10000000 -R @RG\\tID:S1.1\\tSM:S1\\tLB:S1\\tPL:ILLUMINA\\tPU:1 "
        "{in:reference}/ref.fa {file:0} "
        "{file:1} | samtools sort -l 1 -m 512M -T {out}/sort -o {out}/aligned.bam -"
    )
    assert command(tasks["call:S1:1"]) == (
        "bcftools mpileup -f {in:reference}/ref.fa -a AD,DP -r chr1:1-20000 -Ou {in:merge:S1}/S1.bam | "
        "bcftools call -mv --ploidy 1 -Ou | bcftools view -t chr1:10001-20000 -Oz -o {out}/part.vcf.gz"
    )  # regions of 10 kb over 30 kb (none across contigs), each read with 10 kb of padding before it
    assert "-r chr2:1-5000 -Ou" in command(tasks["call:S1:3"]), "no padding before a contig's start"
    assert command(tasks["call:S1:2"]).startswith(
        "bcftools mpileup -f {in:reference}/ref.fa -a AD,DP -r chr1:10001-25000"
    )
    assert tasks["bamstats:S1"].pipes[0].stdout == "S1.flagstat.txt"
    diploid, _ = plan(params=Params(ploidy=2, regions=3, max_depth=500))
    call = command(by_name(diploid)["call:S1:0"])
    assert "bcftools mpileup -d 500 -f" in call and "bcftools call -mv -Ou" in call


def test_markdup_is_its_own_step_and_replaces_the_bam_after_it() -> None:
    graph, summary = plan(tools=["markdup"])
    tasks = by_name(graph)
    assert per_step(graph)["markdup"] == 2
    assert tasks["markdup:S1"].upstream == ["merge:S1"]
    assert tasks["call:S1:0"].upstream == ["markdup:S1", "reference"]
    assert tasks["bamstats:S1"].upstream == ["markdup:S1"]
    paths = published(graph, summary)
    assert paths["S1/S1.bam"] == "markdup:S1:S1.bam" and paths["S1/S1.bam.bai"] == "markdup:S1:S1.bam.bai"
    assert not any(v.startswith("merge:") for v in paths.values()), "the merged BAM is kept, not published"
    assert not tasks["merge:S1"].intermediate
    plain, _ = plan()
    assert by_name(plain)["merge:S1"].pipes == tasks["merge:S1"].pipes, "merge is the same task with or without"


def test_freebayes_beside_bcftools_each_vcf_under_its_own_name() -> None:
    graph, summary = plan(tools=["freebayes"])
    counts = per_step(graph)
    assert counts["freebayes"] == 8 and counts["concat"] == 4 and counts["vcfstats"] == 4
    tasks = by_name(graph)
    assert tasks["concat:S1.freebayes"].upstream == [f"freebayes:S1:{r}" for r in range(4)]
    assert tasks["vcfstats:S1.freebayes"].upstream == ["concat:S1.freebayes"]
    assert "freebayes -f {in:reference}/ref.fa -p 1 -r chr1:10000-20000 {in:merge:S1}/S1.bam" in command(
        tasks["freebayes:S1:1"]
    )
    paths = published(graph, summary)
    assert paths["S1/S1.freebayes.vcf.gz"] == "concat:S1.freebayes:S1.freebayes.vcf.gz"
    assert paths["S1/S1.vcf.gz"] == "concat:S1:S1.vcf.gz"
    assert paths["S1/stats/S1.freebayes.bcftools_stats.txt"].startswith("vcfstats:S1.freebayes:")
    assert tasks["freebayes:S1:0"].group == "freebayes:S1" and tasks["freebayes:S1:0"].image == "freebayes"


def test_mosdepth_reads_each_sample_s_final_bam_for_multiqc() -> None:
    graph, summary = plan(tools=["markdup", "mosdepth"])
    tasks = by_name(graph, summary)
    assert per_step(graph)["mosdepth"] == 2 and tasks["mosdepth:S1"].upstream == ["markdup:S1"]
    assert command(tasks["mosdepth:S1"]) == "mosdepth --threads {threads} --no-per-base {out}/S1 {in:markdup:S1}/S1.bam"
    assert tasks["mosdepth:S1"].image == "mosdepth" and tasks["mosdepth:S1"].tools == ["mosdepth"]
    assert published(graph)["S2/mosdepth/S2.mosdepth.summary.txt"] == "mosdepth:S2:S2.mosdepth.summary.txt"
    assert "{in:mosdepth:S1}/S1.mosdepth.global.dist.txt" in tasks["multiqc"].lists[".reports.txt"]
    assert "mosdepth" not in per_step(plan()[0]), "optional: only with --tools"


def test_fastp_trims_before_alignment_and_its_json_goes_to_multiqc() -> None:
    graph, summary = plan(tools=["fastp"], reads=1500, params=Params(ploidy=1, regions=1, chunk_reads=500))
    tasks = by_name(graph, summary)
    assert per_step(graph)["fastp"] == 2 and per_step(graph)["align"] == 6
    align = tasks["align:S1:1:2"]
    assert align.upstream == ["fastp:S1:1", "reference"] and align.files == []
    assert align.builtin == {
        "op": "fastq_chunk",
        "files": ["{in:fastp:S1:1}/S1_1_R1.fastq.gz", "{in:fastp:S1:1}/S1_1_R2.fastq.gz"],
        "names": [".chunk_R1.fastq", ".chunk_R2.fastq"],
        "index": 2,
        "sizes": None,  # trimmed reads: cut at bwa's batches when the task runs
        "chunks": 3,
        "batch_bases": 10_000_000,
    }
    assert "{out}/.chunk_R1.fastq {out}/.chunk_R2.fastq" in command(align)
    assert "{in:fastp:S1:1}/S1_1.fastp.json" in tasks["multiqc"].lists[".reports.txt"]
    assert tasks["fastqc:S1:1:S1_L1_R1.fq.gz"].files == [DATA / "S1_L1_R1.fq.gz"], "FastQC reads the raw reads"
    assert published(graph)["S2/fastp/S2_1.fastp.json"] == "fastp:S2:1:S2_1.fastp.json"


def test_lanes_chunks_and_single_end() -> None:
    graph, _ = plan(
        samples=[sample("S1", lanes=2), sample("S2", paired=False)], reads=900, params=Params(chunk_reads=300)
    )
    tasks = by_name(graph)
    assert per_step(graph)["align"] == 3 * 3
    assert tasks["merge:S1"].upstream == [f"align:S1:{lane}:{c}" for lane in (1, 2) for c in range(3)]
    assert "ID:S1.2" in command(tasks["align:S1:2:0"])
    chunk = tasks["align:S1:2:1"].builtin
    assert chunk is not None and chunk["sizes"] == [300, 300, 300] and chunk["index"] == 1
    assert "{file:0} {file:1}" in str(chunk["files"]) or chunk["files"] == ["{file:0}", "{file:1}"]
    single = tasks["align:S2:1:0"]
    assert single.builtin is not None and single.builtin["names"] == [".chunk_R1.fastq"]
    assert per_step(graph)["fastqc"] == 4 + 1


def test_resources_caps_and_settings() -> None:
    graph, _ = plan(limits=Limits(vcpus=8, memory_mib=1500))
    tasks = by_name(graph)
    assert tasks["align:S1:1:0"].vcpus == 4, "cpus: auto: 8 vCPUs over 2 chunks, at most 4 threads"
    assert tasks["align:S1:1:0"].memory_mib == 1500 and tasks["bamstats:S1"].memory_mib == 512
    one, _ = plan(limits=Limits(vcpus=1))
    assert by_name(one)["merge:S1"].vcpus == 1, "capped to the run's vCPUs"
    settings = {"align": StepSettings(cpus=3, memory_mib=6000, timeout_seconds=3600, args={"args": ["-Y"]})}
    configured, _ = plan(settings=settings, limits=Limits(vcpus=8))
    align = by_name(configured)["align:S1:1:0"]
    assert (align.vcpus, align.memory_mib, align.timeout_seconds) == (3, 6000, 3600)
    assert "PU:1 -Y {in:reference}/ref.fa" in command(align)
    assert align.key == "" and by_name(graph)["align:S1:1:0"].pipes != align.pipes, "args change the command"


def test_threads_and_memory_do_not_change_a_command() -> None:
    small, _ = plan(limits=Limits(vcpus=1, memory_mib=1000))
    big, _ = plan(limits=Limits(vcpus=16))
    assert [t.pipes for t in small.tasks] == [t.pipes for t in big.tasks]


def test_joint_and_skip_tools() -> None:
    graph, summary = plan(tools=["joint"], skip=["fastqc", "multiqc"])
    assert "fastqc" not in per_step(graph) and per_step(summary) == {"joint": 1}
    joint = by_name(summary)["joint"]
    assert joint.upstream == ["merge:S1", "merge:S2", "reference"]
    assert "-Ou --bam-list {out}/.bams.txt" in command(joint)
    assert joint.lists == {".bams.txt": ["{in:merge:S1}/S1.bam", "{in:merge:S2}/S2.bam"]}
    assert published(summary)["joint/joint.vcf.gz.tbi"] == "joint:joint.vcf.gz.tbi"


def test_the_summary_covers_only_the_samples_that_succeeded() -> None:
    samples = [sample("S1"), sample("S2")]
    run = RunInputs(samples, DATA / "ref.fa", CONTIGS, {lane.fastq_1: 10 for s in samples for lane in s.lanes}, chunker)
    planner = Planner(LIBRARY.select(), run, Params(regions=1), Limits(2))
    planner.samples()
    only = planner.summary({"S2"})
    assert all(":S1" not in up for up in by_name(only)["multiqc"].upstream)
    assert len(planner.summary({"S1", "S2"}).tasks) == 1, "planning a summary leaves the planner unchanged"
    assert planner.summary(set()).tasks == [], "every sample failed: no MultiQC over nothing"


@pytest.mark.parametrize(
    "tools, skip, message",
    [
        (["fastpp"], [], "there is no step 'fastpp'"),
        ([], ["align"], "merge's input bams needs a bam"),
    ],
)
def test_bad_selections_are_refused(tools: list[str], skip: list[str], message: str) -> None:
    with pytest.raises(InputError) as caught:
        LIBRARY.select(tools, skip)
    assert message in str(caught.value)
    if tools:
        assert "did you mean 'fastp'?" in str(caught.value)


def test_the_same_graph_from_a_params_file_as_from_flags(tmp_path: Path) -> None:
    flags = [
        "run", "--input", "s.csv", "--fasta", "ref.fa", "--outdir", "out", "--tools", "fastp,freebayes",
        "--markdup", "--ploidy", "1", "--regions", "4", "--max-memory", "6GB", "--skip-tools", "fastqc",
    ]  # fmt: skip
    params = tmp_path / "params.yaml"
    params.write_text(
        "input: s.csv\nfasta: ref.fa\noutdir: out\ntools: [fastp, freebayes]\nmarkdup: true\nploidy: 1\n"
        "regions: 4\nmax_memory: 6GB\nskip-tools: fastqc\n"
    )
    as_json = tmp_path / "params.json"
    as_json.write_text(
        '{"input": "s.csv", "fasta": "ref.fa", "outdir": "out", "tools": "fastp,freebayes", "markdup": true,'
        ' "ploidy": 1, "regions": 4, "max_memory": "6GB", "skip_tools": ["fastqc"]}'
    )
    parser = build_parser()
    from_flags = options(parser.parse_args(flags))
    for path in (params, as_json):
        from_file = options(parser.parse_args(with_params_file(["run", "-params-file", str(path)])))
        assert from_file == from_flags
    assert from_flags.tools == ["fastp", "freebayes", "markdup"] and from_flags.max_memory_mib == 6144
    graph_flags = plan(from_flags.tools, from_flags.skip_tools, params=from_flags.params)
    graph_file = plan(from_file.tools, from_file.skip_tools, params=from_file.params)
    assert [(t.name, t.pipes, t.upstream) for g in graph_flags for t in g.tasks] == [
        (t.name, t.pipes, t.upstream) for g in graph_file for t in g.tasks
    ]
    overridden = options(parser.parse_args(with_params_file(["run", "-params-file", str(params), "--ploidy", "2"])))
    assert overridden.params.ploidy == 2, "the command line wins over the params file"


def test_a_bad_params_file_names_the_line_and_the_fix(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("input: s.csv\nmax_cpu: 4\nploidy: 3\nmarkdup: yes please\n")
    with pytest.raises(InputError) as caught:
        with_params_file(["run", "-params-file", str(params)])
    text = str(caught.value)
    assert f"{params}:2: unknown option 'max_cpu'" in text and "did you mean 'max_cpus'?" in text
    assert f"{params}:3: ploidy: ploidy 3 is not supported" in text
    assert f"{params}:4: markdup must be true or false" in text


def test_no_command_grows_with_ten_thousand_samples() -> None:
    """10,000 samples, joint calling too: no task's command, resolved as the job runner gets it, passes
    128 KiB (Linux refuses 2 MB of arguments; MultiQC and joint calling read their files from a list)."""
    from genobatch.executors.task import runner_spec

    samples = [sample(f"S{i:05d}") for i in range(10_000)]
    graph, summary = plan(tools=["joint"], samples=samples, reads=10)
    tasks = graph.tasks + summary.tasks
    keys = {t.name: f"{i:032x}" for i, t in enumerate(tasks)}
    for task in tasks:
        task.key = keys[task.name]
    longest = max(
        (
            sum(
                len(word) + 1
                for pipe in runner_spec(t, Path("/work/cache"), keys)["pipes"]
                for argv in pipe["argv"]
                for word in argv
            ),
            t.name,
        )
        for t in tasks
    )
    assert longest[0] < 128 * 1024, longest
    multiqc = next(t for t in summary.tasks if t.step == "multiqc")
    assert len(multiqc.lists[".reports.txt"]) > 40_000  # every sample's reports, in its file list


def test_a_task_s_key_is_what_earlier_versions_made() -> None:
    """The key is encoded part by part (the commands once, for the key and ``--explain``): it must stay the
    SHA-256 of ``json.dumps(material, sort_keys=True)`` that genobatch 0.1.0 wrote, or every cache would be
    lost. The expected values were made by that code (commit 70eabc8) for this task."""
    from genobatch.executors.task import Pipe

    pipes = [
        Pipe([["bwa", "mem", "-t", "{threads}", "{file:0}"], ["samtools", "sort", "-o", "{out}/a.bam", "-"]]),
        Pipe([["samtools", "index", "{out}/a.bam"]], "x.txt"),
    ]
    task = Task("align:S1:1:0", "align", "S1", pipes, ["a.bam"], upstream=["reference"], files=[Path("/d/S1_R1.fq.gz")],
                builtin={"op": "fastq_chunk", "index": 0, "sizes": [5, 5]}, tools=["bwa", "samtools"],
                lists={".l": ["é"]})  # fmt: skip
    material = task.keyed({"reference": "f" * 32}, ["0" * 64], {"bwa": "0.7.17-r1188", "samtools": "1.16.1"})
    assert task.key == "8e01a071fdacdf37e848d2ac9f5d02fd"
    assert material["command"] == "bc0eaf445b97"
    assert material["file S1_R1.fq.gz"] == "0" * 12 and material["input reference"] == "f" * 12


def test_a_plan_that_fails_leaves_nothing_frozen() -> None:
    """Planning pauses the cycle collector and, once the plan is made, freezes what it made (it lives as long as
    the run). A plan refused (bad input) is dropped: what it made, cycles included (an exception's traceback),
    must stay collectable, in a process that goes on (tests, a caller of the API)."""
    import gc

    from genobatch.pipeline.execute import no_collection

    assert gc.isenabled()
    before = gc.get_freeze_count()
    with pytest.raises(RuntimeError), no_collection():
        raise RuntimeError("bad input")
    assert gc.isenabled() and gc.get_freeze_count() == before


def test_a_finished_run_leaves_nothing_frozen(tmp_path: Path) -> None:
    """A plan made is frozen for the run's life (see no_collection); once the run returns, the collector has it
    again, so a process that runs many (tests, a caller of the API) does not keep every plan's cycles."""
    import gc

    from genobatch.pipeline import execute

    data = Path(__file__).resolve().parent.parent / "data" / "measles"
    options = execute.Options(data / "samples.csv", data / "MH356245.1.reference.fasta", tmp_path / "out",
                              tmp_path / "work", Params(ploidy=1), runtime="host", dry_run=True)  # fmt: skip
    assert execute.Run(options).execute() == 0
    assert gc.get_freeze_count() == 0
