"""A resume point is a value: safetensors bytes round-trip every field, and damage is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tv3s.jobs.resume_point import ResumePoint, ResumePointError
from tv3s.model.mamba import MixerState
from tv3s.model.predict import ClipHistory
from tv3s.model.state import StreamState
from tv3s.pipeline.ingest.chunks import CursorState

CURSOR = CursorState(
    run=1,
    next_frame=37,
    size=(128, 96),
    previous={"index": 3, "frames": 12},
    reset=False,
    reason=None,
    reported_modes=("L",),
)


def stream_state() -> StreamState:
    g = torch.Generator().manual_seed(0)
    layers = tuple(
        tuple(MixerState(torch.randn(4, 3, 8, generator=g), torch.randn(4, 8, 16, generator=g)) for _ in range(2))
        for _ in range(3)
    )
    return StreamState(layers, "arch", "weights", (96, 128), (6, 8), 37)


def roundtrip(point: ResumePoint) -> ResumePoint:
    return ResumePoint.from_bytes(point.to_bytes(), "test")


def test_stream_state_cursor_and_previous_labels_round_trip_exactly():
    labels = np.random.default_rng(0).integers(0, 19, (96, 128), dtype=np.uint8)
    point = ResumePoint("cam-1", 4, CURSOR, stream_state(), (36, labels), warmed_up=True)
    back = roundtrip(point)
    assert (back.video_id, back.unit, back.warmed_up) == ("cam-1", 4, True)
    c = back.cursor  # through JSON: tuples come back as lists
    assert (c.run, c.next_frame, tuple(c.size), c.previous, c.reset, c.reason, tuple(c.reported_modes)) == (
        1,
        37,
        (128, 96),
        {"index": 3, "frames": 12},
        False,
        None,
        ("L",),
    )
    assert back.previous_labels[0] == 36 and np.array_equal(back.previous_labels[1], labels)
    state = back.carried
    assert isinstance(state, StreamState) and state.frames_seen == 37 and state.input_hw == (96, 128)
    for got, want in zip((s for g in state.layers for s in g), (s for g in point.carried.layers for s in g)):
        assert torch.equal(got.conv, want.conv) and torch.equal(got.ssm, want.ssm)  # bit-exact


@pytest.mark.parametrize("frames", [None, np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)])
def test_clip_history_round_trips(frames):
    back = roundtrip(ResumePoint("v", 0, CURSOR, ClipHistory(frames, 9), None))
    assert isinstance(back.carried, ClipHistory) and back.carried.start == 9
    assert (back.carried.frames is None) == (frames is None)
    if frames is not None:
        assert np.array_equal(back.carried.frames, frames)
    assert back.previous_labels is None


def test_nothing_carried_round_trips_as_none():
    assert roundtrip(ResumePoint("v", 2, CURSOR, None, None)).carried is None


def test_damaged_or_foreign_bytes_are_refused_with_where():
    blob = ResumePoint("v", 0, CURSOR, None, None).to_bytes()
    with pytest.raises(ResumePointError, match="unit 7"):
        ResumePoint.from_bytes(blob[: len(blob) // 2], "resume point of v unit 7")
    with pytest.raises(ResumePointError, match="format"):
        ResumePoint.from_bytes(stream_state().to_bytes(), "a stream state")
