"""`tv3s train --data SHARDS... --out DIR`: train or fine-tune TV3S on (frame, mask) shards."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .common import UsageError, positive_int, preset_config

NAME = "train"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="train or fine-tune TV3S on WebDataset shards of (frame .jpg, mask .png, .json) samples",
        description="The official recipe: AdamW, poly schedule with warm-up, clips t-9/t-6/t-3/t, "
        "0.5*CE(per-frame) + CE(Mamba output), ignore index 255. Resumes from DIR/latest.pth.",
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="SHARD", help="training shard paths or URLs")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, metavar="PATH", help="fine-tune from this checkpoint")
    source.add_argument("--preset", metavar="NAME", help="train from scratch: a preset or a JSON model config")
    parser.add_argument("--num-classes", type=positive_int, help="override the preset's number of classes")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--iters", type=positive_int, default=160_000)
    parser.add_argument("--batch", type=positive_int, default=2)
    parser.add_argument("--lr", type=float, default=6e-5)
    parser.add_argument("--warmup", type=int, default=1500, help="warm-up iterations")
    parser.add_argument("--crop", default="480x480", help="training crop HxW (default 480x480, official)")
    parser.add_argument("--scale", default="0.5,2.0", help="random scale range (default 0.5,2.0, official)")
    parser.add_argument(
        "--mamba-frames",
        choices=("last", "all"),
        default="last",
        help="supervise the Mamba output of the last clip frame (official) or of all frames",
    )
    parser.add_argument("--checkpoint-every", type=positive_int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-resume", action="store_true", help="start over even if DIR/latest.pth exists")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model import build_model, build_model_from_checkpoint
    from ..model.config import resolve_config
    from ..model.training import TrainConfig, train
    from ..pipeline.synthetic.training_data import Augment, ClipSampler, read_training_shards

    try:
        crop = tuple(int(v) for v in args.crop.lower().split("x"))
        scale = tuple(float(v) for v in args.scale.split(","))
        if len(crop) != 2 or len(scale) != 2:
            raise UsageError(
                f"--crop must look like 480x480 and --scale like 0.5,2.0 (got {args.crop!r}, {args.scale!r})"
            )
        if args.checkpoint:
            model = build_model_from_checkpoint(args.checkpoint)
        else:
            cfg = resolve_config(preset_config(args.preset))
            if args.num_classes:
                cfg = dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, num_classes=args.num_classes))
            model = build_model(cfg)
        videos = read_training_shards(args.data)
        sampler = ClipSampler(videos, Augment(crop=crop, scale=scale), seed=args.seed)
        cfg = TrainConfig(
            iterations=args.iters,
            batch_size=args.batch,
            lr=args.lr,
            warmup_iters=args.warmup,
            mamba_frames=args.mamba_frames,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
        )
        final = train(
            model, sampler.batch, cfg, args.out, resume=not args.no_resume, meta_extra={"command": " ".join(sys.argv)}
        )
    except UsageError as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    print(f"trained {sum(len(v) for v in videos.values())} frames of {len(videos)} videos -> {final}")
    print(f"  loss curve: {args.out / 'loss.png'}   log: {args.out / 'log.jsonl'}")
    return 0
