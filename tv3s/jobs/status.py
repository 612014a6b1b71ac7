"""A job's progress read from its output alone (plan, status and the units ledger), from anywhere."""

from __future__ import annotations

import io

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..pipeline.outputs.commit import Output
from ..schemas.manifest import UNITS_SCHEMA
from .runner import JOBS_DIR, job_paths, read_status


def job_names(output: Output) -> list[str]:
    prefix = output.full(JOBS_DIR)
    if not output.fs.exists(prefix):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in output.fs.ls(prefix, detail=False))


def job_progress(output: Output, name: str) -> dict:
    """Videos and units planned and committed, frames and errors committed, and the driver's last word.

    Counts are one aggregate over the job's rows of the units ledger (streamed by DuckDB: no row is held).
    Errors are every row of the job's `errors` table: those committed with a video's units, and those
    committed outside any video (inputs that could not be indexed, chains that failed every attempt).
    """
    plan_path = output.full(job_paths(name)["plan"])
    if not output.fs.exists(plan_path):
        raise FileNotFoundError(f"no job {name!r} in {output.url} (jobs: {', '.join(job_names(output)) or 'none'})")
    videos, units = _planned(output, name)
    counts = _ledger_counts(output, name)
    units_done, frames, errors_in_videos = counts.get("units", (0, 0, 0))
    videos_done = counts.get("summary", (0, 0, 0))[0]
    errors_outside_videos = counts.get("errors", (0, 0, 0))[2]
    status = read_status(output, name) or {}
    state = status.get("state", "planned")
    if state == "running" and videos_done == videos:
        state = "finished (driver gone before recording it)"
    seconds, committed = status.get("seconds") or 0.0, status.get("units_committed") or 0
    eta = None
    if state == "running" and seconds and committed:  # this run's pace per unit, start-up included
        eta = (units - units_done) * seconds / committed
    return {
        "name": name,
        "state": state,
        "videos": videos,
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


def _planned(output: Output, name: str) -> tuple[int, int]:
    """(videos, units) planned, from the job's chain tables, a partition at a time (a video's chains
    all lie in its one partition, so per-partition distinct counts add up)."""
    videos = units = 0
    folder = output.full(job_paths(name)["chains"])
    for path in sorted(output.fs.find(folder)):
        chains = pq.read_table(io.BytesIO(output.fs.cat_file(path)), columns=["video_id", "video_units"])
        per_video = chains.group_by("video_id").aggregate([("video_units", "max")])
        videos += per_video.num_rows
        units += int(pc.sum(per_video["video_units_max"]).as_py() or 0)
    return videos, units


# The job's ledger rows with the labelling each belongs to (content digest and generation, parsed from the
# scope as `labelling_of` does), the content the plan has for the video, and the video's newest labelling
# of that content: the one whose units count (an older one of the same content was replaced since).
_CURRENT = (
    "planned AS (SELECT DISTINCT video_id, content AS planned FROM chains), "
    "parsed AS (SELECT *, regexp_extract(scope, '[.]([0-9a-f]{16})([.][0-9]+)?$', 1) AS content, "
    "coalesce(try_cast(regexp_extract(scope, '[.][0-9a-f]{16}[.]([0-9]+)$', 1) AS INTEGER), 0) AS generation "
    "FROM ledger WHERE job_id = ?), "
    "joined AS (SELECT p.*, c.planned FROM parsed p LEFT JOIN planned c ON p.video_id = c.video_id), "
    "mine AS (SELECT *, max(CASE WHEN content = planned THEN generation END) OVER (PARTITION BY video_id) AS newest "
    "FROM joined)"
)


def _ledger_counts(output: Output, name: str) -> dict[str, tuple[int, int, int]]:
    """(units, frames, error rows) committed by the job, by kind of ledger row, of each video's current
    labelling only (`_CURRENT`): a job run again over a changed archive keeps its earlier ledger rows
    as history. DuckDB reads the ledger and the chain tables as Arrow datasets; nothing is held per
    unit here."""
    ledger = output.dataset("units", UNITS_SCHEMA)  # noqa: F841 (read by DuckDB by name)
    folder = output.full(job_paths(name)["chains"])
    chains = ds.dataset(folder, format="parquet", filesystem=output.fs) if output.fs.exists(folder) else None
    current = chains is not None and "content" in chains.schema.names
    query = (
        f"WITH {_CURRENT} SELECT kind, count(*), coalesce(sum(frames), 0), coalesce(sum(error_rows), 0) "
        "FROM mine WHERE video_id IS NULL OR (content = planned AND generation = newest) GROUP BY kind"
        if current
        else "SELECT kind, count(*), coalesce(sum(frames), 0), coalesce(sum(error_rows), 0) "
        "FROM ledger WHERE job_id = ? GROUP BY kind"  # a plan recorded before contents were
    )
    import duckdb  # here, not at the top: every actor imports tv3s.jobs, and only status reads with DuckDB

    with duckdb.connect(":memory:") as con:
        if current:
            con.register("chains", chains)
        rows = con.execute(query, [name]).fetchall()
    return {kind: (int(n), int(f), int(e)) for kind, n, f, e in rows}
