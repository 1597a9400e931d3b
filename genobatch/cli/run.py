"""``genobatch run``: a pipeline of steps over a sample sheet (nf-core conventions: --input, --fasta, --outdir,
--tools, -params-file)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import shlex
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from genobatch.batch import ClientException
from genobatch.executors.registry import EXECUTORS
from genobatch.executors.registry import load as load_executor
from genobatch.executors.runtimes import CHOICES
from genobatch.pipeline.execute import Options, Run
from genobatch.pipeline.planner import Params
from genobatch.pipeline.units import memory_mib
from genobatch.pipeline.yamlfile import load
from genobatch.problems import InputError, Problem

EXIT_BAD_INPUT = 2
REGIONS_FIX = "give the number of variant-calling regions, or 0 for one per Mb (at most 8)"
EXIT_FAULT = 1  # the run stopped for a reason of the machine (a full disk): what finished is kept
PARAMS_FILE = ("-params-file", "--params-file")


def memory(text: str) -> int:
    try:
        return memory_mib(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def names(text: str) -> list[str]:
    """``a,b,c`` (nf-core's --tools syntax); spaces around names are ignored."""
    return [name.strip() for name in text.split(",") if name.strip()]


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


def ploidy(text: str) -> int:
    if text not in ("1", "2"):
        raise argparse.ArgumentTypeError(
            f"ploidy {text} is not supported: bcftools call -m handles ploidy 1 (haploid) or 2 (diploid)"
        )
    return int(text)


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    run = subparsers.add_parser(
        "run",
        parents=[common],
        help="run the pipeline (FASTQ -> QC, BAM, VCF, and the steps you add)",
        description="FASTQ samples + a reference in; per sample QC, an indexed BAM and VCFs out, run as batch "
        "jobs. Finished work is reused (resume is the default). `genobatch steps` lists the steps.",
    )
    add_arguments(run)


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--input", required=True, help="nf-core sample sheet (sample,fastq_1,fastq_2); path or s3://")
    run.add_argument("--fasta", required=True, help="reference FASTA (plain or gzip); path or s3://")
    run.add_argument("--outdir", required=True, help="results directory, or an s3:// URI")
    run.add_argument("--work-dir", type=Path, default=Path("work"), help="cache, engine state, logs (default ./work)")
    run.add_argument("--tools", type=names, default=[], help="optional steps to add, e.g. fastp,markdup,freebayes")
    run.add_argument("--skip-tools", type=names, default=[], help="steps to leave out, e.g. fastqc,multiqc")
    run.add_argument(
        "--steps", type=Path, action="append", default=[], help="your own step file or folder (repeatable)"
    )
    run.add_argument("-c", "--config", type=Path, help="per-step settings (cpus, memory, time, args): YAML")
    run.add_argument(*PARAMS_FILE, dest="params_file", type=Path, help="these options from a YAML/JSON file")
    run.add_argument("--ploidy", type=ploidy, default=2, help="1 (haploid) or 2 (diploid, default)")
    run.add_argument("--max-cpus", type=positive, help="vCPUs the run may use (default: all)")
    run.add_argument("--max-memory", type=memory, help="memory the run may use, e.g. 16GB (default: all)")
    run.add_argument("--chunk-reads", type=positive, default=Params.chunk_reads, help="reads per alignment chunk")
    run.add_argument("--regions", type=int, default=0, help="variant-calling regions (default: one per Mb, up to 8)")
    run.add_argument("--max-depth", type=positive, help="bcftools mpileup -d (default: bcftools' own, 250)")
    run.add_argument("--markdup", action="store_true", help="mark duplicates: the same as --tools markdup")
    run.add_argument("--joint", action="store_true", help="call all samples together: the same as --tools joint")
    run.add_argument("--dry-run", action="store_true", help="print the plan (jobs, resources, cache) and stop")
    run.add_argument("--explain", action="store_true", help="say why each task that will run is not cached")
    run.add_argument("--verbose", action="store_true", help="with --dry-run: every job, not one per step")
    run.add_argument("--keep-intermediates", action="store_true", help="keep chunk BAMs and region VCFs")
    run.add_argument(
        "--runtime",
        choices=CHOICES,
        default="auto",
        help="where jobs run: host tools, or the tool images with podman/docker (default auto: podman or docker "
        "if it works and `genobatch images build` has built the images, else the host)",
    )
    run.add_argument("--endpoint-url", help="another AWS endpoint for S3 and Batch (default: $AWS_ENDPOINT_URL)")
    add_executor_arguments(run)
    run.add_argument("-resume", "--resume", action="store_true", help="accepted for Nextflow users: always on")


def add_executor_arguments(run: argparse.ArgumentParser) -> None:
    """``--executor`` and each executor's settings as flags (a field's metadata names its flag and help)."""
    run.add_argument(
        "--executor",
        "--backend",
        choices=list(EXECUTORS),
        default="local",
        help="where jobs run: local (this machine's engine, default), awsbatch (a stack made by `genobatch aws "
        "up`), slurm (the cluster this machine submits to)",
    )
    for name in EXECUTORS:
        group = run.add_argument_group(f"--executor {name}")
        for setting in dataclasses.fields(load_executor(name).Settings):
            flag = setting.metadata.get("flag", f"--{name}-{setting.name.replace('_', '-')}")
            kind = {"int": int, "float": float}.get(str(setting.type), str)
            help_text = setting.metadata.get("help", "")
            metavar = setting.name.upper()
            group.add_argument(
                flag, dest=f"{name}.{setting.name}", type=kind, default=None, metavar=metavar, help=help_text
            )


def executor_settings(args: argparse.Namespace) -> Any:
    """The chosen executor's ``Settings`` from its flags; UsageError for another executor's flag."""
    prefix = f"{args.executor}."
    given = {dest[len(prefix) :]: v for dest, v in vars(args).items() if dest.startswith(prefix) and v is not None}
    others = [dest for dest, v in vars(args).items() if "." in dest and v is not None and not dest.startswith(prefix)]
    if others:
        name, field_name = others[0].split(".", 1)
        flag = f"--{field_name.replace('_', '-')}"
        message = f"{flag} is an option of --executor {name}, not of {args.executor}"
        raise InputError([Problem(Path(flag), None, message, f"add --executor {name}, or leave {flag} out")])
    return load_executor(args.executor).Settings(**given)


def with_params_file(argv: list[str]) -> list[str]:
    """``genobatch run -params-file FILE ...`` -> the file's options first, then the command line's (which win,
    as in Nextflow). Keys are the long options' names, with ``-`` or ``_``; a bad key or value is an InputError
    naming the file and line."""
    if not argv or argv[0] != "run":
        return argv
    rest, path = [], None
    args = iter(argv[1:])
    for word in args:
        if word in PARAMS_FILE:
            path = Path(next(args, ""))
        elif word.split("=", 1)[0] in PARAMS_FILE:
            path = Path(word.split("=", 1)[1])
        else:
            rest.append(word)
    if path is None:
        return argv
    return ["run", *params_file_options(path), *rest]


def params_file_options(path: Path) -> list[str]:
    data = load(path, "params file")
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    actions = {  # by the long option's name, as the params file spells it
        option.lstrip("-").replace("-", "_"): action
        for action in parser._actions
        for option in action.option_strings
        if len(option) > 2 and action.dest != "params_file"
    }
    problems, words = [], []
    for key, value in data.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        line = data.line_of(key)
        if action is None:
            close = difflib.get_close_matches(dest, list(actions), n=1)
            fix = f"did you mean {close[0]!r}?" if close else "use the names of genobatch run's options"
            problems.append(Problem(path, line, f"unknown option {key!r}", fix))
            continue
        flag = action.option_strings[-1]
        values = value if isinstance(value, list) and isinstance(action, argparse._AppendAction) else [value]
        for one in values:
            problem = _check_value(action, one, path, line, key)
            if problem:
                problems.append(problem)
            elif isinstance(action, argparse._StoreTrueAction):
                words += [flag] if one else []
            else:
                words += [flag, ",".join(map(str, one)) if isinstance(one, list) else str(one)]
    if problems:
        raise InputError(problems)
    return words


def _check_value(action: argparse.Action, value: Any, path: Path, line: int, key: str) -> Problem | None:
    if isinstance(action, argparse._StoreTrueAction):
        return None if isinstance(value, bool) else Problem(path, line, f"{key} must be true or false", "")
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError) as exc:
        return Problem(path, line, f"{key}: {exc or 'not a valid value'}", action.help or "")
    if action.choices is not None and converted not in action.choices:
        return Problem(path, line, f"{key}: {value!r} is not one of {list(action.choices)}", "")
    return None


