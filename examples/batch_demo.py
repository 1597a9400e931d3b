"""The batch engine's demo: a scatter/gather over the bundled FASTQ files, as AWS Batch jobs on this machine.

    make demo            (or: .venv/bin/python examples/batch_demo.py [--state-dir DIR] [--outdir DIR])

1. ``count-reads``, an array job with one child per FASTQ file: child i counts the reads of file i
   (``AWS_BATCH_JOB_ARRAY_INDEX`` picks the file) and writes ``<outdir>/parts/<i>.tsv``.
2. ``gather``, which depends on the whole array, joins the parts into ``<outdir>/read_counts.tsv``.

The same jobs can be submitted with the CLI (see README). The germline pipeline replaces this demo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genobatch.executors.contract import JobSpec
from genobatch.executors.local import LocalBackend

REPO = Path(__file__).resolve().parent.parent
COUNT = (  # the file path reaches the shell as an argument, never inside the script text
    'set -eu; f=$(sed -n "$((AWS_BATCH_JOB_ARRAY_INDEX + 1))p" "$1"); '
    'n=$(gzip -dc "$f" | wc -l); '
    'printf "%s\\t%s\\n" "$(basename "$f")" "$((n / 4))" > "$2/$AWS_BATCH_JOB_ARRAY_INDEX.tsv"'
)
GATHER = 'set -eu; printf "file\\treads\\n" > "$1.tmp"; sort "$2"/*.tsv >> "$1.tmp"; mv "$1.tmp" "$1"'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=REPO / ".genobatch" / "demo")
    parser.add_argument("--outdir", type=Path, default=REPO / "results" / "demo")
    args = parser.parse_args()
    fastqs = sorted((REPO / "data").glob("*/*.fastq.gz"))
    parts = (args.outdir / "parts").resolve()
    parts.mkdir(parents=True, exist_ok=True)
    listing = args.outdir.resolve() / "inputs.txt"
    listing.write_text("".join(f"{path}\n" for path in fastqs))
    table = args.outdir.resolve() / "read_counts.tsv"

    backend = LocalBackend(args.state_dir, engine="thread")
    try:
        scatter = backend.submit(
            JobSpec(
                "count-reads",
                ["sh", "-c", COUNT, "count", str(listing), str(parts)],
                vcpus=1,
                memory_mib=256,
                array_size=len(fastqs),
            )
        )
        gather = backend.submit(
            JobSpec(
                "gather",
                ["sh", "-c", GATHER, "gather", str(table), str(parts)],
                vcpus=1,
                memory_mib=64,
                depends_on=[scatter],
            )
        )
        print(f"submitted array {scatter} ({len(fastqs)} children) and gather {gather}; state in {args.state_dir}")
        backend.client.wait([scatter, gather], timeout=600)
        states = backend.poll([scatter, gather])
    finally:
        backend.close()
    for state in states:
        failed = state.status.value == "FAILED"
        print(f"{state.job_id}: {state.status.value}" + (f" ({state.status_reason})" if failed else ""))
    if any(state.status.value != "SUCCEEDED" for state in states):
        print(f"demo failed: see `genobatch batch logs JOB_ID --state-dir {args.state_dir}`", file=sys.stderr)
        return 1
    print(table.read_text(), end="")
    print(f"wrote {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
