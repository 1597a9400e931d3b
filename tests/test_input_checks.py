"""The input checks accept good inputs (dry runs), and find what they find whatever the block boundaries,
reading each file once per run and not again once remembered, in one process or several. The corpus of bad
inputs is tests/test_bad_inputs_files.py."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from genobatch.executors import chunks
from genobatch.pipeline import execute, input_fasta, input_fastq, input_stream, inputs
from genobatch.pipeline.planner import Params
from genobatch.problems import InputError

from .input_files import GOOD_ROW, REFERENCE, SARS, SEQUENCE, fasta, many, pair, reads, sheet, single, write
from .pipeline_helpers import DATA, needs_tools, run_pipeline


# --- good inputs: accepted (dry run) ----------------------------------------------------------------------
def _sars_reads(mate: int) -> bytes:
    return gzip.decompress((SARS / f"subsample1_R{mate}.fastq.gz").read_bytes())


def _casava_iupac_crlf(data: bytes, mate: int) -> bytes:
    """Casava 1.8 names, an IUPAC code and lower case in the first read, Windows line endings, blank lines at
    the end and no final line break: all of which FastQC, fastp and bwa read."""
    lines = data.rstrip(b"\n").split(b"\n")
    lines[0::4] = [head + b" %d:N:0:ACGT" % mate for head in lines[0::4]]
    lines[1] = b"R" + lines[1][1:10].lower() + lines[1][10:]
    return b"\r\n".join(lines).rstrip(b"\r\n") + b"\r\n\r\n\r\n"


GOOD_READS: dict[str, Callable[[Path], str]] = {
    "plain FASTQ with CRLF, Casava names, IUPAC and lower-case bases": lambda d: ",".join(
        write(d / f"x_{m}.fastq", _casava_iupac_crlf(_sars_reads(m), m)) for m in (1, 2)
    ),
    "gzip FASTQ in several members, as bgzip writes": lambda d: ",".join(
        write(d / f"x_{m}.fq.gz", b"".join(gzip.compress(part) for part in _halves(_sars_reads(m))), False)
        for m in (1, 2)
    ),
}
GOOD_REFERENCES: dict[str, Callable[[Path], Path]] = {
    "soft-masked reference": lambda d: _reference(d, "ref.fa", lambda fa: fa.lower().replace(b">mn", b">MN")),
    "IUPAC codes in the reference": lambda d: _reference(d, "ref.fa", lambda fa: fa.replace(b"ACGTA", b"RYKMN", 5)),
    "gzip reference": lambda d: _reference(d, "ref.fa.gz", gzip.compress),
    "CRLF gzip reference": lambda d: _reference(d, "ref.fa.gz", lambda fa: gzip.compress(fa.replace(b"\n", b"\r\n"))),
    "blank lines after a sequence": lambda d: _reference(d, "ref.fa", lambda fa: fa + b"\n\n>second\nACGT\n\n"),
}


def _halves(data: bytes) -> list[bytes]:
    middle = data.index(b"\n@", len(data) // 2) + 1
    return [data[:middle], data[middle:]]


def _reference(folder: Path, name: str, change: Callable[[bytes], bytes]) -> Path:
    (folder / name).write_bytes(change(REFERENCE.read_bytes()))
    return folder / name


@needs_tools
@pytest.mark.parametrize("variant", [*GOOD_READS, *GOOD_REFERENCES])
def test_good_inputs_are_accepted(variant: str, tmp_path: Path) -> None:
    files = GOOD_READS[variant](tmp_path) if variant in GOOD_READS else GOOD_ROW.split(",", 1)[1]
    reference = GOOD_REFERENCES[variant](tmp_path) if variant in GOOD_REFERENCES else REFERENCE
    dry = run_pipeline(
        sheet(tmp_path, f"x,{files}"), reference, tmp_path / "r", tmp_path / "w", "--ploidy", "1", "--dry-run"
    )
    assert "align" in dry.stdout and "fix:" not in dry.stderr


# --- the checks themselves ----------------------------------------------------------------------------------
NAMES = [f"r{i}" for i in range(50)]
GOOD_FASTQ = reads([f"{name} 1:N:0:ACGT" for name in NAMES]).replace(b"\n", b"\r\n")
BAD_FASTQ = reads(NAMES[:30]) + reads(["late"], qualities="I" * 9)  # the bad quality is on line 124


@pytest.mark.parametrize("block", [1, 7, 4096, 1 << 20], ids=lambda b: f"{b}-byte blocks")
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_what_is_found_does_not_depend_on_where_blocks_end(
    block: int, compress: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(input_stream, "READ_BYTES", block)
    monkeypatch.setattr(input_stream, "BLOCK_BYTES", block)
    good = tmp_path / "good.fq"
    write(good, GOOD_FASTQ, compress)
    facts = input_fastq.check_fastq_file(good)
    assert (facts.records, facts.mate) == (50, 1)
    assert facts.names == hashlib.sha256(b"".join(b"@%s\n" % n.encode() for n in NAMES)).hexdigest()
    assert facts.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    write(tmp_path / "bad.fq", BAD_FASTQ, compress)
    with pytest.raises(input_fastq.BadFastq) as bad:
        input_fastq.check_fastq_file(tmp_path / "bad.fq")
    assert (bad.value.line, bad.value.message) == (124, "9 quality characters for 10 bases")
    reference = fasta(("a", SEQUENCE * 3), ("b", "ACGT" * 7), width=50, eol="\r\n") + b">c\n" + b"A" * 50 + b"\nCC\nA\n"
    write(tmp_path / "ref.fa", reference, compress)
    with pytest.raises(input_fasta.BadFasta) as irregular:
        input_fasta.check_fasta_file(tmp_path / "ref.fa")
    assert irregular.value.line == 19 and "shorter line (line 18)" in irregular.value.message
    write(tmp_path / "ref.fa", reference.split(b">c")[0], compress)
    assert input_fasta.check_fasta_file(tmp_path / "ref.fa").contigs == [("a", 600), ("b", 28)]


def test_each_file_is_read_once_and_not_again_when_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    real = input_stream.blocks

    def counted(path: Path, digest: Any = None) -> Iterator[bytes]:
        read.append(path.name)
        return real(path, digest)

    monkeypatch.setattr(input_stream, "blocks", counted)  # every whole-file check (check_whole_file)
    monkeypatch.setattr(input_fastq, "blocks", counted)  # and the second read that names a differing read
    files = pair(tmp_path)
    shutil.copy(tmp_path / "a_2.fq.gz", tmp_path / "b_2.fq.gz")
    sample_sheet = sheet(tmp_path, f"a,{files}", "b,a_1.fq.gz,b_2.fq.gz")  # a_1 in two rows

    def check() -> inputs.FileFacts:
        facts = inputs.FileFacts(tmp_path / "work" / "inputs.json")
        samples, problems = inputs.parse_sample_sheet(sample_sheet)
        inputs.check_fasta(REFERENCE, facts)
        assert inputs.check_inputs(sample_sheet, samples, facts, problems) == {
            tmp_path / name: 5 for name in ("a_1.fq.gz", "a_2.fq.gz", "b_2.fq.gz")
        }
        facts.save()
        return facts

    facts = check()
    assert sorted(read) == sorted(["MN908947.3.fa", "a_1.fq.gz", "a_2.fq.gz", "b_2.fq.gz"])
    for path in (tmp_path / "a_1.fq.gz", REFERENCE):  # hashed while checked: the cache keys need no other read
        assert facts.get(path, "sha256") == hashlib.sha256(path.read_bytes()).hexdigest()
    check()
    assert len(read) == 4, "remembered: not read again"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: the checks run in one process")
def test_worker_processes_find_what_one_process_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [f"a,{pair(tmp_path)}", "b," + single(tmp_path, BAD_FASTQ, "bad_1.fq"), "c,missing_1.fq,"]
    sample_sheet = sheet(tmp_path, *rows, f"d,{pair(tmp_path, 'd', second=reads(many(5, 2, last='zz')))}")

    def problems(parallel_bytes: int) -> list[str]:
        monkeypatch.setattr(inputs, "PARALLEL_CHECK_BYTES", parallel_bytes)
        samples, found = inputs.parse_sample_sheet(sample_sheet)
        with pytest.raises(InputError) as refused:
            inputs.check_inputs(sample_sheet, samples, inputs.FileFacts(tmp_path / f"{parallel_bytes}.json"), found)
        return [str(problem) for problem in refused.value.problems]

    alone = problems(1 << 60)
    assert len(alone) == 3 and "bad_1.fq:124:" in alone[0] and "'r4' in R1 but 'zz'" in alone[2]
    assert problems(0) == alone


@pytest.mark.parametrize(
    "ending, found",
    [
        (b"@r\nA\n+\nI", 2),  # no final line break
        (b"@r\nA\n+\nI\r\n\r\n\r\n", 2),  # empty lines after the last read
        (b"@r\n\n+\n\n", 2),  # a last read with no bases (trimmed away): its empty lines are its own
        (b"@r\n\n+\n\n\n\n\n\n", 2),
        (b"@r\nACGT\n+\n", "line 7: the file ends in the middle of a read (truncated?)"),
        (b"@r\nAC\n", "line 6: the file ends in the middle of a read (truncated?)"),
        (b"@r\nA\n+\nI\n\n@s\nA\n+\nI\n", "line 9: an empty line inside the file"),
    ],
)
def test_the_end_of_a_fastq_file(ending: bytes, found: int | str, tmp_path: Path) -> None:
    path = tmp_path / "end.fq"
    path.write_bytes(reads(["q"]) + ending)
    if isinstance(found, int):
        assert input_fastq.check_fastq_file(path).records == found
        return
    with pytest.raises(input_fastq.BadFastq) as bad:
        input_fastq.check_fastq_file(path)
    assert f"line {bad.value.line}: {bad.value.message}" == found


def test_a_sheet_field_longer_than_csv_allows_is_refused_with_its_line(tmp_path: Path) -> None:
    path = sheet(tmp_path, "a," + pair(tmp_path), f"b,{'x' * 5_000_000}.fq.gz,")
    with pytest.raises(InputError) as refused:
        inputs.parse_sample_sheet(path)
    assert [(p.line, p.message[:32]) for p in refused.value.problems] == [(3, "this line cannot be read as CSV ")]


# --- the same read finds where the aligner's batches end --------------------------------------------------
MEASLES = DATA / "measles"  # real reads of 149 to 151 bases: batches of several sizes
LANES = [
    (MEASLES / "SRR7517490_R1.fastq.gz", MEASLES / "SRR7517490_R2.fastq.gz"),
    (MEASLES / "SRR7517498_R1.fastq.gz", None),
]


@pytest.mark.parametrize("parallel_bytes", [1 << 60, 0], ids=["one process", "a worker per file"])
def test_the_check_finds_each_lane_s_batches_as_reading_it_again_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel_bytes: int
) -> None:
    """Where bwa's batches end in a lane (R1 and R2 together, or R1 alone), found from the read lengths the
    check records as it reads, for each batch size asked: the same as reading the files again for them, whether
    a lane's files are read one after the other or each in its own worker process (the lengths come back)."""
    monkeypatch.setattr(inputs, "PARALLEL_CHECK_BYTES", parallel_bytes)
    rows = [f"s{i},{first},{second or ''}" for i, (first, second) in enumerate(LANES)]
    sample_sheet = sheet(tmp_path, *rows)
    facts = inputs.FileFacts(tmp_path / "inputs.json")
    samples, problems = inputs.parse_sample_sheet(sample_sheet)
    inputs.check_inputs(sample_sheet, samples, facts, problems, [100_000, 10_000_000, 100_000])
    for first, second in LANES:
        for bases in (100_000, 10_000_000):
            recorded = facts.get(first, facts.batches_kind(bases, second))
            assert recorded == chunks.bwa_batches(first, second, bases)
            assert len(recorded) > (30 if bases == 100_000 else 0) and sum(recorded) > 20_000


