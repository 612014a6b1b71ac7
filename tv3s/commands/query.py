"""`tv3s query OUTPUT "SQL"`: read-only SQL over a job's committed tables frames, videos, errors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..lifecycle.tables import register_other_tables
from ..pipeline.outputs.commit import CommitError
from ..pipeline.outputs.query import FORMATS, QueryError, connect, format_table, run_query, write_result
from .common import positive_int
from .output_args import add_output_arguments, open_output

NAME = "query"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="SQL over an output's frames, videos and errors tables (read-only)",
        description="Run one SELECT over the committed parts of OUTPUT with DuckDB. Tables: frames (one row "
        "per labeled frame), videos (one row per finished video), errors (one row per failed input).",
    )
    add_output_arguments(parser)
    parser.add_argument(
        "sql", metavar="SQL", help='e.g. "SELECT video_id, avg(mean_confidence) FROM frames GROUP BY 1"'
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: a table in the terminal")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the result here (required for parquet)")
    parser.add_argument("--max-rows", type=positive_int, default=50, metavar="N", help="rows shown as a table (50)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        output = open_output(args)
        con = connect(output)
        register_other_tables(con, output)  # a diff's confusion table beside its frames and videos
        table = run_query(con, args.sql)
        if args.format == "table" and args.out is None:
            text = format_table(table, args.max_rows) + "\n"
        else:
            text = write_result(table, "csv" if args.format == "table" else args.format, args.out)
    except QueryError as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    except (CommitError, OSError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    if text is not None:  # written outside the try: a closed stdout is not an error of the output's
        sys.stdout.write(text)
    else:
        print(f"wrote {table.num_rows} rows to {args.out}", file=sys.stderr)
    return 0
