"""``genobatch images build|list``: the tool images jobs run in (see ``genobatch.images``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from genobatch import __version__
from genobatch.batch.container import RUNTIMES, RuntimeUnavailable
from genobatch.images import REPOSITORY, ImageError, build, status
from genobatch.pipeline.library import Library


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    images = subparsers.add_parser("images", help="build and list the tool images", parents=[common])
    verbs = images.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, help_text in (("build", "build every tool image"), ("list", "show which images exist")):
        parser = verbs.add_parser(verb, help=help_text)
        parser.add_argument("--runtime", choices=RUNTIMES, default="podman")
        parser.add_argument("--repository", default=REPOSITORY, help=f"image name prefix (default {REPOSITORY})")
        parser.add_argument("--tag", default=__version__, help=f"image tag (default {__version__})")
        if verb == "build":
            parser.add_argument(
                "--base",
                help="the Debian bookworm image to start from (default: localhost/debian-base:bookworm if present, "
                "made by scripts/setup-podman.sh without a registry; else docker.io/library/debian:bookworm-slim)",
            )


def run(args: argparse.Namespace) -> int:
    try:
        specs = Library.load().images
        if args.verb == "build":
            build(specs, args.runtime, args.base, args.repository, args.tag)
            return 0
        rows = status(specs, args.runtime, args.repository, args.tag)
    except (RuntimeUnavailable, ImageError) as exc:
        print(f"genobatch: {exc}", file=sys.stderr)
        return 1
    width = max(len(row.ref) for row in rows)
    for row in rows:
        tools = ", ".join(f"{tool} {version}" for tool, version in row.tools.items()) or "job runner only"
        state = "MISSING" if not row.present else f"STALE ({row.stale}): {tools}" if row.stale else tools
        print(f"{row.ref:<{width}}  {state}")
    unusable = [row for row in rows if not row.usable]
    if unusable:
        print(
            f"{len(unusable)} image(s) missing or stale: genobatch images build --runtime {args.runtime}",
            file=sys.stderr,
        )
        return 1
    return 0
