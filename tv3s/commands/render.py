"""`tv3s render OUTPUT --video ID --out FILE`: draw a video's masks over its frames, with a legend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..pipeline.ingest.source_frames import SourceError
from ..pipeline.outputs.commit import CommitError
from ..pipeline.outputs.query import QueryError, connect, resolve_job
from ..pipeline.outputs.render import RenderError, RenderOptions, render_lowest_confidence, render_video
from ..schemas.classes import DATASETS
from .common import positive_int
from .output_args import add_output_arguments, open_output, storage_options

NAME = "render"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="overlay a video's masks on its frames (.mp4/.gif/.png), or a sheet of the least confident frames",
        description="Draw committed masks over the source frames (re-read from where the frames table says) "
        "with a legend of the classes present. --out FILE.mp4 or .gif: every frame; .png: a sheet of "
        "evenly spaced frames. --lowest-confidence N: a .png sheet of the N least confident frames.",
    )
    add_output_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="a .mp4, .gif or .png file")
    parser.add_argument("--video", metavar="ID", help="the video to draw (with --lowest-confidence: only its frames)")
    parser.add_argument(
        "--lowest-confidence",
        type=positive_int,
        metavar="N",
        help="a review sheet of the N frames with the lowest mean confidence",
    )
    parser.add_argument("--job", metavar="ID", help="the job (needed when OUTPUT holds several)")
    parser.add_argument("--frames", type=_frame_range, metavar="A:B", help="only frames A..B (inclusive)")
    parser.add_argument("--tiles", type=positive_int, default=8, metavar="N", help="frames on a .png sheet (8)")
    parser.add_argument("--masks-only", action="store_true", help="draw the class colours alone, without sources")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the class colours (0.5)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of .mp4/.gif (10)")
    parser.add_argument("--width", type=positive_int, metavar="PX", help="scale frames to this width")
    parser.add_argument(
        "--classes",
        choices=("auto", *DATASETS),
        default="auto",
        help="names and colours: auto = the model's own, else VSPW (124) / Cityscapes (19) by size",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.video is None and args.lowest_confidence is None:
        print(f"tv3s {NAME}: error: pass --video ID, or --lowest-confidence N for a review sheet", file=sys.stderr)
        return 2
    if not 0.0 <= args.alpha <= 1.0:
        print(f"tv3s {NAME}: error: --alpha must be in [0, 1], got {args.alpha}", file=sys.stderr)
        return 2
    options = RenderOptions(args.alpha, args.masks_only, args.fps, args.width, args.classes, storage_options(args))
    try:
        con = connect(open_output(args))
        job = resolve_job(con, args.job)
        if args.lowest_confidence is not None:
            count = render_lowest_confidence(con, args.out, args.lowest_confidence, options, job, args.video)
        else:
            count = render_video(con, job, args.video, args.out, options, args.frames, args.tiles)
    except (RenderError, QueryError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    except (SourceError, CommitError, OSError, ValueError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({count} frames)")
    return 0


def _frame_range(text: str) -> tuple[int, int]:
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B (two frame indices), got {text!r}") from None
    if not 0 <= first <= last:
        raise argparse.ArgumentTypeError(f"need 0 <= A <= B, got {text!r}")
    return first, last
