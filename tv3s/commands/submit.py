"""`tv3s submit job.yaml --address URL`: run a job on a remote Ray cluster through the Ray Jobs API."""

from __future__ import annotations

import argparse
import sys
import time
import uuid

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
    from ray.job_submission import JobSubmissionClient

    from ..schemas.job import JobSpecError
    from .spec_file import load_spec_argument

    try:
        spec = load_spec_argument(args.spec)
    except JobSpecError as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    client = JobSubmissionClient(args.address)
    submission = client.submit_job(
        entrypoint="tv3s run --spec-from-env TV3S_JOB_SPEC --quiet",
        runtime_env={"env_vars": {"TV3S_JOB_SPEC": spec.model_dump_json()}},
        submission_id=f"tv3s-{spec.name}-{uuid.uuid4().hex[:8]}",
        metadata={"tv3s_job": spec.name, "output": spec.output},
    )
    print(f"submitted job {spec.name} as {submission}")
    print(f"  follow: ray job logs --address {args.address} -f {submission}   progress: tv3s status {spec.output}")
    if not args.wait:
        return 0
    while (status := str(client.get_job_status(submission)).rsplit(".", 1)[-1]) not in TERMINAL:
        time.sleep(1)
    print(f"{submission}: {status}")
    sys.stdout.write(client.get_job_logs(submission)[-2000:])
    return 0 if status == "SUCCEEDED" else 1
