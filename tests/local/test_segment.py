"""The segmentation runner's outputs (masks, overlays, preview, summary) with the fixture model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tv3s import DEMO_CHECKPOINT
from tv3s.model.loading import load_model
from tv3s.pipeline.ingest.resize import ResizeRule, resize_frames
from tv3s.pipeline.local.layout import OutputExistsError, OutputLayout
from tv3s.pipeline.local.segment import FramesError, SegmentOptions, segment
from tv3s.pipeline.outputs.masks import decode_mask_png, logits_to_labels
from tv3s.pipeline.outputs.video_write import write_video

from ..support.datagen import encode, stamped_frames
from ..support.jobdata import job_spec, label_reference, table_rows


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


# official: 480p model inputs, slow on CPU, so 4 frames (chunks of 3: the state crosses a chunk)
@pytest.mark.parametrize("mode,resize,n", [("stream", "official", 4), ("clip", "none", 10)])
def test_folder_is_segmented_at_source_resolution(tmp_path, folder, mode, resize, n, small_model):
    out = tmp_path / "out"
    options = SegmentOptions(mode=mode, chunk=3, max_frames=n, progress=False, resize=resize)
    summary = segment(small_model, folder, out, options)
    layout = OutputLayout(out)
    masks = sorted(layout.masks.iterdir())
    assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(n)]
    labels = np.stack([decode_mask_png(m.read_bytes()) for m in masks])
    assert labels.shape == (n, 36, 50) and labels.dtype == np.uint8
    # a job's rules: the model sees the frames at the official size (672x480 for 50x36), then the
    # logits are resized bilinearly to the source size and argmaxed
    rule = ResizeRule() if resize == "official" else ResizeRule(scale=None)
    frames = resize_frames(colour_frames()[:n], rule.size_for(50, 36))
    assert frames.shape[1:3] == ((480, 672) if resize == "official" else (36, 50))
    if mode == "stream":
        logits, _ = small_model.predict_stream(frames)
    else:
        logits = small_model.predict_clip(frames)
    assert (labels == logits_to_labels(torch.as_tensor(logits), (36, 50))).mean() > 0.999
    assert len(list(layout.overlays.glob("*.jpg"))) == n
    assert Image.open(layout.preview).size[1] > 0
    on_disk = json.loads(layout.summary.read_text())
    assert on_disk == summary
    assert summary["frames"] == n and summary["classes"] == 7 and summary["mode"] == mode
    assert summary["model_input"] == [frames.shape[2], frames.shape[1]] and summary["resize"] == resize
    assert summary["errors"] == []
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
        SegmentOptions(chunk=5, max_frames=7, overlays=False, progress=False, resize="none"),
        extra_summary={"random_weights": True},
    )
    assert summary["frames"] == 7 and summary["random_weights"] is True
    assert summary["fps"] == pytest.approx(12.0) and (summary["width"], summary["height"]) == (64, 48)
    assert len(list((out / "masks").iterdir())) == 7
    assert not (out / "overlay").exists() and summary["outputs"]["overlays"] is None
    assert summary["errors"] == []


def test_earlier_results_are_refused_or_replaced(tmp_path, folder, small_model):
    out = tmp_path / "out"
    segment(small_model, folder, out, SegmentOptions(progress=False, resize="none"))
    stale = OutputLayout(out).mask(99)
    stale.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        segment(small_model, folder, out, SegmentOptions(progress=False))
    segment(small_model, folder, out, SegmentOptions(max_frames=4, overwrite=True, progress=False, resize="none"))
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:06d}.png" for i in range(4)]


def test_bad_input_fails_before_writing(tmp_path, small_model):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(FramesError, match=r"bad\.mp4"):
        segment(small_model, bad, tmp_path / "out", SegmentOptions(progress=False))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode,resize,stride", [("stream", "official", 1), ("clip", "none", 2)])
def test_a_video_segmented_gets_the_masks_a_job_commits_for_it(tmp_path, mode, resize, stride):
    """The single-video case of a job: the same decoding, resize rule, model calls and label maps."""
    video = tmp_path / "drive.mp4"
    video.write_bytes(encode(stamped_frames(3, 0, 7, 72, 128)))
    model = load_model(DEMO_CHECKPOINT, None, torch.device("cpu"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the job's actors: float sums over more threads may differ in the last bit
    try:
        options = SegmentOptions(mode=mode, chunk=4, progress=False, resize=resize, stride=stride)
        summary = segment(model, video, tmp_path / "seg", options)
    finally:
        torch.set_num_threads(threads)
    spec = job_spec(
        [str(video)],
        str(tmp_path / "job"),
        inputs={"resize": resize, "frame_stride": stride},
        model={"mode": mode},
        resources={"chunk_frames": 4},
    )
    rows = table_rows(label_reference(spec), "frames")
    assert (
        [r["frame_index"] for r in rows]
        == list(range(0, 7, stride))
        == sorted(int(p.stem) for p in (tmp_path / "seg" / "masks").iterdir())
    )
    assert {r["frame_stride"] for r in rows} == {stride} and summary["frame_stride"] == stride
    for row in rows:
        mask = (tmp_path / "seg" / "masks" / f"{row['frame_index']:06d}.png").read_bytes()
        assert np.array_equal(decode_mask_png(mask), decode_mask_png(row["mask_png"])), row["frame_index"]
