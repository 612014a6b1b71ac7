"""`tv3s submit job.yaml --address URL`: run a job on a remote Ray cluster through the Ray Jobs API."""

from __future__ import annotations

import argparse
import sys
import time

NAME = "submit"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="submit a job spec to a Ray cluster (Ray Jobs API); the job runs there",
        description="The spec travels in the submission's environment; the cluster needs tv3s installed (the "
        "images in infra/docker have it). The job shows in the Ray dashboard under its submission id.",
    )
    parser.add_argument("spec", metavar="JOB.yaml")
    parser.add_argument("--address", required=True, metavar="URL", help="the dashboard, e.g. http://head:8265")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait until the job ends, then print the tail of its log; the exit code says how it ended",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..api import submit
    from ..schemas.job import JobSpecError
    from .spec_file import load_spec_argument

    try:
        spec = load_spec_argument(args.spec)
    except JobSpecError as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    job = submit(spec, address=args.address)
    submission = job.submission
    print(f"submitted job {spec.name} as {submission}")
    print(f"  follow: ray job logs --address {args.address} -f {submission}   progress: tv3s status {spec.output}")
    if not args.wait:
        return 0
    status = job.driver_state()
    while status not in TERMINAL:
        time.sleep(1)
        status = job.driver_state()
    print(f"{submission}: {status}")
    sys.stdout.write(job.log())
    return 0 if status == "SUCCEEDED" else 1
