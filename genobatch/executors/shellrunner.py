"""The job runner as a bash script, for a step that runs in an image genobatch did not build (which has none
of genobatch's Python). Written beside the job's task file, it does what ``runner.run_task`` does: each task
writes into a partial directory, runs its pipes with pipefail, checks its outputs and is renamed into place
whole. Like Nextflow's task scripts, it needs bash in the image (biocontainers and Debian images have it).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

OUT = "{out}"


def _word(word: str) -> str:
    """A word for bash, with ``{out}`` as the task's partial directory."""
    return '"$partial"'.join(shlex.quote(piece) if piece else "" for piece in word.split(OUT)) or "''"


def _task(spec: dict[str, Any]) -> list[str]:
    name = shlex.quote(spec["name"])
    lines = [
        f"target={shlex.quote(spec['target'])}",
        f'if [ -d "$target" ]; then echo {name}": already done" >&2; exit 0; fi',
        'job="${AWS_BATCH_JOB_ID:-local}"',
        'partial="$target.partial-${job//:/_}-${AWS_BATCH_JOB_ATTEMPT:-1}"',
        'rm -rf "$partial" && mkdir -p "$partial" && cd "$partial" || exit 1',
        "trap 'rm -rf \"$partial\"' EXIT",
    ]
    for name, entries in (spec.get("lists") or {}).items():  # printf is bash's own: no argument-size limit
        words = " ".join(_word(e) for e in entries)
        lines.append(f"printf '%s\\n' {words} > {_word(name)}" if entries else f": > {_word(name)}")
    for pipe in spec["pipes"]:
        command = " | ".join(" ".join(_word(w) for w in argv) for argv in pipe["argv"])
        if pipe.get("stdout"):
            command += " > " + _word(pipe["stdout"] if OUT in pipe["stdout"] else f"{OUT}/{pipe['stdout']}")
        shown = shlex.quote(" | ".join(" ".join(argv) for argv in pipe["argv"]))
        lines.append(f'{command} || {{ echo "genobatch: task "{name}" failed: "{shown}" exited $?" >&2; exit 1; }}')
    for output in spec["outputs"]:
        wanted = _word(f"{OUT}/{output}")
        lines.append(
            f'[ -e {wanted} ] || {{ echo "genobatch: task "{name}" failed: finished without writing "'
            f"{shlex.quote(output)} >&2; exit 1; }}"
        )
    lines += [
        f"printf '%s' {shlex.quote(json.dumps(spec))} > \"$partial/.task.json\"",
        "trap - EXIT",
        '[ -e "$target" ] || mv "$partial" "$target"',
        'rm -rf "$partial"  # another attempt finished the same work first',
    ]
    return lines


def script(specs: list[dict[str, Any]]) -> str:
    """One script for a job's tasks: an array child runs the task at ``$AWS_BATCH_JOB_ARRAY_INDEX``."""
    lines = [
        "#!/usr/bin/env bash",
        "# genobatch's job runner for an image without it (see genobatch.pipeline.shellrunner)",
    ]
    lines += ["set -uo pipefail", 'case "${AWS_BATCH_JOB_ARRAY_INDEX:-0}" in']
    for index, spec in enumerate(specs):
        lines += [f"{index})", *(f"  {line}" for line in _task(spec)), "  ;;"]
    lines += ['*) echo "genobatch: no task at index ${AWS_BATCH_JOB_ARRAY_INDEX}" >&2; exit 1 ;;', "esac", ""]
    return "\n".join(lines)
