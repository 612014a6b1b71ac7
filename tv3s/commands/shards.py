"""`tv3s shards pack SRC DEST`: bring a folder of videos or frame folders in as WebDataset shards."""

from __future__ import annotations

import argparse
import re
import sys

from ..pipeline.ingest.pack import PackOptions, pack
from ..pipeline.storage import StorageError
from .store_args import add_store_arguments, error_summary, store_from_args

NAME = "shards"
UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def byte_size(text: str) -> int:
    """'1GB', '512MiB', '2000000' -> bytes (argparse type)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 1GB, 512MiB or 2000000")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(NAME, help="WebDataset shard tools (pack)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    packer = actions.add_parser(
        "pack",
        help="pack a folder (or s3:// prefix) of videos or frame folders into shards",
        description="A video file in SRC is a video; a sub-folder of video files is one video whose files are "
        "consecutive segments; a folder of images is one frame sequence. Bytes are copied as they are.",
    )
    packer.add_argument("src", metavar="SRC", help="folder or s3:// prefix of videos and frame folders")
    packer.add_argument("dest", metavar="DEST", help="folder or s3:// prefix for the shards")
    packer.add_argument(
        "--max-size",
        type=byte_size,
        default=PackOptions.max_size,
        metavar="SIZE",
        help="bytes per shard, e.g. 1GB or 512MiB (default 1GiB)",
    )
    packer.add_argument(
        "--max-count",
        type=int,
        default=PackOptions.max_count,
        metavar="N",
        help=f"samples per shard (default {PackOptions.max_count})",
    )
    packer.add_argument(
        "--segment-seconds",
        type=float,
        metavar="S",
        help="cut videos into segments of about S seconds at key frames (no re-encoding)",
    )
    packer.add_argument("--prefix", default=PackOptions.prefix, help="shard file name prefix (default shard)")
    packer.add_argument("--overwrite", action="store_true", help="replace shards with the same prefix in DEST")
    packer.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_store_arguments(packer)
    packer.set_defaults(run=run_pack)


def run_pack(args: argparse.Namespace) -> int:
    options = PackOptions(args.max_size, args.max_count, args.segment_seconds, args.prefix)
    try:
        result = pack(
            args.src, args.dest, store_from_args(args), options, progress=not args.no_progress, overwrite=args.overwrite
        )
    except (FileNotFoundError, FileExistsError, StorageError) as exc:
        print(f"tv3s shards pack: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, StorageError) else 2
    print(f"packed {result.samples} samples of {result.videos} videos into {len(result.shards)} shards")
    if result.shards:
        print(f"  shards: {result.pattern}")
        print(f"  next:   tv3s index '{result.pattern}' --out INDEX.parquet")
    for error in result.errors:
        print(f"  skipped: {error}", file=sys.stderr)
    print(f"  errors: {error_summary(result.errors)}")
    return 0 if result.samples else 1