CHUNKED_STEP = """
name: count
description: Count each chunk's reads (a step cut at batches of 100 kb, so that the demo's lanes hold many).
scatter: {by: chunk, batch_bases: 100000}
inputs: {reads: reads}
command: wc -l {{ reads }} > {{ out }}/count_{{ chunk }}.txt
outputs: {count: {path: "count_{{ chunk }}.txt", publish: "{{ sample }}/count/"}}
image: host
tools: []
resources: {cpus: 1, memory: 100 MB}
rate: 0.1
colour: "#123456"
"""


def test_batches_from_read_lengths_are_those_bwa_batches_reads_from_the_files(tmp_path: Path) -> None:
    """The planner's rule (from lengths, by bisection) equals the job runner's (``chunks.bwa_batches``, reading
    the files read by read), on random lengths, empty reads included, single-end and paired, at any batch size."""
    rng = random.Random(3)
    for _ in range(200):
        count = rng.choice([0, 1, 2, 3, 7, 60])
        lengths = [[rng.choice([0, 1, 150, rng.randint(0, 300)]) for _ in range(count)] for _ in range(2)]
        for mate, sizes in enumerate(lengths):
            records = [f"@r{i}\n{'A' * n}\n+\n{'I' * n}\n" for i, n in enumerate(sizes)]
            (tmp_path / f"r{mate}.fq").write_text("".join(records))
        bases = rng.choice([0, 1, 150, 300, 1000, 10_000_000])
        for second in (None, tmp_path / "r1.fq"):
            reread = chunks.bwa_batches(tmp_path / "r0.fq", second, bases)
            assert input_fastq.bwa_batches_of(lengths[0], lengths[1] if second else None, bases) == reread


