"""`tv3s segment INPUT --out DIR`: pseudo-label one video file or frame folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..pipeline.local.frames import FramesError, probe_frames
from ..pipeline.local.layout import OutputExistsError, OutputLayout
from ..pipeline.local.segment import SegmentOptions, segment
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
        description="Write DIR/masks/{frame:06d}.png label maps at source resolution, DIR/overlay/*.jpg, "
        "DIR/preview.png and DIR/summary.json.",
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help="video (.mp4 .mkv .webm .avi .mov) or frame folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    add_model_arguments(parser)
    add_run_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_segmentation(
        args.input, args.out, args.checkpoint, args.preset, args.random_weights, args.device, run_options(args), NAME
    )


def run_segmentation(
    source: Path,
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
        probe_frames(source)
        OutputLayout(out_dir).prepare(options.overwrite, overlays=options.overlays)
        model, weights_info = load_model(checkpoint, preset, random_weights, torch_device)
        if weights_info["random_weights"]:
            print(random_weights_banner(), file=sys.stderr)
        summary = segment(model, source, out_dir, options, extra_summary=weights_info)
    except (UsageError, OutputExistsError) as exc:
        print(f"tv3s {command}: error: {exc}", file=sys.stderr)
        return 2
    except (FramesError, ValueError, OSError) as exc:
        print(f"tv3s {command}: error: {exc}", file=sys.stderr)
        return 1
    print(report(summary, OutputLayout(out_dir)))
    return 0


def report(summary: dict[str, Any], layout: OutputLayout) -> str:
    """Where the outputs are, for the terminal."""
    frames = summary["frames"]
    lines = [f"segmented {frames} frames of {summary['input']} -> {layout.root}"]
    if frames:
        lines.append(f"  masks:    {layout.mask(0)} .. {layout.mask(frames - 1).name}")
        if summary["outputs"]["overlays"]:
            lines.append(f"  overlays: {layout.overlay(0)} .. {layout.overlay(frames - 1).name}")
        lines.append(f"  preview:  {layout.preview}")
    lines.append(f"  summary:  {layout.summary}")
    timing = summary["timing"]
    lines.append(
        f"  model:    {summary['model_id']} ({summary['mode']} mode on {summary['device']}), "
        f"{timing['frames_per_s']} frames/s"
    )
    if summary.get("warning_frame_count"):
        lines.append(f"  WARNING:  {summary['warning_frame_count']}")
    if summary.get("random_weights"):
        lines.append(random_weights_banner())
    return "\n".join(lines)
