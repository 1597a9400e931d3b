"""The ``genobatch`` command. Each subcommand lives in its own module; this one only dispatches."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from genobatch import __version__
from genobatch.batch import BatchClient, ClientException
from genobatch.batch.errors import EnvironmentFault
from genobatch.batch.store import STATE_DIR_ENV, default_state_dir
from genobatch.problems import InputError

from . import aws, batch, engine, images, run, runs, serve, steps
from .awsargs import EXIT_CLIENT_ERROR, EXIT_USAGE, UsageError


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        default=argparse.SUPPRESS,
        type=Path,
        help=f"engine state (default: ${STATE_DIR_ENV} or ~/.genobatch)",
    )
    parser = argparse.ArgumentParser(prog="genobatch", description=__doc__, parents=[common])
    parser.add_argument("--version", action="version", version=f"genobatch {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    batch.add_parser(subparsers, common)
    engine.add_parser(subparsers, common)
    run.add_parser(subparsers, common)
    runs.add_parser(subparsers, common)
    serve.add_parser(subparsers, common)
    steps.add_parser(subparsers, common)
    images.add_parser(subparsers, common)
    aws.add_parser(subparsers, common)
    return parser


def main(argv: list[str] | None = None) -> None:
    try:
        argv = run.with_params_file(sys.argv[1:] if argv is None else argv)
    except InputError as exc:
        sys.exit(run.bad_input(exc))
    args = build_parser().parse_args(argv)
    state_dir = Path(getattr(args, "state_dir", None) or default_state_dir()).expanduser().resolve()
    try:
        if args.command == "batch":
            code = batch.run(args, lambda autostart: BatchClient(state_dir, autostart_engine=autostart))
        elif args.command == "run":
            code = run.run(args)
        elif args.command == "images":
            code = images.run(args)
        elif args.command == "steps":
            code = steps.run(args)
        elif args.command == "runs":
            code = runs.run(args)
        elif args.command == "serve":
            code = serve.run(args)
        elif args.command == "aws":
            code = aws.run(args)
        else:
            code = engine.run(args, state_dir)
    except UsageError as exc:
        print(f"\n{exc}\n", file=sys.stderr)
        code = EXIT_USAGE
    except ClientException as exc:
        operation = batch.operation_name(getattr(args, "verb", ""))
        print(f"\nAn error occurred ({exc.code}) when calling the {operation} operation: {exc}\n", file=sys.stderr)
        code = EXIT_CLIENT_ERROR
    except InputError as exc:  # a step declaration or settings file that is not usable
        code = run.bad_input(exc)
    except TimeoutError as exc:
        print(f"genobatch: {exc}", file=sys.stderr)
        code = 1
    except EnvironmentFault as exc:  # a full disk, a read-only or damaged state directory: the machine's fault
        print(f"genobatch: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:  # before a run started its jobs (a run handles its own: report, resume line)
        print("genobatch: interrupted; nothing was lost", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # `genobatch ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 128 + signal.SIGPIPE
    sys.exit(code)
