"""`tv3s synth --out DIR`: render synthetic driving videos with ground truth into training shards."""

from __future__ import annotations

import argparse
import sys

from ..pipeline.synthetic.training_data import write_synthetic_shards
from .common import positive_int

NAME = "synth"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="render synthetic driving videos with exact labels into WebDataset training shards",
        description="Each frame becomes a sample {video}/{frame:06d} with .jpg, .png (Cityscapes train ids) and .json.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder or URL (local or s3://)")
    parser.add_argument("--videos", type=positive_int, default=8)
    parser.add_argument("--frames", type=positive_int, default=60, help="frames per video")
    parser.add_argument("--height", type=positive_int, default=256)
    parser.add_argument("--width", type=positive_int, default=512)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first video (video i uses seed + i)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        paths = write_synthetic_shards(args.out, args.videos, args.frames, args.height, args.width, args.seed)
    except (ValueError, OSError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.videos} videos x {args.frames} frames into {len(paths)} shard(s) under {args.out}")
    return 0
