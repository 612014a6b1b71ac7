"""`tv3s segment INPUT --out DIR`: pseudo-label one video file or frame folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..pipeline.local.layout import OutputExistsError, OutputLayout
from ..pipeline.local.segment import FramesError, SegmentOptions, open_video, segment
from ..pipeline.storage import StorageError, Store
from .common import (
    UsageError,
    add_model_arguments,
    add_run_arguments,
    check_weights_choice,
    load_model,
    random_weights_banner,
    resolve_device,
    run_options,
)

NAME = "segment"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="segment a video file or a folder of frames",
        description="Label one video as a job would (the same decoding, resize rule and label maps) and write "
        "DIR/masks/{frame:06d}.png label maps at source resolution, DIR/overlay/*.jpg, DIR/preview.png and "
        "DIR/summary.json. Many videos: tv3s label.",
    )
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="video file (.mp4 .mkv .webm .avi .mov) or frame folder, local or s3://",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    add_model_arguments(parser)
    add_run_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_segmentation(
        args.input, args.out, args.checkpoint, args.preset, args.random_weights, args.device, run_options(args), NAME
    )


def run_segmentation(
    source: str | Path,
    out_dir: Path,
    checkpoint: Path | None,
    preset: str | None,
    random_weights: bool,
    device: str,
    options: SegmentOptions,
    command: str,
) -> int:
    """Load the model, segment, report; the exit code is 0, 1 (bad input) or 2 (usage)."""
    try:
        torch_device = resolve_device(device)
        # cheap checks first, so a typo fails before a model is built
        check_weights_choice(checkpoint, random_weights)
        open_video(source, Store())
        OutputLayout(out_dir).prepare(options.overwrite, overlays=options.overlays)
        model, weights_info = load_model(checkpoint, preset, random_weights, torch_device)
        if weights_info["random_weights"]:
            print(random_weights_banner(), file=sys.stderr)
        summary = segment(model, source, out_dir, options, extra_summary=weights_info)
    except (UsageError, OutputExistsError) as exc:
        print(f"tv3s {command}: error: {exc}", file=sys.stderr)
        return 2
    except (FramesError, StorageError, ValueError, OSError) as exc:
        print(f"tv3s {command}: error: {exc}", file=sys.stderr)
        return 1
    print(report(summary, OutputLayout(out_dir)))
    return 0


def report(summary: dict[str, Any], layout: OutputLayout) -> str:
    """Where the outputs are, for the terminal."""
    first, last = summary["first_frame"], summary["last_frame"]
    every = f", every {summary['frame_stride']}th frame" if summary["frame_stride"] > 1 else ""
    lines = [f"segmented {summary['frames']} frames of {summary['input']}{every} -> {layout.root}"]
    lines.append(f"  masks:    {layout.mask(first)} .. {layout.mask(last).name}")
    if summary["outputs"]["overlays"]:
        lines.append(f"  overlays: {layout.overlay(first)} .. {layout.overlay(last).name}")
    lines.append(f"  preview:  {layout.preview}")
    lines.append(f"  summary:  {layout.summary}")
    timing = summary["timing"]
    width, height = summary["model_input"]
    lines.append(
        f"  model:    {summary['model_id']} ({summary['mode']} mode on {summary['device']}, input {width}x{height}), "
        f"{timing['frames_per_s']} frames/s"
    )
    for error in summary["errors"]:
        lines.append(f"  WARNING:  {error}")
    if summary.get("random_weights"):
        lines.append(random_weights_banner())
    return "\n".join(lines)
