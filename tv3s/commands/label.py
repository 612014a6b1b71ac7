"""`tv3s label SRC... --checkpoint CKPT --out OUTPUT`: one command from files to labels.

It writes the job spec it runs beside the output (`OUTPUT.job.yaml`), so `tv3s run` on
that file resumes or repeats exactly this job, then runs it like `tv3s run` (a local Ray
unless --address) and ends with the commands that query and render the result.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys

from ..model.predict import MODES
from .common import add_every_argument, add_resize_argument, positive_int
from .store_args import add_endpoint_argument

NAME = "label"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="label video files, folders, s3:// prefixes or shards with a job on Ray, in one command",
        description="Write a job spec for SRC... beside OUTPUT (OUTPUT.job.yaml: `tv3s run` on it resumes), run "
        "it on a local Ray (or --address) and print the commands that query and render the results. SRC: video "
        "files, folders of videos or frames (a sub-folder of video files is one video), globs, s3:// prefixes, "
        "WebDataset shards.",
    )
    parser.add_argument("sources", nargs="+", metavar="SRC", help="what to label (quote globs)")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="TV3S checkpoint (.pth), local or s3://")
    parser.add_argument("--out", required=True, metavar="OUTPUT", help="output folder or s3://bucket/prefix")
    parser.add_argument("--mode", choices=MODES, default="stream", help="stream (default) or clip")
    parser.add_argument("--actors", type=positive_int, default=1, metavar="N", help="model replicas (default 1)")
    parser.add_argument("--address", metavar="ADDR", help="a running Ray cluster HOST:PORT (default: a local Ray)")
    add_every_argument(parser)
    add_resize_argument(parser)
    parser.add_argument("--name", metavar="NAME", help="job name (default: OUTPUT's folder name)")
    parser.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_endpoint_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.label_spec import spec_location, spec_yaml
    from ..jobs.preflight import (
        PreflightError,
        check_checkpoint,
        check_inputs,
        check_ray_address,
        check_same_labeling,
    )
    from ..jobs.runner import JobError, run_job
    from ..pipeline.storage import Store
    from ..schemas.job import JobSpecError

    try:
        spec = spec_of(args)
    except JobSpecError as exc:  # a job name from --name or OUTPUT that is not one, say
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    spec_url = spec_location(spec.output)
    address = args.address or os.environ.get("RAY_ADDRESS")
    store = Store(spec.storage_options())
    try:
        check_inputs(spec, store)
        check_ray_address(address)
        check_checkpoint(spec, store)
        check_same_labeling(spec)
        store.write(spec_url, spec_yaml(spec).encode())
        print(f"job spec: {spec_url}")
        summary = run_job(spec, address, progress=not args.quiet, num_cpus=args.num_cpus)
    except (PreflightError, JobError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    from .run import nothing_labelled, print_summary

    print_summary(summary)
    if nothing_labelled(summary, spec, NAME):
        return 1
    print_next_steps(spec, spec_url, args.endpoint_url)
    return 0 if summary.state in ("finished", "cancelled") else 1


def spec_of(args: argparse.Namespace):
    """The job spec of the command line."""
    from ..jobs.label_spec import label_spec

    return label_spec(
        args.sources,
        args.checkpoint,
        args.out,
        args.mode,
        args.actors,
        args.every,
        args.resize,
        args.name,
        args.endpoint_url,
    )


def print_next_steps(spec, spec_url: str, endpoint_url: str | None) -> None:
    """The exact commands that resume, query and render this job's results."""
    endpoint = f" --endpoint-url {shlex.quote(endpoint_url)}" if endpoint_url else ""
    out = shlex.quote(spec.output)
    sql = f"SELECT video_id, frames, mean_confidence, errors FROM videos WHERE job_id = '{spec.name}'"
    video = _heaviest_video(spec) or "VIDEO_ID"
    movie = re.sub(r"[^A-Za-z0-9._=-]+", "_", video) + ".mp4"
    print("next:")
    print(f'  tv3s query {out} "{sql}"{endpoint}')  # a job name holds no character the shell expands
    print(f"  tv3s render {out} --job {spec.name} --video {shlex.quote(video)} --out {movie}{endpoint}")
    print(f"  tv3s run {shlex.quote(spec_url)}    # resume or repeat this job")


def _heaviest_video(spec) -> str | None:
    """The first video of the job's recorded plan (its longest), to name in the render command."""
    import pyarrow.parquet as pq

    from ..jobs.runner import job_paths, open_output

    output = open_output(spec)
    path = output.full(f"{job_paths(spec.name)['chains']}/part-00000.parquet")
    if not output.fs.exists(path):
        return None
    with output.fs.open(path, "rb") as f:
        ids = pq.read_table(f, columns=["video_id"])["video_id"].to_pylist()
    return ids[0] if ids else None
