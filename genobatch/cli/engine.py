"""``genobatch engine``: run, start, stop and inspect the engine that runs a state directory's jobs."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from genobatch.batch import Engine, EngineLockedError, Settings
from genobatch.batch.container import RUNTIMES, RuntimeUnavailable, make_runtime
from genobatch.batch.daemon import DEFAULT_IDLE_EXIT_SECONDS, engine_pid, start_background_engine, stop_engine
from genobatch.batch.store import Store
from genobatch.batch.views import current_pools


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    engine = subparsers.add_parser("engine", help="the process that runs submitted jobs", parents=[common])
    verbs = engine.add_subparsers(dest="verb", required=True, metavar="VERB")
    run = verbs.add_parser("run", parents=[common], help="run the engine in the foreground (Ctrl-C kills running jobs)")
    run.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after this many seconds with no job left (default: run until stopped)",
    )
    run.add_argument("--poll-interval", type=float, default=Settings.poll_interval, metavar="SECONDS")
    run.add_argument(
        "--kill-grace",
        type=float,
        default=Settings.kill_grace_seconds,
        metavar="SECONDS",
        help="between SIGTERM and SIGKILL on timeout or terminate-job",
    )
    run.add_argument("--quiet-if-running", action="store_true", help=argparse.SUPPRESS)
    start = verbs.add_parser("start", parents=[common], help="start a background engine unless one runs")
    start.add_argument("--idle-exit", type=float, default=DEFAULT_IDLE_EXIT_SECONDS, metavar="SECONDS")
    for parser in (run, start):
        parser.add_argument(
            "--runtime",
            choices=("host", *RUNTIMES),
            default="host",
            help="run jobs that have an image in it with podman/docker (default: every job on the host)",
        )
    stop = verbs.add_parser("stop", parents=[common], help="stop the engine: running jobs finish first")
    stop.add_argument("--now", action="store_true", help="kill running jobs (recorded as host lost; retries apply)")
    verbs.add_parser("status", parents=[common], help="is an engine running, and what is it doing")


def run(args: argparse.Namespace, state_dir: Path) -> int:
    if args.verb == "run":
        return _run_foreground(args, state_dir)
    if args.verb == "start":
        pid = start_background_engine(state_dir, args.idle_exit, runtime=args.runtime)
        print(
            json.dumps(
                {
                    "engine": "running" if pid else "failed to start",
                    "pid": pid,
                    "stateDir": str(state_dir),
                    "log": str(state_dir / "engine.log"),
                },
                indent=4,
            )
        )
        return 0 if pid else 1
    if args.verb == "stop":
        pid = stop_engine(state_dir, now=args.now)
        print(json.dumps({"stopped": pid is not None, "pid": pid}, indent=4))
        return 0
    store = Store(state_dir)
    counts = dict(
        store.conn.execute("SELECT status, count(*) FROM jobs WHERE parent_id IS NULL GROUP BY status").fetchall()
    )
    pools = current_pools(store.conn)
    print(
        json.dumps(
            {
                "engine": "running" if engine_pid(state_dir) else "stopped",
                "pid": engine_pid(state_dir),
                "stateDir": str(state_dir),
                "jobs": counts,
                "computeEnvironments": [
                    {
                        "name": p.name,
                        "vcpusInUse": p.used_vcpus,
                        "maxvCpus": p.capacity.vcpus,
                        "memoryMiBInUse": p.used_memory_mib,
                        "maxMemoryMiB": p.capacity.memory_mib,
                    }
                    for p in pools.values()
                ],
            },
            indent=4,
        )
    )
    return 0


def _run_foreground(args: argparse.Namespace, state_dir: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s engine[%(process)d] %(message)s")
    settings = Settings(
        poll_interval=args.poll_interval, idle_exit_seconds=args.idle_exit, kill_grace_seconds=args.kill_grace
    )
    try:
        runtime = make_runtime(args.runtime)
    except RuntimeUnavailable as exc:
        print(f"genobatch: {exc}", file=sys.stderr)
        return 1
    engine = Engine(state_dir, runtime=runtime, settings=settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # SIGTERM drains (running attempts finish); SIGINT, or a second SIGTERM, kills them now.
        drain = signum == signal.SIGTERM and not engine._stop.is_set()
        logging.info("signal %s: %s", signal.Signals(signum).name, "draining" if drain else "stopping now")
        engine.request_stop(drain=drain)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        logging.info("engine started on %s (runtime: %s)", state_dir, runtime.name)
        engine.run()
    except EngineLockedError as exc:
        if args.quiet_if_running:
            return 0
        print(f"genobatch: {exc}", file=sys.stderr)
        return 1
    logging.info("engine stopped")
    return 0
