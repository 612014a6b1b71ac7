"""`tv3s run job.yaml`: label an archive on Ray (a local Ray unless --address is given)."""

from __future__ import annotations

import argparse
import os
import sys

from .common import positive_int

NAME = "run"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="run a labeling job (YAML spec) on Ray: resumable, exactly-once results",
        description="Plans every video into ordered chains, labels them with stateful actors and commits each "
        "unit with its resume point. Running the same job again resumes it; see `tv3s schema job`.",
    )
    spec = parser.add_mutually_exclusive_group(required=True)
    spec.add_argument("spec", nargs="?", metavar="JOB.yaml", help="the job spec: a YAML file, or its s3:// URL")
    spec.add_argument(
        "--spec-from-env",
        metavar="VAR",
        help="read the spec (YAML/JSON text) from this variable (what `tv3s submit` uses)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="a running Ray cluster (default: start a local one; inside a Ray job, the job's cluster)",
    )
    parser.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--dashboard", action="store_true", help="start the local Ray with its dashboard")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.preflight import PreflightError, check_checkpoint, check_ray_address, check_same_labeling
    from ..jobs.runner import JobError, run_job
    from ..pipeline.storage import Store
    from ..schemas.job import JobSpecError, load_job_spec
    from .spec_file import load_spec_argument

    try:
        if args.spec_from_env:
            spec = load_job_spec(os.environ[args.spec_from_env], where=f"${args.spec_from_env}")
        else:
            spec = load_spec_argument(args.spec)
    except KeyError:
        print(f"tv3s {NAME}: error: ${args.spec_from_env} is not set", file=sys.stderr)
        return 2
    except JobSpecError as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    address = args.address or os.environ.get("RAY_ADDRESS")
    try:
        check_ray_address(address)
        check_checkpoint(spec, Store(spec.storage_options()))
        check_same_labeling(spec)
        summary = run_job(spec, address, progress=not args.quiet, num_cpus=args.num_cpus, dashboard=args.dashboard)
    except (PreflightError, JobError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    if not nothing_labelled(summary, spec, NAME):
        print(f'  query it: tv3s query {spec.output} "SELECT video_id, frames, mean_confidence FROM videos"')
    # A cancel is the user's choice, not a failure: exit 0 so no scheduler (a RayJob's backoffLimit,
    # say) retries the job behind the user's back. `tv3s status` says it was cancelled.
    return 0 if summary.state in ("finished", "cancelled") and summary.videos else 1


def nothing_labelled(summary, spec, command: str) -> bool:
    """A job whose inputs gave no video at all is a mistake of its inputs: said as one, with where to look."""
    if summary.videos:
        return False
    print(
        f"tv3s {command}: error: nothing to label: the inputs gave no video ({summary.errors} input errors: see "
        f"tv3s query {spec.output} \"SELECT url, message, hint FROM errors WHERE job_id = '{spec.name}'\")",
        file=sys.stderr,
    )
    return True


def print_summary(summary) -> None:
    """The job's outcome in one line, and each chain that failed for good."""
    print(
        f"job {summary.name}: {summary.state} - {summary.videos} videos, {summary.units_committed} units committed "
        f"now ({summary.units_already_done} were done), {summary.frames} frames at "
        f"{summary.frames_per_second:.1f} frames/s, {summary.errors} errors, {summary.retries} retries"
    )
    for failure in summary.chain_failures:
        print(f"  failed: {failure}", file=sys.stderr)