@needs_tools
def test_planning_chunks_reads_no_fastq_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cuts each lane into chunks at the batches its input check found: no FASTQ is read again."""
    first, second = LANES[0]
    sample_sheet = sheet(tmp_path, f"p,{first},{second}")
    (tmp_path / "count.yaml").write_text(CHUNKED_STEP)

    def plan() -> list[Any]:
        options = execute.Options(sample_sheet, MEASLES / "MH356245.1.reference.fasta", tmp_path / "out",
                                  tmp_path / "work", Params(chunk_reads=4_000), runtime="host", dry_run=True,
                                  steps=[tmp_path / "count.yaml"])  # fmt: skip
        return [t.builtin for t in execute.Run(options).plan().tasks if t.step == "count"]

    expected = chunks.chunk_sizes(chunks.bwa_batches(first, second, 100_000), chunks.chunk_count(20_270, 4_000))
    monkeypatch.setattr(chunks, "bwa_batches", lambda *_: pytest.fail("a FASTQ was read again to plan chunks"))
    for _ in ("checked now", "remembered"):
        builtins = plan()
        assert len(builtins) == 6 and all(b["sizes"] == expected for b in builtins)


@needs_tools
def test_a_bad_input_and_a_missing_tool_are_named_together(tmp_path: Path) -> None:
    """The tools' versions are probed while the FASTQs are read: what both find is reported at once."""
    sample_sheet = sheet(tmp_path, "a," + pair(tmp_path, "a", 5, second=reads([f"r{i}/2" for i in range(3)])))
    step = CHUNKED_STEP.replace("tools: []", "tools: [genobatch-no-such-tool]")
    (tmp_path / "count.yaml").write_text(step)
    options = execute.Options(sample_sheet, MEASLES / "MH356245.1.reference.fasta", tmp_path / "out",
                              tmp_path / "work", Params(), runtime="host", dry_run=True,
                              steps=[tmp_path / "count.yaml"])  # fmt: skip
    with pytest.raises(InputError) as raised:
        execute.Run(options).plan()
    messages = [problem.message for problem in raised.value.problems]
    assert any("R1 has 5 reads but R2 has 3" in m for m in messages), messages
    assert any("genobatch-no-such-tool is not installed" in m for m in messages), messages