def options(args: argparse.Namespace) -> Options:
    tools = list(args.tools) + ["markdup"] * args.markdup + ["joint"] * args.joint
    params = Params(ploidy=args.ploidy, chunk_reads=args.chunk_reads, regions=args.regions, max_depth=args.max_depth)
    return Options(
        args.input,
        args.fasta,
        args.outdir,
        args.work_dir,
        params,
        args.max_cpus,
        args.max_memory,
        args.dry_run,
        args.explain,
        args.verbose,
        args.keep_intermediates,
        runtime=args.runtime,
        executor=args.executor,
        executor_settings=executor_settings(args),
        endpoint_url=args.endpoint_url,
        tools=list(dict.fromkeys(tools)),
        skip_tools=args.skip_tools,
        steps=args.steps,
        settings=args.config,
        command=shlex.join(["genobatch", *sys.argv[1:]]),
    )


def _print_watch(work_dir: Path, run_id: str) -> None:
    """The one command that opens the dashboard on this run, once its inputs held (a refused run has none)."""
    print(f"Watch: genobatch serve --work-dir {shlex.quote(str(work_dir))} --run {run_id} --open", flush=True)


def run(args: argparse.Namespace) -> int:
    if args.regions < 0:
        return bad_input(InputError([Problem(Path("--regions"), None, "--regions must be >= 0", REGIONS_FIX)]))
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's or kill's TERM: stop as Ctrl-C does, report first
    try:
        return Run(
            dataclasses.replace(options(args), on_start=functools.partial(_print_watch, args.work_dir))
        ).execute()
    except InputError as exc:
        return bad_input(exc)
    except ClientException as exc:  # e.g. --max-cpus above what this machine has
        print(f"genobatch: error: {exc}; nothing was run", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `genobatch run --dry-run | head`: main() leaves quietly
        raise
    except (OSError, sqlite3.Error) as exc:  # the machine's fault, not the input's: a full disk, a read-only mount
        return environment_fault(exc, args.work_dir)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def environment_fault(exc: BaseException, work: Path) -> int:
    """One line for what went wrong around the run, what is kept and how to go on: no traceback."""
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc)
        cause += f": {exc.filename}" if exc.filename else ""
    else:
        cause = str(exc)
    print(
        f"genobatch: error: {cause}. Finished tasks are kept in {work.resolve() / 'cache'}; "
        "fix this (e.g. free disk space) and run the same command again to resume.",
        file=sys.stderr,
    )
    return EXIT_FAULT


def bad_input(exc: InputError) -> int:
    print("genobatch: error: the input is not usable; nothing was run:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT
