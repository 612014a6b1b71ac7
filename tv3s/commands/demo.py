"""`tv3s demo --out DIR`: a real labeling job end to end on this machine, in one command.

Generates a small archive of synthetic driving videos (with ground truth), writes it as
WebDataset shards to a local S3-compatible server (moto on 127.0.0.1, when the dev extra
is installed; a local folder otherwise), labels it with a local Ray cluster through
`tv3s run`'s code path using the shipped model, prints a query of the result and its
mIoU against the ground truth, writes an overlay video and a review sheet, and copies the
output to DIR/labels so it can be queried afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import numpy as np

    from ..jobs.runner import JobSummary
    from ..schemas.job import JobSpec

NAME = "demo"
SEGMENT_FRAMES = 12


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="run a real labeling job end to end: synthetic archive -> local S3 -> Ray actors -> query, overlay",
        description="Everything stays on this machine (a moto S3 server on 127.0.0.1 and a local Ray). "
        "See also demo-clip (one clip, no Ray).",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--videos", type=int, default=4, help="videos in the archive (4)")
    parser.add_argument("--frames", type=int, default=36, help="frames per video (36, in segments of 12)")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--actors", type=int, default=2, help="Ray actors (2)")
    parser.add_argument("--no-s3", action="store_true", help="keep the archive and output in DIR, not local S3")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR's previous demo")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            print(f"tv3s {NAME}: error: {out} is not empty; pass --overwrite or choose another --out", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    with _object_store(args.no_s3, out) as (root, options, env):
        os.environ.update(env)  # credentials reach the Ray workers the usual way: the environment
        return _demo(args, out, root, options)


def _demo(args: argparse.Namespace, out: Path, root: str, options: dict) -> int:
    """The demo's stages in order; exit status 0 only if the job finished."""
    from ..jobs.runner import open_output
    from ..pipeline.outputs.query import connect

    shards, truth = _write_archive(args, root, options)
    spec = _job_spec(args, root, options, shards)
    summary = _label(args, out, spec)
    output = open_output(spec)
    con = connect(output)
    _print_videos(con)
    result = _evaluate(con, truth)
    _render(con, out, sorted(truth)[0], options)
    if root.startswith("s3://"):
        output.fs.get(output.full(""), str(out / "labels"), recursive=True)
    (out / "summary.json").write_text(
        json.dumps(
            {"job": summary.__dict__, "ground_truth": {k: result[k] for k in ("mIoU", "mVC_8", "mVC_16")}},
            indent=1,
            default=str,
        )
    )
    print(f'results copied to {out / "labels"}: tv3s query {out / "labels"} "SELECT * FROM videos"')
    return 0 if summary.state == "finished" else 1


def _write_archive(args: argparse.Namespace, root: str, options: dict) -> tuple[list[str], dict[str, np.ndarray]]:
    """Stage 1: synthetic videos as shards under ``root``/archive; (shard URLs, ground-truth labels by video)."""
    from ..pipeline.storage import Store
    from ..pipeline.synthetic.archive import write_synthetic_archive

    store = Store(options)
    print(f"1/5 writing {args.videos} synthetic videos x {args.frames} frames as shards to {root}/archive")
    return write_synthetic_archive(
        root, store, args.videos, args.frames, args.height, args.width, segment_frames=SEGMENT_FRAMES
    )


def _job_spec(args: argparse.Namespace, root: str, options: dict, shards: list[str]) -> JobSpec:
    """The job `tv3s run` would get: the shipped model streaming over the shards, output beside the archive."""
    from .. import DEMO_CHECKPOINT
    from ..schemas.job import JobSpec

    endpoint = options.get("client_kwargs", {}).get("endpoint_url")
    return JobSpec.model_validate(
        {
            "name": "demo",
            "inputs": {"shards": shards, "resize": "none"},
            "model": {"checkpoint": str(DEMO_CHECKPOINT), "mode": "stream"},
            "output": f"{root}/labels",
            "endpoint_url": endpoint,
            "resources": {"actors": args.actors, "cpus_per_actor": 1, "chunk_frames": 6},
            "state": {"checkpoint_every": 1},
        }
    )


