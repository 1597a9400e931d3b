"""``genobatch engine``: run, start, stop and inspect the engine that runs a state directory's jobs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from genobatch.batch import Engine, EngineLockedError, Settings
from genobatch.batch.container import RUNTIMES, RuntimeUnavailable, make_runtime
from genobatch.batch.daemon import DEFAULT_IDLE_EXIT_SECONDS, engine_pid, start_background_engine, stop_engine
from genobatch.batch.endpoint_service import (
    DEFAULT_HOST,
    TOKEN_ENV,
    EndpointOptions,
    EndpointService,
    EndpointUnavailable,
    read_endpoint,
)
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
    start.add_argument(
        "--idle-exit",
        type=float,
        default=DEFAULT_IDLE_EXIT_SECONDS,
        metavar="SECONDS",
        help=f"exit after this long with no open job and no endpoint request (default {DEFAULT_IDLE_EXIT_SECONDS:g})",
    )
    for parser in (run, start):
        parser.add_argument(
            "--runtime",
            choices=("host", *RUNTIMES),
            default="host",
            help="run jobs that have an image in it with podman/docker (default: every job on the host)",
        )
        _add_endpoint_options(parser)
    stop = verbs.add_parser("stop", parents=[common], help="stop the engine: running jobs finish first")
    stop.add_argument("--now", action="store_true", help="kill running jobs (recorded as host lost; retries apply)")
    verbs.add_parser("status", parents=[common], help="is an engine running, and what is it doing")


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AWS Batch endpoint (boto3, aws --endpoint-url)")
    group.add_argument(
        "--endpoint",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve AWS Batch's REST API; its URL goes to <state>/endpoint.json (default: on)",
    )
    group.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; others need a token)"
    )
    group.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    group.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"clients must send it as their AWS access key id (default: ${TOKEN_ENV}; generated when --host "
        "is not loopback)",
    )


def _endpoint_options(args: argparse.Namespace) -> list[str]:
    """The endpoint's options for the background engine (the token goes by environment, not command line)."""
    if not args.endpoint:
        return ["--no-endpoint"]
    return ["--host", args.host, "--port", str(args.port)]


def _start(args: argparse.Namespace, state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)  # a new state directory: its log goes there from the start
    env = {TOKEN_ENV: args.token} if args.token else None
    already = engine_pid(state_dir)
    pid = start_background_engine(
        state_dir, args.idle_exit, runtime=args.runtime, options=_endpoint_options(args), env=env
    )
    endpoint = None
    deadline = time.monotonic() + 10
    while pid and args.endpoint and endpoint is None and time.monotonic() < deadline:
        endpoint = read_endpoint(state_dir)
        time.sleep(0.02)
    report: dict[str, Any] = {
        "engine": "running" if pid else "failed to start",
        "pid": pid,
        "stateDir": str(state_dir),
        "log": str(state_dir / "engine.log"),
        "endpoint": endpoint and endpoint["url"],
    }
    if pid and not already:  # said, so that an engine leaving under someone typing aws commands is no surprise
        report["idleExitSeconds"] = args.idle_exit
    elif already:
        report["note"] = "an engine was already running: it keeps its own options (stop it to change them)"
    if endpoint and endpoint.get("token"):
        report["token"] = endpoint["token"]  # clients send it as AWS_ACCESS_KEY_ID
    print(json.dumps(report, indent=4))
    return 0 if pid else 1


def run(args: argparse.Namespace, state_dir: Path) -> int:
    if args.verb == "run":
        return _run_foreground(args, state_dir)
    if args.verb == "start":
        return _start(args, state_dir)
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
                "endpoint": (read_endpoint(state_dir) or {}).get("url"),
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
    # With the endpoint, its requests count as activity too: the endpoint watches for idleness (see below).
    watch_idle = args.endpoint and args.idle_exit is not None and args.idle_exit > 0
    settings = Settings(
        poll_interval=args.poll_interval,
        idle_exit_seconds=None if watch_idle else args.idle_exit,
        kill_grace_seconds=args.kill_grace,
    )
    try:
        runtime = make_runtime(args.runtime)
    except RuntimeUnavailable as exc:
        print(f"genobatch: {exc}", file=sys.stderr)
        return 1
    engine = Engine(state_dir, runtime=runtime, settings=settings)
    endpoint = None
    if args.endpoint:
        options = EndpointOptions(args.host, args.port, args.token)
        try:
            endpoint = EndpointService(state_dir, options, wake=engine.wake).start()
        except EndpointUnavailable as exc:
            if engine_pid(state_dir) and args.quiet_if_running:
                return 0  # another engine runs (on that port, maybe): it serves this state directory
            print(f"genobatch: {exc}", file=sys.stderr)
            return 1
        if watch_idle:
            endpoint.stop_engine_when_idle(args.idle_exit, lambda: engine.request_stop(drain=True))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # SIGTERM drains (running attempts finish); SIGINT, or a second SIGTERM, kills them now.
        drain = signum == signal.SIGTERM and not engine._stop.is_set()
        logging.info("signal %s: %s", signal.Signals(signum).name, "draining" if drain else "stopping now")
        if endpoint is not None:
            endpoint.withdraw()  # before the engine lets its lock go, so `engine stop` returns with it gone
        engine.request_stop(drain=drain)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        logging.info("engine started on %s (runtime: %s)", state_dir, runtime.name)
        if endpoint is not None:
            logging.info("AWS Batch endpoint: %s", endpoint.url)
        engine.run()
    except EngineLockedError as exc:
        if args.quiet_if_running:
            return 0
        print(f"genobatch: {exc}", file=sys.stderr)
        return 1
    finally:
        if endpoint is not None:
            endpoint.close()
    logging.info("engine stopped")
    return 0
