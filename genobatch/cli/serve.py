"""``genobatch serve``: the web dashboard of a work directory (its runs, their tasks and logs, the engine's
queues), read-only unless started with a token."""

from __future__ import annotations

import argparse
import secrets
import sys
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from genobatch.pipeline.runinfo import load_runs
from genobatch.web.server import DashboardServer

EXIT_USAGE = 2


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    serve = subparsers.add_parser(
        "serve",
        parents=[common],
        help="a web dashboard of a work directory's runs (progress, timeline, jobs, logs, reports)",
        description="Serve a dashboard of the work directory's runs and its engine's queues, in a browser. "
        "Read-only unless --allow-stop or --token: then jobs can be cancelled and terminated from it.",
    )
    serve.add_argument("--work-dir", type=Path, default=Path("work"), help="the runs' work directory (default ./work)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    serve.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed)")
    serve.add_argument("--run", metavar="RUN", help="open this run's page (a run's name, or last)")
    serve.add_argument("--open", action="store_true", help="open the page in this machine's browser")
    serve.add_argument("--token", help="allow cancel/terminate to whoever shows this token (needed off 127.0.0.1)")
    serve.add_argument("--allow-stop", action="store_true", help="allow cancel/terminate, with a token made now")


def run(args: argparse.Namespace) -> int:
    work: Path = args.work_dir
    if work.exists() and not work.is_dir():
        print(f"genobatch serve: --work-dir {work} is a file: give the work directory of your runs", file=sys.stderr)
        return EXIT_USAGE
    if not (work / "runs").is_dir():
        print(f"genobatch serve: no runs in {work} yet; the page shows them as they start", file=sys.stderr)
    if not 0 <= args.port <= 65535:
        print(f"genobatch serve: --port {args.port} is not a port: give 1-65535, or 0 for a free one", file=sys.stderr)
        return EXIT_USAGE
    token = args.token or (secrets.token_urlsafe(18) if args.allow_stop else None)
    try:
        server = DashboardServer(work, args.host, args.port, token)
    except ValueError as exc:
        print(f"genobatch serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"genobatch serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    url = server.url + _path(args.run, work) + (f"?token={quote(token)}" if token else "")
    print(f"Dashboard of {work.resolve()}: {url}", flush=True)
    print("(read-only)" if not token else "(cancel/terminate allowed to whoever has this address)", flush=True)
    if args.open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _path(run: str | None, work: Path) -> str:
    if not run:
        return "/"
    if run == "last":
        records = load_runs(work)
        return f"/runs/{quote(records[-1].run_id)}" if records else "/"
    return f"/runs/{quote(run, safe='')}"
