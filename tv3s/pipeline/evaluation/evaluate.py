"""Score a job's committed masks: against ground-truth label PNGs (mIoU, mVC_8, mVC_16), or
without ground truth, by the distribution of frame-to-frame agreement per video.

Ground truth layout: GT_URL/<video_id>/<N>.png, where N is the frame index (any zero
padding; the trailing digits of the file name are the index, so VSPW's 00000015.png
works). Only frames with both a mask and a ground-truth file are scored; mVC runs over
them in frame order, as the official script runs over a video's listed frames.
"""

from __future__ import annotations

import re

import duckdb
import fsspec

from ..outputs.masks import decode_mask_png
from .metrics import Evaluation, reduce_zero_label

FETCH_FRAMES = 32
_TRAILING_DIGITS = re.compile(r"(\d+)$")


class EvalError(ValueError):
    """The evaluation cannot run as asked; the message says what to change."""


def evaluate_against_ground_truth(
    con: duckdb.DuckDBPyConnection,
    job_id: str,
    gt_url: str,
    reduce_zero: bool = False,
    storage_options: dict | None = None,
) -> dict:
    """mIoU, mVC_8, mVC_16 (see `metrics`) of the job's masks against GT_URL, plus coverage counts."""
    fs, root = fsspec.core.url_to_fs(gt_url.rstrip("/"), **(storage_options or {}))
    root = root.rstrip("/")
    sql = "SELECT DISTINCT video_id FROM frames WHERE job_id = ? ORDER BY 1"
    videos = [v for (v,) in con.sql(sql, params=[job_id]).fetchall()]
    if not videos:
        raise EvalError(f"job {job_id!r} has no frames in this output")
    ((num_classes,),) = con.sql(
        "SELECT len(class_histogram) FROM frames WHERE job_id = ? LIMIT 1", params=[job_id]
    ).fetchall()
    evaluation = Evaluation(num_classes)
    without_gt = 0
    for video_id in videos:
        truth = _ground_truth_files(fs, f"{root}/{video_id}")
        indices = [
            i
            for (i,) in con.sql(
                "SELECT frame_index FROM frames WHERE job_id = ? AND video_id = ? ORDER BY 1", params=[job_id, video_id]
            ).fetchall()
            if i in truth
        ]
        if not indices:
            without_gt += 1
            continue
        evaluation.start_video()
        for start in range(0, len(indices), FETCH_FRAMES):
            chunk = indices[start : start + FETCH_FRAMES]
            rows = con.sql(
                "SELECT frame_index, mask_png FROM frames WHERE job_id = ? AND video_id = ? "
                "AND frame_index BETWEEN ? AND ? ORDER BY frame_index",
                params=[job_id, video_id, chunk[0], chunk[-1]],
            ).fetchall()
            for index, mask in rows:
                if index not in truth:
                    continue
                gt = decode_mask_png(fs.cat_file(truth[index]))
                pred = decode_mask_png(mask)
                if gt.shape != pred.shape:
                    raise EvalError(
                        f"{fs.unstrip_protocol(truth[index])} is {gt.shape[1]}x{gt.shape[0]}, the mask of frame "
                        f"{index} of {video_id!r} is {pred.shape[1]}x{pred.shape[0]}: ground truth must be at "
                        "source resolution"
                    )
                evaluation.add_frame(reduce_zero_label(gt) if reduce_zero else gt, pred)
    if evaluation.frames == 0:
        raise EvalError(
            f"no ground truth found under {gt_url} for job {job_id!r}: expected {gt_url}/<video_id>/<frame>.png "
            f"(e.g. {gt_url}/{videos[0]}/000000.png)"
        )
    return {"job_id": job_id, **evaluation.result(), "videos_without_ground_truth": without_gt}


def agreement_distribution(con: duckdb.DuckDBPyConnection, job_id: str) -> list[dict]:
    """Per video (and 'ALL'): how often consecutive masks agree, from the frames table alone."""
    stats = (
        "count(*) AS frames, count(temporal_agreement) AS compared, avg(temporal_agreement) AS mean, "
        "min(temporal_agreement) AS min, quantile_cont(temporal_agreement, 0.05) AS p05, "
        "quantile_cont(temporal_agreement, 0.5) AS p50, quantile_cont(temporal_agreement, 0.95) AS p95"
    )
    sql = (
        f"SELECT video_id, {stats} FROM frames WHERE job_id = ? GROUP BY video_id "
        f"UNION ALL SELECT 'ALL', {stats} FROM frames WHERE job_id = ? ORDER BY video_id = 'ALL', video_id"
    )
    table = con.sql(sql, params=[job_id, job_id]).to_arrow_table()
    return table.to_pylist()


def _ground_truth_files(fs: fsspec.AbstractFileSystem, folder: str) -> dict[int, str]:
    """Frame index -> path of the PNGs in one video's ground-truth folder."""
    try:
        paths = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return {}
    found = {}
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        match = _TRAILING_DIGITS.search(name[: -len(".png")]) if name.lower().endswith(".png") else None
        if match:
            found[int(match.group(1))] = path
    return found
