"""`tv3s synth-eval --checkpoint PATH`: mIoU / mVC on held-out synthetic videos, per inference mode."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import positive_int

NAME = "synth-eval"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="score a checkpoint on held-out synthetic videos in stream, clip and single-frame mode",
        description="Renders videos from seeds the training data did not use (default 10000+) and reports "
        "mIoU and mVC_8/mVC_16 for each mode.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="PATH")
    parser.add_argument("--videos", type=positive_int, default=4)
    parser.add_argument("--frames", type=positive_int, default=30)
    parser.add_argument("--height", type=positive_int, default=192)
    parser.add_argument("--width", type=positive_int, default=384)
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the first held-out video")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the full results as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model import CheckpointError, build_model_from_checkpoint
    from ..pipeline.synthetic.heldout import evaluate_modes

    try:
        model = build_model_from_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    seeds = range(args.seed, args.seed + args.videos)
    results = evaluate_modes(model, seeds, args.frames, args.height, args.width)
    print(f"{args.videos} held-out videos x {args.frames} frames of {args.height}x{args.width} (seeds {seeds.start}..)")
    print(f"  {'mode':<8}{'mIoU':>8}{'mVC_8':>8}{'mVC_16':>8}")
    for mode, r in results.items():
        print(f"  {mode:<8}{r['mIoU']:>8.4f}{r['mVC_8']:>8.4f}{r['mVC_16']:>8.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