def _label(args: argparse.Namespace, out: Path, spec: JobSpec) -> JobSummary:
    """Stage 2: the spec saved as ``out``/job.yaml, then run on a local Ray cluster."""
    from ..jobs.runner import run_job

    (out / "job.yaml").write_text(_yaml(spec))
    print(f"2/5 labeling with {args.actors} Ray actors (spec: {out / 'job.yaml'})")
    summary = run_job(spec, progress=True, num_cpus=max(2, args.actors))
    print(
        f"    {summary.state}: {summary.frames} frames in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.1f} frames/s), {summary.errors} errors"
    )
    return summary


def _print_videos(con: duckdb.DuckDBPyConnection) -> None:
    """Stage 3: the per-video summary, as the printed `tv3s query` command would show it (rounded)."""
    from ..pipeline.outputs.query import format_table, run_query

    print('3/5 tv3s query OUTPUT "SELECT video_id, frames, mean_confidence, temporal_agreement_mean FROM videos"')
    table = run_query(
        con,
        "SELECT video_id, frames, round(mean_confidence, 3) AS mean_confidence, "
        "round(temporal_agreement_mean, 3) AS temporal_agreement_mean FROM videos ORDER BY 1",
    )
    print(format_table(table))


def _evaluate(con: duckdb.DuckDBPyConnection, truth: dict[str, np.ndarray]) -> dict:
    """Stage 4: the written masks scored against the generator's ground truth (mIoU, video consistency)."""
    from ..pipeline.evaluation.metrics import Evaluation
    from ..pipeline.outputs.masks import decode_mask_png
    from ..pipeline.synthetic.scenes import NUM_CLASSES

    evaluation = Evaluation(NUM_CLASSES)
    for video_id, labels in truth.items():
        rows = con.sql("SELECT mask_png FROM frames WHERE video_id = ? ORDER BY frame_index", params=[video_id])
        evaluation.start_video()
        for (png,), gt in zip(rows.fetchall(), labels, strict=True):
            evaluation.add_frame(gt, decode_mask_png(png))
    result = evaluation.result()
    print(f"4/5 against the generator's ground truth: mIoU {result['mIoU']:.3f}, mVC_8 {result['mVC_8']:.3f}")
    return result


def _render(con: duckdb.DuckDBPyConnection, out: Path, video_id: str, options: dict) -> None:
    """Stage 5: an overlay video and contact sheet of ``video_id``, and a sheet of the least confident frames."""
    from ..pipeline.outputs.render import RenderOptions, render_lowest_confidence, render_video

    render = RenderOptions(storage_options=options)
    render_video(con, "demo", video_id, out / "overlay.mp4", render, sheet_tiles=8)
    render_video(con, "demo", video_id, out / "overlay.png", render, sheet_tiles=8)
    render_lowest_confidence(con, out / "review.png", 8, render)
    print(f"5/5 overlay {out / 'overlay.mp4'}, sheet {out / 'overlay.png'}, review {out / 'review.png'}")


def _yaml(spec) -> str:
    import yaml

    return yaml.safe_dump(json.loads(spec.model_dump_json(exclude_defaults=True)), sort_keys=False)


@contextlib.contextmanager
def _object_store(no_s3: bool, out: Path):
    """(root URL, storage options, environment): a bucket on a local S3 server, or a folder."""
    local = (str(out.resolve()), {}, {})
    if no_s3:
        yield local
        return
    from ..local_s3 import s3_server

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(s3_server())
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"    (no local S3 server: {exc}; using {out})")
            yield local
            return
        print(f"0/5 local S3 server (moto) at {server.endpoint_url}, pid {server.pid}")
        yield server.make_bucket("tv3s-demo"), {"client_kwargs": {"endpoint_url": server.endpoint_url}}, server.env
