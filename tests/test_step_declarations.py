"""Step declarations and the settings file: a bad one is refused when loaded, naming the file, the line and the
fix; a good user step is wired into the pipeline by type. No tools, no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from genobatch.pipeline.library import Library
from genobatch.pipeline.settings import load_settings
from genobatch.problems import InputError

from .test_planner import by_name, command, plan, published

IDXSTATS = """\
name: idxstats
description: Reads per contig of each sample's BAM (samtools idxstats).
scatter: sample
inputs:
  bam: bam
command: samtools idxstats {{ bam }} > {{ out }}/{{ id }}.idxstats
outputs:
  stats: {path: "{{ id }}.idxstats", publish: "{{ sample }}/idxstats/", multiqc: true}
image: samtools
tools: [samtools]
resources: {cpus: 1, memory: 256 MB}
rate: 0.01
colour: "#336699"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def refused(folder: Path, text: str) -> str:
    path = write(folder, "step.yaml", text)
    with pytest.raises(InputError) as caught:
        Library.load([path])
    return str(caught.value)


def test_a_user_step_after_the_bam_is_planned_published_and_in_multiqc(tmp_path: Path) -> None:
    library = Library.load([write(tmp_path, "idxstats.yaml", IDXSTATS)])
    graph, summary = plan(tools=["markdup"], library=library)
    tasks = by_name(graph, summary)
    assert tasks["idxstats:S1"].upstream == ["markdup:S1"], "the sample's final BAM"
    assert command(tasks["idxstats:S1"]) == "samtools idxstats {in:markdup:S1}/S1.bam"
    assert (
        tasks["idxstats:S1"].pipes[0].stdout == "{out}/S1.idxstats"
        or tasks["idxstats:S1"].pipes[0].stdout == "S1.idxstats"
    )
    assert published(graph)["S2/idxstats/S2.idxstats"] == "idxstats:S2:S2.idxstats"
    assert "idxstats:S1" in tasks["multiqc"].upstream
    assert [s.name for s in graph.steps].index("idxstats") > [s.name for s in graph.steps].index("markdup")


@pytest.mark.parametrize(
    "change, line, message, fix",
    [
        (('colour: "#336699"\n', ""), 1, "step idxstats has no 'colour'", 'colour: "#1f77b4"'),
        (("command:", "comand:"), 6, "step idxstats: unknown key 'comand'", "did you mean 'command'?"),
        (("scatter: sample", "scatter: per_sample"), 3, "scatter 'per_sample' is not one of", "scatter: sample"),
        (("{{ bam }} >", "{{ bma }} >"), 6, "uses bma: a sample step has no such value", "use its inputs (bam)"),
        (("image: samtools", "image: samtool"), 9, "there is no genobatch image 'samtool'", "or host"),
        (("memory: 256 MB", "memory: lots"), 11, "'lots' is not a memory size", "memory: 2 GB"),
        (("memory: 256 MB", "memory: 16 MB"), 11, "less than 64 MB, the least a step can have", "memory: 2 GB"),
        (("bam: bam\n", "bam: bam\n  bam: vcf\n"), 6, "'bam' appears twice (first on line 5)", "fix the syntax"),
        (("name: idxstats", "name: fastqc"), 1, "a step 'fastqc' is already in", "rename it"),
        (("{{ id }}.idxstats\n", "{{ id }.idxstats\n"), 6, "step idxstats:", "fix the {{ }} template"),
    ],
)
def test_a_bad_declaration_names_the_line_and_the_fix(
    tmp_path: Path, change: tuple[str, str], line: int, message: str, fix: str
) -> None:
    assert change[0] in IDXSTATS
    text = refused(tmp_path, IDXSTATS.replace(change[0], change[1], 1))
    assert f"{tmp_path / 'step.yaml'}:{line}: " in text and message in text, text
    assert fix in text, text


def test_two_steps_that_make_the_same_type_need_labels_and_two_that_change_it_an_order(tmp_path: Path) -> None:
    caller = IDXSTATS.replace("name: idxstats", "name: mycaller").replace("scatter: sample", "scatter: region")
    caller = caller.replace(
        'stats: {path: "{{ id }}.idxstats", publish: "{{ sample }}/idxstats/", multiqc: true}',
        'vcf: {type: vcf, path: "{{ id }}.idxstats"}',
    )
    library = Library.load([write(tmp_path, "mycaller.yaml", caller)])
    with pytest.raises(InputError, match="call and mycaller both make a vcf for each sample") as caught:
        library.select()
    assert "add  label: mycaller" in str(caught.value)
    library = Library.load([write(tmp_path, "mycaller.yaml", caller.replace("scatter:", "label: mine\nscatter:"))])
    graph, _ = plan(library=library)
    assert by_name(graph)["concat:S1.mine"].upstream[0] == "mycaller:S1:0", "gathered like bcftools' parts"

    dedup = IDXSTATS.replace("name: idxstats", "name: dedup").replace(
        'stats: {path: "{{ id }}.idxstats"', 'bam: {type: bam, path: "{{ id }}.idxstats"'
    )
    library = Library.load([write(tmp_path, "dedup.yaml", dedup)])
    with pytest.raises(InputError, match="markdup and dedup both change the same type"):
        library.select(["markdup"])
    library = Library.load([write(tmp_path, "dedup.yaml", dedup.replace("scatter:", "after: [markdup]\nscatter:"))])
    graph, _ = plan(tools=["markdup"], library=library)
    assert by_name(graph)["dedup:S1"].upstream == ["markdup:S1"]
    assert by_name(graph)["call:S1:0"].upstream == ["dedup:S1", "reference"]


def test_settings_file_errors_name_the_line(tmp_path: Path) -> None:
    settings = write(
        tmp_path,
        "settings.yaml",
        "steps:\n  algn: {cpus: 2}\n  merge: {args: -c}\n  call: {memory: 2 parsecs, cpus: 0}\n  align: {cpu: 1}\n",
    )
    with pytest.raises(InputError) as caught:
        load_settings(settings, Library.load().steps)
    text = str(caught.value)
    assert f"{settings}:2: there is no step 'algn'" in text and "did you mean 'align'?" in text
    assert f"{settings}:3: merge has no place for args" in text
    assert f"{settings}:4: call: cpus 0 is not valid" in text and "'2 parsecs' is not a memory size" in text
    assert f"{settings}:5: steps.align: unknown key 'cpu'" in text


def test_settings_reach_the_tasks(tmp_path: Path) -> None:
    library = Library.load()
    settings = write(
        tmp_path, "s.yaml", "steps:\n  call: {args: --min-MQ 20, args2: -P 0.01, memory: 3 GB, time: 1h}\n"
    )
    loaded = load_settings(settings, library.steps)
    graph, _ = plan(settings=loaded)
    call = by_name(graph)["call:S1:0"]
    assert "-a AD,DP --min-MQ 20 -r" in command(call) and "--ploidy 1 -P 0.01 -Ou" in command(call)
    assert (call.memory_mib, call.timeout_seconds) == (3072, 3600)
