"""The one video `tv3s segment` reads (through the data plane), the errors for bad inputs, and the demo clip."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tv3s.pipeline.ingest.chunks import iter_video
from tv3s.pipeline.ingest.resize import ResizeRule
from tv3s.pipeline.ingest.sources import natural_key
from tv3s.pipeline.local.segment import FramesError, open_video
from tv3s.pipeline.outputs.video_write import write_video
from tv3s.pipeline.storage import Store

from ..support.clips import generate_demo_clip


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return generate_demo_clip(7, 48, 64, seed=1)


def read(source: Path, chunk: int = 3):
    """(chunks, errors of indexing, planning and reading) of the one video at `source`, at its source size."""
    video = open_video(source, Store())
    errors = list(video.errors)
    return list(iter_video(video.runs, Store(), errors.append, ResizeRule(scale=None), chunk)), errors


@pytest.mark.parametrize(
    "ext,codec", [("mp4", "libx264"), ("mkv", "libx264"), ("webm", "libvpx-vp9"), ("avi", "mpeg4"), ("mov", "libx264")]
)
def test_every_container_decodes_in_chunks(tmp_path, clip, ext, codec):
    path = write_video(tmp_path / f"clip.{ext}", clip, fps=10, codec=codec)
    video = open_video(path, Store())
    assert video.video_id == "clip" and video.fps == pytest.approx(10.0)
    chunks, errors = read(path)
    assert errors == [] and [len(c.frames) for c in chunks] == [3, 3, 1]
    frames = np.concatenate([c.frames for c in chunks])
    assert frames.dtype == np.uint8 and frames.shape == clip.shape
    # lossy codecs, but the picture must be the same one (and RGB, not BGR)
    assert np.abs(frames.astype(int) - clip).mean() < 8


def test_a_missing_path_an_unknown_file_and_random_bytes_are_named(tmp_path):
    with pytest.raises(FramesError, match=r"nope\.mp4: nothing to segment: nothing to label: no such file"):
        open_video(tmp_path / "nope.mp4", Store())
    with pytest.raises(FramesError, match=r"nope: .*not a shard \(\.tar\), a video or image file, nor a folder"):
        open_video(tmp_path / "nope", Store())
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FramesError, match=r"notes\.txt: .*nor a folder"):
        open_video(text, Store())
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(20_000))
    with pytest.raises(FramesError, match=r"random\.mp4.*re-encode"):
        open_video(bad, Store())


def test_a_truncated_video_is_read_up_to_the_damage_and_reported(tmp_path, clip):
    whole = write_video(tmp_path / "whole.mp4", generate_demo_clip(40, 48, 64, seed=1)).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 3 // 4])
    try:
        chunks, errors = read(cut)
    except FramesError as exc:  # the container's index went with the cut: not even probed
        assert "cut.mp4" in str(exc)
        return
    assert sum(len(c.frames) for c in chunks) < 40
    assert errors and all("cut.mp4" in e.url for e in errors)


def test_a_folder_is_one_frame_sequence_in_natural_order(tmp_path):
    for i in (10, 2, 1, 33):
        Image.fromarray(np.full((48, 64, 3), i, np.uint8)).save(tmp_path / f"frame_{i}.png")
    Image.fromarray(np.full((48, 64, 3), 5, np.uint8)).save(tmp_path / "frame_5.JPG", quality=100)
    (tmp_path / "readme.txt").write_text("not a frame")
    chunks, errors = read(tmp_path, chunk=2)
    frames = np.concatenate([c.frames for c in chunks])
    assert [round(f.mean()) for f in frames] == [1, 2, 5, 10, 33]
    assert [c.frame_index for c in chunks if c.reset] == [1, 5, 10, 33]  # numbered by the names: gaps reset
    assert {e.kind.value for e in errors} == {"missing_segment"}
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]


def test_a_frame_of_another_size_and_a_broken_image_are_reported_and_the_rest_read(tmp_path):
    for i in range(4):
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / f"{i:03d}.png")
    Image.fromarray(np.zeros((56, 64, 3), np.uint8)).save(tmp_path / "002.png")
    (tmp_path / "003.png").write_bytes(b"not a png")
    chunks, errors = read(tmp_path, chunk=2)
    assert [(e.kind.value, Path(e.member or e.url).name) for e in errors] == [
        ("frame_size_changed", "002.png"),
        ("corrupt_member", "003.png"),
    ]
    assert [c.source_size for c in chunks] == [(64, 48), (64, 56)]


def test_an_empty_folder_and_a_folder_of_several_videos_are_refused(tmp_path, clip):
    with pytest.raises(FramesError, match="nothing to segment"):
        open_video(tmp_path, Store())
    write_video(tmp_path / "a.mp4", clip)
    write_video(tmp_path / "b.mp4", clip)
    with pytest.raises(FramesError, match=r"holds 2 videos \(a, b\).*tv3s label"):
        open_video(tmp_path, Store())


def test_demo_clip_is_deterministic_and_moves():
    start = time.perf_counter()
    a = generate_demo_clip(24, 256, 448, seed=3)
    assert time.perf_counter() - start < 2.0
    assert a.shape == (24, 256, 448, 3) and a.dtype == np.uint8
    assert np.array_equal(a, generate_demo_clip(24, 256, 448, seed=3))
    assert not np.array_equal(a, generate_demo_clip(24, 256, 448, seed=4))
    assert np.abs(a[0].astype(int) - a[-1]).mean() > 1  # cars and lane dashes move
    # sky on top, road grey at the bottom centre
    assert a[0, 5, 224, 2] > a[0, 5, 224, 0]
    assert abs(int(a[0, 250, 224 + 40, 0]) - 95) < 15


def test_write_video_rejects_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="even sizes"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 5, 8, 3), np.uint8))
