"""`tv3s demo --out DIR`: segment a generated driving-like clip, end to end, in one command.

It exercises exactly the `segment` code path (video decoding included) on an
input that needs no download, so it doubles as an installation check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..pipeline.frames import generate_demo_clip
from ..pipeline.layout import OutputExistsError, OutputLayout
from ..pipeline.video_write import write_video
from .common import DEFAULT_PRESET, add_model_arguments, add_run_arguments, positive_int, run_options
from .segment import run_segmentation

NAME = "demo"
VIDEO_NAME = "demo.mp4"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="generate a synthetic clip and segment it (random weights unless --checkpoint)",
        description=f"Write DIR/{VIDEO_NAME} (a generated driving-like clip) and segment it like `tv3s segment`.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--frames", type=positive_int, default=24, help="clip length (default 24)")
    parser.add_argument("--height", type=positive_int, default=256, help="frame height, even (default 256)")
    parser.add_argument("--width", type=positive_int, default=448, help="frame width, even (default 448)")
    parser.add_argument("--fps", type=float, default=12.0, help="frame rate of the clip (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    add_model_arguments(parser, default_preset=DEFAULT_PRESET)
    add_run_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    layout = OutputLayout(args.out)
    options = run_options(args)
    try:
        layout.prepare(args.overwrite, overlays=options.overlays)  # refuse before writing anything
        clip = generate_demo_clip(args.frames, args.height, args.width, args.seed)
        video = write_video(args.out / VIDEO_NAME, clip, fps=args.fps)
    except (OutputExistsError, ValueError) as exc:  # existing results, odd or tiny frame sizes
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the demo clip {video} ({args.frames} frames, {args.width}x{args.height})")
    return run_segmentation(
        video,
        args.out,
        args.checkpoint,
        args.preset,
        random_weights=args.checkpoint is None,
        device=args.device,
        options=options,
        command=NAME,
    )
