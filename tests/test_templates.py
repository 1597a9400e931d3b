"""The command splitter equals shlex (posix, ``|`` and ``>`` as punctuation, whitespace split), which it
replaces for speed: on random text of quotes, escapes, comments, pipes and redirections, errors included."""

from __future__ import annotations

import dataclasses
import random
import shlex
from pathlib import Path

import pytest

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


def everything_planned(monkeypatch: pytest.MonkeyPatch, fast: bool) -> list[tuple[object, ...]]:
    """Every task of every built-in step (each optional tool on; paired and single-end lanes, file names with
    spaces and quotes, extra arguments, a max depth), as planned with or without evaluating templates once per
    step."""
    from genobatch.pipeline import templates
    from genobatch.pipeline.planner import Params
    from genobatch.pipeline.settings import StepSettings
    from tests.test_planner import plan, sample

    monkeypatch.setattr(templates, "FAST", fast)
    samples = [sample("S1"), sample("S2", lanes=2, paired=False), sample("S3", lanes=3)]
    samples[2].lanes[1] = dataclasses.replace(samples[2].lanes[1], fastq_1=Path("/d/it's a b_R1.fastq.gz"))
    settings = {
        "call": StepSettings(args={"args": ["--min-MQ", "20"], "args2": ["--prior", "1e-2"]}),
        "align": StepSettings(args={"args": ["-Y", "a b", "'q'"]}),
    }
    params = Params(ploidy=1, regions=3, max_depth=250, chunk_reads=100)
    tools = ["fastp", "markdup", "mosdepth", "freebayes", "joint"]
    graph, summary = plan(tools=tools, samples=samples, params=params, settings=settings, reads=1000)
    rows: list[tuple[object, ...]] = []
    for task in graph.tasks + summary.tasks:
        pipes = [(p.argv, p.stdout) for p in task.pipes]
        rows.append((task.name, pipes, task.outputs, task.builtin, task.lists))
    rows += [(p.task, sorted(p.files.items())) for p in graph.published + summary.published]
    return rows


def test_templates_evaluated_once_per_step_give_what_jinja_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command, output and published path of every built-in step, over tricky names and options, is the
    same whether its template is evaluated once per step or rendered by Jinja for each task."""
    from genobatch.pipeline import templates

    substituted = []
    words = templates._Simple.words

    def counted(self: templates._Simple, context: dict[str, object]) -> list[str] | None:
        result = words(self, context)
        substituted.extend([1] if result is not None else [])
        return result

    monkeypatch.setattr(templates._Simple, "words", counted)
    fast = everything_planned(monkeypatch, True)
    assert len(substituted) > 250  # most renders took the fast path, split once per step
    before = len(substituted)
    slow = everything_planned(monkeypatch, False)
    assert len(substituted) == before
    assert len(fast) > 100
    assert fast == slow


def test_a_template_evaluated_once_per_step_branches_and_substitutes_as_jinja() -> None:
    """The parts of a template: what each task substitutes, what it branches on, what is the step's; and a
    template that sets names or writes a list is left to Jinja."""
    from jinja2 import UndefinedError

    from genobatch.pipeline.templates import ENV, Words, _substituted, _Template

    text = "x {{ a }}{% if flag %} -f {{ b.name }}{% endif %} {{ c[1] }} {{ params.p }}{{ a }}"
    parsed = ENV.parse(text)
    assert _substituted(parsed) == ({"a", "b", "c", "params"}, {"flag"})
    template = _Template(text, parsed)
    params = {"p": "P Q"}
    for flag in (True, False, True, 1, 0):
        for a in ("s1", "it's", "", None):
            context = {"a": a, "flag": flag, "b": Words(["w"], ["n m"]), "c": Words(["0", "1;"]), "params": params}
            assert template.render(context) == ENV.from_string(text).render(context)
    assert len(template._variants) == 4  # True, False, 1, 0: Jinja prints 1 and True differently
    with pytest.raises(UndefinedError):
        template.render({"a": "x", "flag": False, "b": Words(), "c": Words(["0"]), "params": params})
    for other in ("{% set x = 1 %}{{ x }}", "{% for r in reads %}{{ r }}{% endfor %}", "{{ a | as_file('.l') }}"):
        assert _substituted(ENV.parse(other)) is None


def test_words_split_once_per_template_equal_the_rendered_text_split() -> None:
    """A template's text split into words once, each task's values put into them, gives the words of the text
    with the values put in (quoted) and then split: on random text of quotes, escapes, comments and pipes around
    values with spaces, quotes, empty, None and lists; or it declines (None) and the text is split."""
    from genobatch.pipeline.templates import Words, _Simple

    rng = random.Random(11)
    alphabet = list("ab |>'\"\\#\n-/.")
    values: list[object] = ["x", "a b", "it's", "", None, 3, Words([]), Words(["p"]), Words(["p q", "r"]), "#c", "|"]
    declined = split = 0
    for _ in range(20_000):
        pieces = []
        for i in range(rng.randint(1, 3)):
            pieces += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5))), f"v{i}"]
        pieces.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5))))
        template = _Simple(pieces)
        context = {f"v{i}": rng.choice(values) for i in range(3)}
        expected = our_words(template.render(context))
        try:
            words = template.words(context)
        except ValueError:
            words = None
        if words is None:
            declined += 1
        else:
            split += 1
            assert ("words", words) == expected, (pieces, context)
    assert split > 3_000 and declined > 1_000


def test_templates_that_rewrite_their_output_or_hold_nuls_are_rendered_as_jinja() -> None:
    """A filter or autoescape block, or a macro's ``caller()``, changes the text a task's value is put into (its
    quoting too), and NULs in the text split it where no value goes: the step-wide evaluation must not be used."""
    from genobatch.pipeline.templates import ENV, STEP_VALUES, _Template

    for text in (
        "{% filter upper %}x {{ sample }}{% endfilter %}",
        "{% autoescape true %}x {{ sample }}{% endautoescape %}",
        "{% macro m() %}[{{ caller() | upper }}]{% endmacro %}{% call m() %}{{ sample }}{% endcall %}",
        "a\0b\0c {{ sample }}",
    ):
        template, step = _Template(text, ENV.parse(text)), object()
        for sample in ("s1", "it's b"):
            context = {"sample": sample, STEP_VALUES: step}
            assert template.render(context) == ENV.from_string(text).render(context), text


def test_an_input_named_as_a_step_value_is_each_tasks_own() -> None:
    """A step's input may be named ``args`` (or ``run``...): each task then gives it its own files, which the
    step-wide evaluation must put in per task, not take as the step's."""
    from genobatch.pipeline.declarations import Step
    from genobatch.pipeline.templates import STEP_VALUES, StepTemplates, Words

    step = Step(
        "cat", "", Path("cat.yml"), "sample", {"args": "fastq"}, (), ("cat {{ args }} {{ run }}",), "host", {},
        1, 100, 0, 0.0, "#000",
    )  # fmt: skip
    templates, shared = StepTemplates(step), object()
    for files in (["f1"], ["f2", "f 3"]):
        context = {"args": Words(files), "run": "r", STEP_VALUES: shared}
        pipes, _ = templates.pipes(context)
        assert pipes[0].argv == [["cat", *files, "r"]]
