"""`tv3s diff OUTPUT_A OUTPUT_B --out DIFF`: how B's labels of the same videos differ from A's."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..lifecycle.diff import DiffError, DiffSummary, diff_outputs
from ..lifecycle.diff_render import render_most_changed
from ..lifecycle.sides import open_side
from ..pipeline.ingest.source_frames import SourceError
from ..pipeline.outputs.commit import CommitError, Output
from ..pipeline.outputs.query import QueryError
from ..pipeline.storage import StorageError, Store
from .common import positive_int
from .store_args import add_endpoint_argument, storage_options

NAME = "diff"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="compare two labelings of the same videos: agreement, per-class IoU, class confusion, most changed frames",
        description="Compare B's masks against A's frame by frame. DIFF (a new folder or s3:// prefix) gets "
        "Delta tables frames (per frame: agreement, per-class IoU), videos (per video, with frames labeled on "
        "one side only counted) and confusion (per video: pixels from class -> to class), and _diff.json (the "
        'overall figures). Read them with tv3s query DIFF "SQL".',
    )
    parser.add_argument("output_a", metavar="OUTPUT_A", help="the reference labels: a job's output folder or s3:// URL")
    parser.add_argument("output_b", metavar="OUTPUT_B", help="the labels compared against them")
    parser.add_argument("--out", required=True, metavar="DIFF", help="a new folder or s3:// prefix for the tables")
    parser.add_argument("--job-a", metavar="ID", help="A's job (needed when OUTPUT_A holds several)")
    parser.add_argument("--job-b", metavar="ID", help="B's job (needed when OUTPUT_B holds several)")
    parser.add_argument(
        "--render", type=positive_int, metavar="N", help="draw the N most changed frames as A | B | difference PNGs"
    )
    parser.add_argument("--masks-only", action="store_true", help="draw the sheets without re-reading the sources")
    add_endpoint_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = storage_options(args)
    try:
        a = open_side("A", Output(args.output_a, options), args.job_a)
        b = open_side("B", Output(args.output_b, options), args.job_b)
        dest = Output(args.out, options)
        summary = diff_outputs(a, b, dest, progress=sys.stderr.isatty())
        sheets = []
        if args.render:
            classes = a.classes()
            sheets = render_most_changed(a, b, dest, classes, args.render, args.masks_only, Store(options))
    except QueryError as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    except (DiffError, SourceError, CommitError, StorageError, OSError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    print(report(summary, args.out))
    for path in sheets:
        print(f"  sheet {path}")
    return 0


def report(summary: DiffSummary, where: str, moves: int = 5) -> str:
    """A few lines a person reads first: coverage, agreement, mIoU and the largest class moves."""
    figures = summary.to_json()
    lines = [
        f"videos: {figures['videos']['both']} on both sides, {figures['videos']['only_a']} only in A, "
        f"{figures['videos']['only_b']} only in B",
        f"frames compared: {figures['frames_compared']} ({figures['frames_only_a']} only in A, "
        f"{figures['frames_only_b']} only in B)",
    ]
    if figures["agreement"] is not None:
        lines.append(
            f"pixel agreement {figures['agreement']:.4f}, mIoU of B against A {figures['mean_iou']:.4f}, "
            f"most changed frame {figures['min_frame_agreement']:.4f}"
        )
    matrix = summary.matrix.copy()
    np.fill_diagonal(matrix, 0)
    names = summary.class_names
    for flat in np.argsort(matrix, axis=None)[::-1][:moves]:
        i, j = np.unravel_index(flat, matrix.shape)
        if matrix[i, j]:
            lines.append(f"  {names[i]} -> {names[j]}: {int(matrix[i, j])} pixels")
    lines.append(f'tables frames, videos, confusion under {where}; e.g. tv3s query {where} "SELECT * FROM videos"')
    return "\n".join(lines)
