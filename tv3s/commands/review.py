"""`tv3s review export|import`: frames worth a human look out to annotators, their corrections back as shards."""

from __future__ import annotations

import argparse
import json
import sys
import zipfile

from ..lifecycle.cvat import CvatError
from ..lifecycle.label_studio import LabelStudioError
from ..lifecycle.review_export import CVAT_ZIP, REVIEW, TASKS, ReviewError, export_review
from ..lifecycle.review_import import import_review, parse_classes
from ..lifecycle.review_pick import pick_frames
from ..lifecycle.sides import open_side
from ..pipeline.ingest.source_frames import SourceError
from ..pipeline.outputs.commit import CommitError, Output
from ..pipeline.outputs.query import QueryError
from ..pipeline.storage import StorageError, Store
from ..schemas.classes import DATASETS
from .common import positive_int
from .store_args import add_endpoint_argument, storage_options

NAME = "review"
_MISTAKES = (ReviewError, CvatError, LabelStudioError, SourceError, CommitError, StorageError, OSError)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="export the frames most worth a human look to CVAT / Label Studio, and import the corrections as shards",
        description="review export: pick frames (low confidence, flicker, rare classes; spread over videos and time) "
        "with the masks as pre-annotations. review import: the annotators' export back as training shards.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    _register_export(actions)
    _register_import(actions)


def _register_export(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "export",
        help="the frames most worth a look, as CVAT Segmentation mask 1.1 and Label Studio tasks",
        description=f"DEST (a new folder or s3:// prefix) gets images/, {CVAT_ZIP}, {TASKS}, "
        f"label-studio-config.xml and {REVIEW} (each frame picked and why).",
    )
    parser.add_argument("output", metavar="OUTPUT", help="output location of a job: a folder or s3://bucket/prefix")
    parser.add_argument("--to", required=True, metavar="DEST", help="a new folder or s3:// prefix")
    parser.add_argument("--frames", required=True, type=positive_int, metavar="N", help="frames to pick")
    parser.add_argument(
        "--min-gap", type=positive_int, default=15, metavar="G", help="frames between picks of a video (15)"
    )
    parser.add_argument("--per-video", type=positive_int, metavar="K", help="at most K frames of one video")
    parser.add_argument(
        "--rare-share",
        type=float,
        default=0.01,
        metavar="F",
        help="a class is rare under this share of all pixels (0.01)",
    )
    parser.add_argument(
        "--image-url", metavar="PREFIX", help="where Label Studio finds DEST/images (default: DEST/images)"
    )
    parser.add_argument("--job", metavar="ID", help="the job (needed when OUTPUT holds several)")
    add_endpoint_argument(parser)
    parser.set_defaults(run=run_export)


def _register_import(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "import",
        help="the annotators' export (CVAT .zip or folder, Label Studio .json) as training shards",
        description="Labels are matched to the model's classes by name (default: those review.json recorded). "
        "SHARDS (a new folder or s3:// prefix) gets shard-NNNNN.tar files in the layout tv3s train reads.",
    )
    parser.add_argument(
        "src", metavar="SRC", help="CVAT's Segmentation mask 1.1 .zip (or folder), or Label Studio's .json"
    )
    parser.add_argument("--review", required=True, metavar="DEST", help="the folder tv3s review export wrote")
    parser.add_argument("--to", required=True, metavar="SHARDS", help="a new folder or s3:// prefix")
    parser.add_argument(
        "--classes",
        metavar="NAME|FILE",
        help=f"the classes to train: {', '.join(DATASETS)}, or a file of names, one a line",
    )
    parser.add_argument("--shard-frames", type=positive_int, default=1000, metavar="N", help="samples per shard (1000)")
    add_endpoint_argument(parser)
    parser.set_defaults(run=run_import)


def run_export(args: argparse.Namespace) -> int:
    if not 0.0 <= args.rare_share <= 1.0:
        print(f"tv3s {NAME} export: error: --rare-share must be in [0, 1], got {args.rare_share}", file=sys.stderr)
        return 2
    options = storage_options(args)
    settings = {
        "frames": args.frames,
        "min_gap": args.min_gap,
        "per_video": args.per_video,
        "rare_share": args.rare_share,
    }
    try:
        side = open_side("OUTPUT", Output(args.output, options), args.job)
        picks = pick_frames(side.con, side.job_id, args.frames, args.min_gap, args.per_video, args.rare_share)
        result = export_review(side, picks, args.to, Store(options), settings, args.image_url)
    except QueryError as exc:
        print(f"tv3s {NAME} export: error: {exc}", file=sys.stderr)
        return 2
    except _MISTAKES as exc:
        print(f"tv3s {NAME} export: error: {exc}", file=sys.stderr)
        return 1
    reasons = {}
    for entry in result.frames:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda p: -p[1]))
    print(
        f"{len(result.frames)} frames for review under {result.dest} ({why}); each one and why in {REVIEW}"
        + (f" (asked {args.frames}: --min-gap/--per-video leave no more)" if len(picks) < args.frames else "")
    )
    for item in result.skipped:
        print(f"  skipped {item['video_id']} frame {item['frame_index']}: {item['error']}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    store = Store(storage_options(args))
    try:
        classes = parse_classes(args.classes) if args.classes else None
        result = import_review(args.src, args.review, args.to, store, classes, args.shard_frames)
    except (*_MISTAKES, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        print(f"tv3s {NAME} import: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{result.samples} annotated frames in {len(result.shards)} shard(s) under {args.to}; "
        f"{len(result.not_annotated)} not annotated, {len(result.empty)} with no labeled pixel (left out)"
    )
    return 0
