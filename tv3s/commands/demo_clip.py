"""`tv3s demo-clip --out DIR`: segment one synthetic driving clip (no Ray), end to end, in one command.

It exercises exactly the `segment` code path (video decoding included) on an input that
needs no download, with the small model the repository ships (trained by `tv3s train` on
synthetic scenes of the same generator, never on the demo's seed), so the masks are right.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import DEMO_CHECKPOINT
from ..pipeline.local.layout import OutputExistsError, OutputLayout
from ..pipeline.outputs.video_write import write_video
from ..pipeline.synthetic.scenes import render_scene
from .common import DEFAULT_PRESET, add_model_arguments, add_run_arguments, positive_int, run_options
from .segment import run_segmentation

NAME = "demo-clip"
VIDEO_NAME = "demo.mp4"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="generate a synthetic clip and segment it (random weights unless --checkpoint)",
        description=f"Write DIR/{VIDEO_NAME} (a generated driving-like clip) and segment it like `tv3s segment`.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--frames", type=positive_int, default=36, help="clip length (default 36)")
    parser.add_argument("--height", type=positive_int, default=192, help="frame height, even (default 192)")
    parser.add_argument("--width", type=positive_int, default=384, help="frame width, even (default 384)")
    parser.add_argument("--fps", type=float, default=12.0, help="frame rate of the clip (default 12)")
    parser.add_argument("--seed", type=int, default=20_000, help="scene seed (default 20000, not a training seed)")
    add_model_arguments(parser, default_preset=DEFAULT_PRESET)
    # the shipped model was trained on synthetic frames of the clip's own size: labelled at that size
    add_run_arguments(parser, resize_default="none")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    layout = OutputLayout(args.out)
    options = run_options(args)
    try:
        layout.prepare(args.overwrite, overlays=options.overlays)  # refuse before writing anything
        clip, _ = render_scene(args.seed, args.frames, args.height, args.width)
        video = write_video(args.out / VIDEO_NAME, clip, fps=args.fps)
    except (OutputExistsError, ValueError) as exc:  # existing results, odd or tiny frame sizes
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the demo clip {video} ({args.frames} frames, {args.width}x{args.height})")
    checkpoint = args.checkpoint
    if checkpoint is None and not args.random_weights and DEMO_CHECKPOINT.is_file():
        checkpoint = DEMO_CHECKPOINT
    return run_segmentation(
        video,
        args.out,
        checkpoint,
        args.preset,
        random_weights=checkpoint is None,
        device=args.device,
        options=options,
        command=NAME,
    )
