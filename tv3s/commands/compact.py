"""`tv3s compact OUTPUT`: Delta optimize + checkpoint + vacuum of every table of an output."""

from __future__ import annotations

import argparse
import sys

from ..pipeline.outputs.commit import CommitError
from ..pipeline.outputs.compact import DEFAULT_GRACE_S, TARGET_BYTES, compact
from .output_args import add_output_arguments, open_output

NAME = "compact"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="merge an output's small parts into large ones (same rows), then delete unneeded files",
        description="Rewrite the small files of each Delta table of OUTPUT into files of about --target-mb "
        "(Delta's optimize: one commit per table, so a crash leaves the table as it was), checkpoint the "
        "tables' logs, and delete files no reader needs once older than --grace-minutes (rounded up to "
        "whole hours: Delta's vacuum retention).",
    )
    add_output_arguments(parser)
    parser.add_argument(
        "--target-mb",
        type=float,
        default=TARGET_BYTES / 2**20,
        metavar="MB",
        help=f"size of the merged files (default {TARGET_BYTES >> 20})",
    )
    parser.add_argument(
        "--grace-minutes",
        type=float,
        default=DEFAULT_GRACE_S / 60,
        metavar="MIN",
        help="keep replaced and abandoned files this long, for readers and writers still using "
        f"them (default {DEFAULT_GRACE_S / 60:g}; 0 only when nothing else uses the output)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.target_mb <= 0 or args.grace_minutes < 0:
        print(f"tv3s {NAME}: error: --target-mb must be > 0 and --grace-minutes >= 0", file=sys.stderr)
        return 2
    try:
        report = compact(open_output(args), int(args.target_mb * 2**20), args.grace_minutes * 60)
    except (CommitError, OSError, ValueError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    for t in report.tables:
        if t.files_in:
            print(
                f"{t.table}: merged {t.files_in} files ({t.bytes_in / 2**20:.1f} MB) into {t.files_out} "
                f"({t.bytes_out / 2**20:.1f} MB)"
            )
    if not report.files_in:
        print("nothing to merge")
    print(f"deleted {report.deleted} files no reader needs")
    return 0
