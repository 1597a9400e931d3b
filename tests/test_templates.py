"""The command splitter equals shlex (posix, ``|`` and ``>`` as punctuation, whitespace split), which it
replaces for speed: on random text of quotes, escapes, comments, pipes and redirections, errors included."""

from __future__ import annotations

import random
import shlex

from genobatch.pipeline.templates import split_words


def shlex_words(text: str) -> tuple[str, list[str] | str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|>")
    lexer.whitespace_split = True
    try:
        return "words", list(lexer)
    except ValueError as exc:
        return "error", str(exc)


def our_words(text: str) -> tuple[str, list[str] | str]:
    try:
        return "words", split_words(text)
    except ValueError as exc:
        return "error", str(exc)


def test_split_words_equals_shlex_on_random_text() -> None:
    rng = random.Random(7)
    alphabet = list("ab |>'\"\\#\n\t-{}:/.")
    for _ in range(40_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert our_words(text) == shlex_words(text), repr(text)


def test_split_words_on_real_commands() -> None:
    for text in [
        "bcftools mpileup -f '{in:reference}/ref.fa' -Ou '{in:merge:S 1}/S 1.bam' | bcftools call -mv > '{out}/x.vcf'",
        """awk 'done {print; next} /^##reference=/ {print "##reference=" ENVIRON["REFERENCE"]; next}'""",
        "printf '%s\\t%s\\n' a b>{out}/t.tsv",
        '"a\\"b" \'c\'"d"e\\ f',
    ]:
        assert our_words(text) == shlex_words(text)


def test_simple_templates_render_as_jinja() -> None:
    """Every built-in step's template that takes the fast path renders exactly as Jinja renders it."""
    from genobatch.pipeline.library import Library
    from genobatch.pipeline.templates import ENV, Region, Words, _simple

    context = {
        "out": "{out}", "sample": "S 1", "id": "S 1.freebayes", "lane": 2, "mate": 1, "chunk": 3, "cpus": "{threads}",
        "region": Region("chr1", 1, 100, 10), "params": {"ploidy": 1, "max_depth": None},
        "fastq": Words(["{file:0}"], ["a b_R1.fastq.gz"]), "bam": Words(["{in:x}/S.bam"], ["S.bam"]),
    }  # fmt: skip
    checked = 0
    for step in Library.load().steps.values():
        for text in [o.path for o in step.outputs] + [o.publish for o in step.outputs if o.publish]:
            fast = _simple(text)
            if fast is not None and all(e.split(".")[0] in context for e in fast.pieces[1::2]):
                assert fast.render(context) == ENV.from_string(text).render(context), text
                checked += 1
    assert checked >= 15
