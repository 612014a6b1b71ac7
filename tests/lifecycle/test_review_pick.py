"""Review picks: the least confident frame first, reasons in turn, greedy per reason, gap and cap held."""

from __future__ import annotations

import numpy as np
import pytest

from tv3s.lifecycle.review_pick import REASONS, pick_frames, rare_classes
from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.query import connect

from ..support.manifest_data import read_visible, run_info, sample_job, write_job

RUN = run_info()


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    """Three videos of 20 frames (two units of 10), drifting logits: confidence and flicker vary."""
    out = Output(str(tmp_path_factory.mktemp("pick") / "out"))
    write_job(out, RUN, sample_job(RUN, videos=3, segments=2, per_segment=10))
    return out


def frames(out: Output) -> list[dict]:
    return (
        read_visible(out, "frames")
        .select(
            ["video_id", "frame_index", "mean_confidence", "temporal_agreement", "class_histogram", "width", "height"]
        )
        .to_pylist()
    )


def scores(row: dict, rare: list[int]) -> dict[str, float]:
    """The three reasons' scores of a frames row, computed here from its columns."""
    flicker = 0.0 if row["temporal_agreement"] is None else 1 - row["temporal_agreement"]
    rare_pixels = sum(row["class_histogram"][c] for c in rare)
    return {
        "low_confidence": 1 - row["mean_confidence"],
        "flicker": flicker,
        "rare_classes": rare_pixels / (row["width"] * row["height"]),
    }


def admissible(row: dict, taken: list[tuple[str, int]], gap: int, cap: int | None) -> bool:
    mine = [f for v, f in taken if v == row["video_id"]]
    return (cap is None or len(mine) < cap) and all(abs(row["frame_index"] - f) >= gap for f in mine)


def rare_share_for(rows: list[dict]) -> float:
    """A threshold that makes the job's least covered class (only) rare."""
    totals = np.sum([r["class_histogram"] for r in rows], axis=0)
    shares = np.sort(totals[totals > 0] / totals.sum())
    return float((shares[0] + shares[1]) / 2)


@pytest.mark.parametrize("gap, cap", [(1, None), (4, None), (3, 2), (1, 1)])
def test_each_pick_is_the_best_frame_left_for_its_reason_and_the_spread_holds(output, gap, cap):
    rows = frames(output)
    share = rare_share_for(rows)
    rare = rare_classes(connect(output), RUN.job_id, share)
    totals = np.sum([r["class_histogram"] for r in rows], axis=0)
    assert rare == [int(c) for c in np.flatnonzero((totals > 0) & (totals < share * totals.sum()))] and rare
    picks = pick_frames(connect(output), RUN.job_id, 12, gap, cap, share)
    assert len(picks) == (3 if cap == 1 else 6 if cap == 2 else 11 if gap == 4 else 12)
    assert picks[0].reason == "low_confidence"
    assert picks[0].mean_confidence == min(r["mean_confidence"] for r in rows)  # the least confident frame first
    taken: list[tuple[str, int]] = []
    for pick in picks:
        left = [r for r in rows if admissible(r, taken, gap, cap) and scores(r, rare)[pick.reason] > 0]
        best = max(scores(r, rare)[pick.reason] for r in left)
        assert pick.score == pytest.approx(best)  # nothing better was left for this reason
        row = next(r for r in rows if (r["video_id"], r["frame_index"]) == (pick.video_id, pick.frame_index))
        assert pick.score == pytest.approx(scores(row, rare)[pick.reason])
        taken.append((pick.video_id, pick.frame_index))
    if len(picks) < 12:  # fewer than asked only when the spread leaves no frame
        assert not [r for r in rows if admissible(r, taken, gap, cap)]
    for video_id in {v for v, _ in taken}:
        mine = sorted(f for v, f in taken if v == video_id)
        assert all(b - a >= gap for a, b in zip(mine, mine[1:]))
        assert cap is None or len(mine) <= cap


def test_reasons_take_turns_and_a_frame_is_picked_once(output):
    rows = frames(output)
    picks = pick_frames(connect(output), RUN.job_id, 9, 1, None, rare_share_for(rows))
    assert [p.reason for p in picks] == list(REASONS) * 3
    assert len({(p.video_id, p.frame_index) for p in picks}) == 9
    assert all(p.rare_classes for p in picks if p.reason == "rare_classes")


def test_a_reason_with_no_frames_above_zero_gives_way_to_the_others(output):
    picks = pick_frames(connect(output), RUN.job_id, 6, 1, None, rare_share=0.0)  # no class is rare
    assert [p.reason for p in picks] == ["low_confidence", "flicker"] * 3
    first_frames = [p for p in pick_frames(connect(output), RUN.job_id, 60, 1, None, 0.0) if p.frame_index == 0]
    assert all(p.reason == "low_confidence" for p in first_frames)  # no previous frame: no flicker score


def test_more_frames_than_the_spread_allows_gives_what_it_allows(output):
    picks = pick_frames(connect(output), RUN.job_id, 100, 10, None, 0.01)
    assert len(picks) == 6  # 20 frames a video, 10 apart: two a video
