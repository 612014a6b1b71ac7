"""`tv3s export OUTPUT --where PRED --to DEST`: selected frames as WebDataset training shards."""

from __future__ import annotations

import argparse
import sys

from ..pipeline.outputs.commit import CommitError
from ..pipeline.outputs.export import ExportError, export
from ..pipeline.outputs.query import QueryError, connect, resolve_job
from ..pipeline.storage import StorageError, Store
from .common import positive_int
from .output_args import add_output_arguments, open_output, storage_options

NAME = "export"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="write the frames a SQL predicate selects as training shards (frame .jpg, mask .png, row .json)",
        description="Source frames are re-read from where the frames table says; masks are copied as "
        "committed. DEST (a folder or s3://bucket/prefix) gets shard-NNNNN.tar files in the layout "
        "tv3s train reads. Re-running the same export finishes an interrupted one.",
    )
    add_output_arguments(parser)
    parser.add_argument(
        "--where",
        required=True,
        metavar="PRED",
        help="a SQL condition on one frames row, e.g. \"mean_confidence > 0.9 AND video_id LIKE 'cam%%'\" "
        "(columns, operators, functions; no subquery, set operation or clause after it)",
    )
    parser.add_argument("--to", required=True, metavar="DEST", help="destination folder or s3:// prefix")
    parser.add_argument("--job", metavar="ID", help="the job (needed when OUTPUT holds several)")
    parser.add_argument("--shard-frames", type=positive_int, default=1000, metavar="N", help="samples per shard (1000)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the frames (95)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.quality <= 100:
        print(f"tv3s {NAME}: error: --quality must be in 1..100, got {args.quality}", file=sys.stderr)
        return 2
    try:
        con = connect(open_output(args))
        job = resolve_job(con, args.job)
        result = export(con, job, args.where, args.to, Store(storage_options(args)), args.shard_frames, args.quality)
    except (ExportError, QueryError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    except (CommitError, StorageError, OSError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{result.samples_written} of {result.frames_selected} selected frames in {len(result.shards)} shard(s) "
        f"under {args.to} ({result.shards_written} written now)"
    )
    for item in result.skipped[:10]:
        print(f"  skipped {item['video_id']} frame {item['frame_index']}: {item['error']}", file=sys.stderr)
    if len(result.skipped) > 10:
        print(f"  ... {len(result.skipped) - 10} more skipped frames, listed in {args.to}/_export/", file=sys.stderr)
    return 0
