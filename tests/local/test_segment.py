"""The segmentation runner's outputs (masks, overlays, preview, summary) with the fixture model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tv3s.pipeline.local.frames import FramesError
from tv3s.pipeline.local.layout import OutputExistsError, OutputLayout
from tv3s.pipeline.local.segment import SegmentOptions, segment
from tv3s.pipeline.outputs.masks import decode_mask_png
from tv3s.pipeline.outputs.video_write import write_video


def colour_frames(n: int = 10, h: int = 36, w: int = 50) -> np.ndarray:
    """Left third red, middle green, right blue."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[:, :, : w // 3, 0] = 200
    frames[:, :, w // 3 : 2 * w // 3, 1] = 200
    frames[:, :, 2 * w // 3 :, 2] = 200
    return frames


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "frames"
    path.mkdir()
    for i, frame in enumerate(colour_frames()):
        Image.fromarray(frame).save(path / f"f_{i}.png")
    return path


@pytest.mark.parametrize("mode", ["stream", "clip"])
def test_folder_is_segmented_at_source_resolution(tmp_path, folder, mode, small_model):
    out = tmp_path / "out"
    summary = segment(small_model, folder, out, SegmentOptions(mode=mode, chunk=3, progress=False))
    layout = OutputLayout(out)
    masks = sorted(layout.masks.iterdir())
    assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(10)]
    labels = np.stack([decode_mask_png(m.read_bytes()) for m in masks])
    assert labels.shape == (10, 36, 50) and labels.dtype == np.uint8
    # the official rule: bilinear resize of the logits to the source size, then argmax
    frames = colour_frames()
    if mode == "stream":
        full, _ = small_model.predict_stream(frames, full_resolution=True)
    else:
        full = small_model.predict_clip(frames, full_resolution=True)
    assert (labels == full.argmax(1)).mean() > 0.999
    assert len(list(layout.overlays.glob("*.jpg"))) == 10
    assert Image.open(layout.preview).size[1] > 0
    on_disk = json.loads(layout.summary.read_text())
    assert on_disk == summary
    assert summary["frames"] == 10 and summary["classes"] == 7 and summary["mode"] == mode
    assert summary["model_id"] == small_model.model_id
    fractions = [c["fraction"] for c in summary["class_pixel_fraction"]]
    assert sum(fractions) == pytest.approx(1.0)
    counts = np.bincount(labels.ravel(), minlength=7) / labels.size
    assert fractions == pytest.approx(counts.tolist(), abs=1e-6)
    assert set(summary["timing"]) >= {"total_s", "decode_s", "model_s", "postprocess_s", "frames_per_s"}


def test_video_with_frame_limit_and_no_overlays(tmp_path, small_model):
    video = write_video(tmp_path / "v.mp4", colour_frames(12, 48, 64))
    out = tmp_path / "out"
    summary = segment(
        small_model,
        video,
        out,
        SegmentOptions(chunk=5, max_frames=7, overlays=False, progress=False),
        extra_summary={"random_weights": True},
    )
    assert summary["frames"] == 7 and summary["random_weights"] is True
    assert summary["fps"] == pytest.approx(12.0) and (summary["width"], summary["height"]) == (64, 48)
    assert len(list((out / "masks").iterdir())) == 7
    assert not (out / "overlay").exists() and summary["outputs"]["overlays"] is None
    assert "warning_frame_count" not in summary


def test_earlier_results_are_refused_or_replaced(tmp_path, folder, small_model):
    out = tmp_path / "out"
    segment(small_model, folder, out, SegmentOptions(progress=False))
    stale = OutputLayout(out).mask(99)
    stale.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        segment(small_model, folder, out, SegmentOptions(progress=False))
    segment(small_model, folder, out, SegmentOptions(max_frames=4, overwrite=True, progress=False))
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:06d}.png" for i in range(4)]


def test_bad_input_fails_before_writing(tmp_path, small_model):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(FramesError, match=r"bad\.mp4"):
        segment(small_model, bad, tmp_path / "out", SegmentOptions(progress=False))
    assert not (tmp_path / "out").exists()
