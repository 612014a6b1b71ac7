"""Which frames of a job are most worth a person's look, spread over videos and time.

Three reasons make a frame worth checking, each a share of its pixels read from the frames
table (no mask is decoded):

- ``low_confidence``: 1 - mean_confidence, the model's own expected share of wrong pixels;
- ``flicker``: 1 - temporal_agreement, the share of pixels relabeled since the previous
  frame (labels that flicker are wrong in one of the two frames);
- ``rare_classes``: the share in classes under `rare_share` of all the job's pixels, where
  pseudo-labels are least trustworthy and a correction teaches most.

Picks go round the reasons in that order, each time taking the frame that scores highest on
the reason among those left, so the least confident frame comes first and each reason gets
its share of the review; a frame scoring 0 on a reason is never picked for it. A frame is
skipped when it is closer than `min_gap` frames to a pick of its video, or when its video has
`per_video` picks already: near-identical neighbours, or one bad video, teach little. Each
ranking streams out of DuckDB a page at a time; only the picks are kept.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import duckdb

_RARE = (
    "list_sum(list_transform(class_histogram, lambda x, i: CASE WHEN list_contains($rare, i - 1) THEN x ELSE 0 END))"
    " / (width * height)"
)
REASONS = {
    "low_confidence": "1 - mean_confidence",
    "flicker": "1 - temporal_agreement",  # null (no previous frame at hand): never picked for flicker
    "rare_classes": _RARE,
}
PAGE_ROWS = 1024


@dataclass(frozen=True)
class Pick:
    """A frame chosen for review: the reason it was picked for, its score on it, and its figures."""

    video_id: str
    frame_index: int
    reason: str
    score: float
    mean_confidence: float
    temporal_agreement: float | None
    rare_share: float
    rare_classes: list[int]  # the job's rare classes present in the frame

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Spread:
    """The frames taken so far, per video, to keep picks `min_gap` apart and `per_video` at most."""

    min_gap: int
    per_video: int | None
    taken: dict[str, list[int]] = field(default_factory=dict)

    def admits(self, video_id: str, frame_index: int) -> bool:
        frames = self.taken.get(video_id, [])
        if self.per_video is not None and len(frames) >= self.per_video:
            return False
        at = bisect.bisect_left(frames, frame_index)
        return all(abs(frame_index - f) >= self.min_gap for f in frames[max(at - 1, 0) : at + 1])

    def take(self, video_id: str, frame_index: int) -> None:
        bisect.insort(self.taken.setdefault(video_id, []), frame_index)


def rare_classes(con: duckdb.DuckDBPyConnection, job_id: str, rare_share: float) -> list[int]:
    """Classes present in the job but with less than `rare_share` of all its pixels."""
    sql = (
        "SELECT class_id, sum(pixels) FROM (SELECT unnest(range(len(class_histogram))) AS class_id, "
        "unnest(class_histogram) AS pixels FROM frames WHERE job_id = ?) GROUP BY class_id"
    )
    totals = dict(con.sql(sql, params=[job_id]).fetchall())
    everything = sum(totals.values())
    return sorted(int(c) for c, n in totals.items() if 0 < n < rare_share * everything)


def pick_frames(
    con: duckdb.DuckDBPyConnection,
    job_id: str,
    count: int,
    min_gap: int = 1,
    per_video: int | None = None,
    rare_share: float = 0.01,
) -> list[Pick]:
    """Up to `count` frames of the job, going round REASONS, spread as `Spread` says; in pick order."""
    rare = rare_classes(con, job_id, rare_share)
    spread = Spread(min_gap, per_video)
    streams = {reason: ranked(con, job_id, reason, rare) for reason in REASONS}
    picks: list[Pick] = []
    while streams and len(picks) < count:
        for reason in list(streams):
            row = next((r for r in streams[reason] if spread.admits(r["video_id"], r["frame_index"])), None)
            if row is None:
                del streams[reason]
                continue
            spread.take(row["video_id"], row["frame_index"])
            picks.append(_pick(row, reason, rare))
            if len(picks) == count:
                break
    return picks


def ranked(con: duckdb.DuckDBPyConnection, job_id: str, reason: str, rare: list[int]) -> Iterator[dict]:
    """The job's frames scoring above 0 on `reason`, highest first (ties by video, frame), a page per query."""
    term = REASONS[reason]
    sql = (
        f"SELECT video_id, frame_index, mean_confidence, temporal_agreement, class_histogram, {term} AS score, "
        f"{_RARE} AS rare_share FROM frames WHERE job_id = $job_id AND {term} > 0 "
        "ORDER BY score DESC, video_id, frame_index LIMIT $limit OFFSET $offset"
    )
    offset = 0
    while True:
        params = {"job_id": job_id, "rare": rare, "limit": PAGE_ROWS, "offset": offset}
        page = con.sql(sql, params=params).to_arrow_table().to_pylist()
        yield from page
        if len(page) < PAGE_ROWS:
            return
        offset += PAGE_ROWS


def _pick(row: dict, reason: str, rare: list[int]) -> Pick:
    return Pick(
        video_id=row["video_id"],
        frame_index=row["frame_index"],
        reason=reason,
        score=float(row["score"]),
        mean_confidence=float(row["mean_confidence"]),
        temporal_agreement=row["temporal_agreement"],
        rare_share=float(row["rare_share"]),
        rare_classes=[c for c in rare if row["class_histogram"][c]],
    )
