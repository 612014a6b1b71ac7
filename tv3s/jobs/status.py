"""A job's progress read from its output alone (plan, status and commit records), from anywhere."""

from __future__ import annotations

import io

import pyarrow.parquet as pq

from ..pipeline.outputs.commit import Output, UnitRecord
from ..pipeline.outputs.manifest import ERRORS_SCOPE, SUMMARY_UNIT, safe_key
from .runner import JOBS_DIR, job_paths, read_status


def job_names(output: Output) -> list[str]:
    prefix = output.full(JOBS_DIR)
    if not output.fs.exists(prefix):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in output.fs.ls(prefix, detail=False))


def job_progress(output: Output, name: str) -> dict:
    """Videos and units planned and committed, frames and errors committed, and the driver's last word.

    Errors are every row of the job's `errors` table, counted from the commit records' row counts (no
    Parquet is read): those committed with a video's units, and those committed outside any video (inputs
    that could not be indexed, chains that failed every attempt), which no video's records hold.
    """
    plan_path = output.full(job_paths(name)["plan"])
    if not output.fs.exists(plan_path):
        raise FileNotFoundError(f"no job {name!r} in {output.url} (jobs: {', '.join(job_names(output)) or 'none'})")
    videos = _planned_videos(output, name)
    units_done = videos_done = frames = errors_in_videos = 0
    for video_id in videos:
        records = output.scope_records(name, safe_key(video_id))
        videos_done += any(r.key.name == SUMMARY_UNIT for r in records)
        for r in records:
            partial = r.meta.get("partial")
            if partial is not None:
                units_done += 1
                frames += int(partial.get("frames", 0))
            errors_in_videos += _error_rows(r)
    errors_outside_videos = sum(_error_rows(r) for r in output.scope_records(name, ERRORS_SCOPE))
    status = read_status(output, name) or {}
    state = status.get("state", "planned")
    if state == "running" and videos_done == len(videos):
        state = "finished (driver gone before recording it)"
    units = sum(videos.values())
    seconds, committed = status.get("seconds") or 0.0, status.get("units_committed") or 0
    eta = None
    if state == "running" and seconds and committed:  # this run's pace per unit, start-up included
        eta = (units - units_done) * seconds / committed
    return {
        "name": name,
        "state": state,
        "videos": len(videos),
        "videos_done": videos_done,
        "units": units,
        "units_done": units_done,
        "frames": frames,
        "errors": errors_in_videos + errors_outside_videos,
        "errors_in_videos": errors_in_videos,
        "errors_outside_videos": errors_outside_videos,
        "updated_at": status.get("updated_at"),
        "frames_per_second": status.get("frames_per_second"),
        "eta_seconds": eta,
    }


def _planned_videos(output: Output, name: str) -> dict[str, int]:
    """Planned units per video, from the job's chain tables (one per index partition)."""
    videos: dict[str, int] = {}
    folder = output.full(job_paths(name)["chains"])
    for path in sorted(output.fs.find(folder)):
        chains = pq.read_table(io.BytesIO(output.fs.cat_file(path)), columns=["video_id", "video_units"])
        videos.update(zip(chains["video_id"].to_pylist(), chains["video_units"].to_pylist()))
    return videos


def _error_rows(record: UnitRecord) -> int:
    """Rows the record's unit committed to the `errors` table, as the record lists them."""
    return sum(f.rows for f in record.files if f.table == "errors")