def test_paths_resolve_as_pathlib_resolves_them(tmp_path: Path) -> None:
    """The planner's resolver (each folder once, then a look at the file) gives ``Path.resolve()``'s answer:
    through linked files and folders, ``..``, and for files that do not exist."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.fq").write_text("@r\nA\n+\nI\n")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "b.fq").symlink_to(tmp_path / "real" / "a.fq")
    (tmp_path / "real" / "c.fq").symlink_to("../real/b.fq")
    resolve = inputs.Resolver()
    names = ["real/a.fq", "linked/a.fq", "real/b.fq", "linked/c.fq", "real/../linked/b.fq", "real/none.fq",
             "linked/..", "missing/x.fq", "real/."]  # fmt: skip
    for name in names * 2:  # the second time from what it remembers
        assert resolve(tmp_path / name) == (tmp_path / name).resolve(), name


def test_batches_recorded_for_a_pair_are_not_reused_once_its_r2_changed(tmp_path: Path) -> None:
    """A lane's batches depend on R2's read lengths too: R2 rewritten (R1 unchanged, so not read again) leaves
    no batches recorded for the new pair but the right ones, never those of the old R2."""
    first, second = tmp_path / "p_R1.fastq", tmp_path / "p_R2.fastq"

    def write_reads(path: Path, length: int) -> None:
        path.write_text("".join(f"@r{i}\n{'A' * length}\n+\n{'I' * length}\n" for i in range(10)))

    write_reads(first, 100)
    sample_sheet = sheet(tmp_path, f"p,{first},{second}")
    for length in (100, 300):  # pairs of 200 bases: batches of 2 pairs; then of 400: a pair each
        write_reads(second, length)
        facts = inputs.FileFacts(tmp_path / "inputs.json")
        samples, problems = inputs.parse_sample_sheet(sample_sheet)
        inputs.check_inputs(sample_sheet, samples, facts, problems, [300])
        facts.save()
        recorded = facts.get(first, facts.batches_kind(300, second))
        assert recorded in (None, chunks.bwa_batches(first, second, 300)), f"R2 of {length} bases"
