"""`tv3s index SHARDS_URL... --out INDEX_URI`: index WebDataset shards for ordered, ranged reads."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator

import pyarrow as pa

from ..pipeline.ingest.index import default_errors_uri, write_errors, write_table
from ..pipeline.ingest.inputs import index_inputs
from ..pipeline.ingest.order import order_index
from ..pipeline.ingest.partitions import build_partitioned_index, index_partitions
from ..pipeline.ingest.samples import DEFAULT_KEY_PATTERN, key_regex
from ..pipeline.storage import StorageError
from .store_args import add_store_arguments, error_summary, print_first_errors, store_from_args

NAME = "index"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="index WebDataset shards or raw video files and folders (local or s3://) into a Parquet table",
        description="Scan tar headers (no decoding) and probe raw video files (ranged reads) and write one row per "
        "sample: video id, segment or frame index, shard or file URL, member names, byte offsets and sizes. "
        "Problems are written to an errors table.",
    )
    parser.add_argument(
        "shards",
        nargs="+",
        metavar="SHARDS_URL",
        help="shard URLs, brace lists (shard-{000..099}.tar) or globs ('s3://b/p/*.tar'); video files, "
        "folders or s3:// prefixes of them (--partitions: shards only)",
    )
    parser.add_argument("--out", required=True, metavar="INDEX_URI", help="Parquet file to write (local or s3://)")
    parser.add_argument("--errors", metavar="URI", help="errors table (default: INDEX_URI with .errors.parquet)")
    parser.add_argument(
        "--key-pattern",
        default=DEFAULT_KEY_PATTERN,
        metavar="P",
        help=f"video id and frame number of frame samples without json (default {DEFAULT_KEY_PATTERN})",
    )
    parser.add_argument("--workers", type=int, default=8, metavar="N", help="shards scanned at once (default 8)")
    parser.add_argument(
        "--partitions",
        type=int,
        metavar="P",
        help="write INDEX_URI as a folder of P partitions (whole videos each, by a hash of the video id), so "
        "jobs plan one partition at a time: for archives of millions of samples (about 1M samples a partition)",
    )
    parser.add_argument(
        "--grow",
        action="store_true",
        help="with --partitions: keep the index already at INDEX_URI (and its partition count), add the "
        "shards it does not hold yet and re-scan those re-written since (their version changed), scanning "
        "only those: for an archive that grows by new shards and re-uploads",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="scan on the Ray cluster at ADDR (host:port, or auto): batches of shards become tasks spread "
        "over its CPUs, for archives of many shards; without it, this process scans --workers at a time",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_store_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when an index was written (bad inputs are in the errors table), 1 when none could be, 2 on misuse."""
    try:
        key_regex(args.key_pattern)
    except ValueError as exc:
        print(f"tv3s index: error: --key-pattern: {exc}", file=sys.stderr)
        return 2
    if args.partitions is not None and args.partitions < 1:
        print(f"tv3s index: error: --partitions must be at least 1, got {args.partitions}", file=sys.stderr)
        return 2
    if args.grow and not args.partitions:
        print("tv3s index: error: --grow adds to a partitioned index: give --partitions too", file=sys.stderr)
        return 2
    if args.partitions and not all(p.lower().endswith(".tar") for p in args.shards):
        print(
            "tv3s index: error: --partitions indexes shards (.tar) only: index video files and folders without it, "
            "or pack them into shards first (tv3s shards pack)",
            file=sys.stderr,
        )
        return 2
    store = store_from_args(args)
    from ..jobs.preflight import PreflightError, check_ray_address

    try:
        check_ray_address(args.address)
    except PreflightError as exc:
        print(f"tv3s index: error: {exc}", file=sys.stderr)
        return 1
    with _cluster(args.address):
        return _index(args, store)


@contextlib.contextmanager
def _cluster(address: str | None) -> Iterator[None]:
    """Connected to the Ray cluster at `address` for the scan (nothing without one, or when this
    process is connected already)."""
    import ray

    if address is None or ray.is_initialized():
        yield
        return
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _index(args: argparse.Namespace, store) -> int:
    ray_from = None if args.address is None else 1
    try:
        if args.partitions:
            result = build_partitioned_index(
                args.shards,
                args.out,
                store,
                args.partitions,
                args.key_pattern,
                args.workers,
                not args.no_progress,
                ray_from,
                args.grow,
            )
            samples, videos, runs, chain_errors = _plan_summary(index_partitions(args.out, store))
        else:
            result = index_inputs(
                args.shards, store, args.key_pattern, args.workers, progress=not args.no_progress, ray_from=ray_from
            )
            write_table(result.table, args.out, store)
            samples, videos, runs, chain_errors = _plan_summary([result.table])
        errors = result.errors + chain_errors
        errors_uri = args.errors or default_errors_uri(args.out)
        write_errors(errors, errors_uri, store)
    except StorageError as exc:
        print(f"tv3s index: error: cannot write the index: {exc}", file=sys.stderr)
        return 1
    print(
        f"indexed {samples} samples of {videos} videos from {result.shards} shards and files "
        f"({result.members} members) -> {args.out}"
    )
    print(f"  runs:   {runs} (a video is split at each gap)")
    print(f"  errors: {error_summary(errors)} -> {errors_uri}")
    print_first_errors(errors, sys.stderr)
    if not samples:
        print("tv3s index: error: no sample could be indexed (the first errors above say why)", file=sys.stderr)
    return 0 if samples else 1


def _plan_summary(partitions: Iterable[pa.Table]) -> tuple[int, int, int, list]:
    """Samples, videos, runs and the planning errors (gaps, duplicates), one partition at a time."""
    samples = videos = runs = 0
    errors: list = []
    for table in partitions:
        ordered, found = order_index(table)
        samples += table.num_rows
        videos += int(ordered.video_start.sum())
        runs += int(ordered.run_start.sum())
        errors += found
    return samples, videos, runs, errors
