"""One labeling result as a side of a comparison: an output, one of its jobs, its class set.

The masks are fetched a few frames at a time for one video (`rows`), so a comparison holds
a handful of masks whatever the size of the outputs; listing frames reads no mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from ..pipeline.outputs.commit import Output
from ..pipeline.outputs.query import QueryError, connect, resolve_job
from ..pipeline.outputs.render import resolve_classes
from ..schemas.classes import ClassSet

_ROW_COLUMNS = "frame_index, width, height, mask_png, mean_confidence, source_url, source_member, source_frame_index"


@dataclass(frozen=True)
class Side:
    """A job's frames in an output, read through the output's read-only SQL connection."""

    name: str  # how messages and captions call it: "A" or "B" in a diff
    url: str
    job_id: str
    con: duckdb.DuckDBPyConnection

    def videos(self) -> list[str]:
        sql = "SELECT DISTINCT video_id FROM frames WHERE job_id = ? ORDER BY 1"
        return [v for (v,) in self.con.sql(sql, params=[self.job_id]).fetchall()]

    def frame_indices(self, video_id: str) -> list[int]:
        sql = "SELECT frame_index FROM frames WHERE job_id = ? AND video_id = ? ORDER BY 1"
        return [i for (i,) in self.con.sql(sql, params=[self.job_id, video_id]).fetchall()]

    def rows(self, video_id: str, indices: Sequence[int]) -> dict[int, dict]:
        """The rows (mask included) of the video's frames `indices`, sorted ascending, by frame index."""
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM frames WHERE job_id = ? AND video_id = ? "
            "AND frame_index BETWEEN ? AND ? ORDER BY frame_index"
        )
        params = [self.job_id, video_id, indices[0], indices[-1]]
        wanted = set(indices)
        rows = self.con.sql(sql, params=params).to_arrow_table().to_pylist()
        return {r["frame_index"]: r for r in rows if r["frame_index"] in wanted}

    def classes(self) -> ClassSet:
        """The model's class names and colours (as `tv3s render` draws them)."""
        sql = "SELECT len(class_histogram) FROM frames WHERE job_id = ? LIMIT 1"
        ((count,),) = self.con.sql(sql, params=[self.job_id]).fetchall()
        return resolve_classes(self.con, self.job_id, None, count, "auto")


def open_side(name: str, output: Output, job_id: str | None) -> Side:
    """The side `name` over `output`: the job given, or the output's only job (QueryError naming the side
    otherwise)."""
    con = connect(output)
    try:
        return Side(name, output.url, resolve_job(con, job_id), con)
    except QueryError as exc:
        raise QueryError(f"{name} {output.url}: {exc}") from exc
