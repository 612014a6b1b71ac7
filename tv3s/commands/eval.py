"""`tv3s eval OUTPUT [--ground-truth GT_URL]`: mIoU and mVC_8/mVC_16 against label PNGs, or,
without ground truth, the per-video distribution of frame-to-frame agreement."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pyarrow as pa

from ..pipeline.evaluation.evaluate import EvalError, agreement_distribution, evaluate_against_ground_truth
from ..pipeline.outputs.commit import CommitError
from ..pipeline.outputs.query import QueryError, connect, format_table, resolve_job
from .output_args import add_output_arguments, open_output, storage_options

NAME = "eval"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="mIoU and mVC_8/mVC_16 against ground truth, or temporal agreement without it",
        description="With --ground-truth: mIoU (mmseg's, as the paper reports it) and VSPW's mVC_8/mVC_16 "
        "(tools/VC_perclip.py's definition) of the job's masks against GT_URL/<video_id>/<frame>.png. "
        "Without: per video, how often consecutive masks agree (temporal_agreement quantiles).",
    )
    add_output_arguments(parser)
    parser.add_argument(
        "--ground-truth", metavar="GT_URL", help="folder or URL of label PNGs: GT_URL/<video_id>/<frame>.png"
    )
    parser.add_argument(
        "--reduce-zero-label",
        action="store_true",
        help="ground truth in VSPW's raw encoding: 0 = ignore, class k stored as k + 1",
    )
    parser.add_argument("--job", metavar="ID", help="the job (needed when OUTPUT holds several)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the full result as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        con = connect(open_output(args))
        job = resolve_job(con, args.job)
        if args.ground_truth:
            options = storage_options(args) if "://" in args.ground_truth else None
            result = evaluate_against_ground_truth(con, job, args.ground_truth, args.reduce_zero_label, options)
        else:
            result = {"job_id": job, "temporal_agreement": agreement_distribution(con, job)}
    except (EvalError, QueryError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 2
    except (CommitError, OSError, ValueError) as exc:
        print(f"tv3s {NAME}: error: {exc}", file=sys.stderr)
        return 1
    if args.ground_truth:  # printed outside the try: a closed stdout is not an error of the output's
        print(_summary(result))
    else:
        print(format_table(pa.Table.from_pylist(result["temporal_agreement"]), max_rows=1000))
    if args.json:
        args.json.write_text(json.dumps(_finite(result), indent=2) + "\n")
    return 0


def _summary(result: dict) -> str:
    def pct(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{100 * value:.2f}"

    return "\n".join(
        [
            f"job {result['job_id']}: {result['frames']} frames of {result['videos']} videos scored "
            f"({result['videos_without_ground_truth']} videos without ground truth)",
            f"  mIoU    {pct(result['mIoU'])}",
            f"  mVC_8   {pct(result['mVC_8'])}  ({result['windows_8']} windows)",
            f"  mVC_16  {pct(result['mVC_16'])}  ({result['windows_16']} windows; "
            f"{result['videos_skipped_for_vc']} videos of <= 16 frames skipped, as the official script does)",
        ]
    )


def _finite(value: object) -> object:
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
