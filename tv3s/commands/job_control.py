"""`tv3s status OUTPUT` and `tv3s cancel OUTPUT`: a job's progress, and stopping it (resumable)."""

from __future__ import annotations

import argparse
import json
import sys

from .output_args import add_output_arguments, open_output


def register(subparsers: argparse._SubParsersAction) -> None:
    status = subparsers.add_parser(
        "status",
        help="progress of the jobs in an output (or of --job)",
        description="Reads the job's plan, status and commit records.",
    )
    add_output_arguments(status)
    status.add_argument("--job", metavar="NAME")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.set_defaults(run=run_status)
    cancel = subparsers.add_parser("cancel", help="stop a running job after its current units (run it again to resume)")
    add_output_arguments(cancel)
    cancel.add_argument("--job", metavar="NAME", required=True)
    cancel.set_defaults(run=run_cancel)


def run_status(args: argparse.Namespace) -> int:
    from ..jobs.status import job_names, job_progress

    output = open_output(args)
    names = [args.job] if args.job else job_names(output)
    if not names:
        print(f"tv3s status: no jobs in {args.output}", file=sys.stderr)
        return 1
    try:
        reports = [job_progress(output, name) for name in names]
    except FileNotFoundError as exc:  # --job names no job of this output
        print(f"tv3s status: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reports, indent=1))
        return 0
    for r in reports:
        line = (
            f"job {r['name']}: {r['state']}  videos {r['videos_done']}/{r['videos']}  units "
            f"{r['units_done']}/{r['units']}  frames {r['frames']}  errors {r['errors']}"
        )
        if r["errors_outside_videos"]:
            line += (
                f" ({r['errors_in_videos']} in videos' units, {r['errors_outside_videos']} outside them: "
                "unreadable inputs, failed chains)"
            )
        if r["frames_per_second"]:
            line += f"  {r['frames_per_second']:.1f} frames/s"
        if r["eta_seconds"] is not None:
            line += f"  ETA {_duration(r['eta_seconds'])}"
        if r["updated_at"]:
            line += f"  (driver's last update {r['updated_at']})"
        print(line)
    return 0


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def run_cancel(args: argparse.Namespace) -> int:
    from ..jobs.runner import request_cancel
    from ..jobs.status import job_names

    output = open_output(args)
    jobs = job_names(output)
    if args.job not in jobs:  # a cancel marker for no job would wait there for a job of that name
        print(
            f"tv3s cancel: error: no job {args.job!r} in {args.output} (jobs: {', '.join(jobs) or 'none'})",
            file=sys.stderr,
        )
        return 1
    request_cancel(output, args.job)
    print(
        f"cancel requested for job {args.job}: its actors stop after their current unit; "
        "`tv3s run` with the same spec resumes it"
    )
    return 0
