"""Reading videos and frame folders, the errors for bad inputs, and the demo clip."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tv3s.pipeline.local.frames import (
    FramesError,
    iter_frame_folder,
    iter_video_frames,
    natural_key,
    open_frames,
    probe_frames,
    video_info,
)
from tv3s.pipeline.outputs.video_write import write_video

from ..support.clips import generate_demo_clip


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return generate_demo_clip(7, 48, 64, seed=1)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory, clip) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", clip, fps=10)


@pytest.mark.parametrize(
    "ext,codec", [("mp4", "libx264"), ("mkv", "libx264"), ("webm", "libvpx-vp9"), ("avi", "mpeg4"), ("mov", "libx264")]
)
def test_video_decodes_in_chunks(tmp_path, clip, ext, codec):
    path = write_video(tmp_path / f"clip.{ext}", clip, fps=10, codec=codec)
    chunks = list(iter_video_frames(path, chunk=3))
    assert [c.shape[0] for c in chunks] == [3, 3, 1]
    frames = np.concatenate(chunks)
    assert frames.dtype == np.uint8 and frames.shape == clip.shape
    # lossy codecs, but the picture must be the same one (and RGB, not BGR)
    assert np.abs(frames.astype(int) - clip).mean() < 8
    assert np.array_equal(frames, np.concatenate(list(open_frames(path, chunk=3))))


def test_video_info(mp4):
    info = video_info(mp4)
    assert (info.frames, info.width, info.height) == (7, 64, 48)
    assert info.fps == pytest.approx(10.0)
    assert probe_frames(mp4) == info


def test_missing_path_and_bad_extension(tmp_path):
    with pytest.raises(FramesError, match="no such file"):
        open_frames(tmp_path / "nope.mp4", 4)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FramesError, match=r"unsupported extension '\.txt'"):
        open_frames(text, 4)


def test_random_bytes_are_reported_as_corrupt(tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(20_000))
    with pytest.raises(FramesError, match=r"random\.mp4.*re-encode"):
        open_frames(bad, 4)


def test_truncated_video_is_reported(tmp_path, mp4):
    cut = tmp_path / "cut.mp4"
    data = mp4.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FramesError, match=r"cut\.mp4"):
        for _ in open_frames(cut, 4):
            pass


def test_folder_is_read_in_natural_order(tmp_path):
    for i in (10, 2, 1, 33):
        Image.fromarray(np.full((6, 8, 3), i, np.uint8)).save(tmp_path / f"frame_{i}.png")
    Image.fromarray(np.full((6, 8, 3), 5, np.uint8)).save(tmp_path / "frame_5.JPG", quality=100)
    (tmp_path / "readme.txt").write_text("not a frame")
    frames = np.concatenate(list(open_frames(tmp_path, chunk=2)))
    assert frames.shape == (5, 6, 8, 3)
    assert [round(f.mean()) for f in frames] == [1, 2, 5, 10, 33]
    assert probe_frames(tmp_path).frames == 5
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]


def test_folder_with_mismatched_frame_is_reported(tmp_path):
    for i in range(3):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / f"{i:03d}.png")
    Image.fromarray(np.zeros((7, 8, 3), np.uint8)).save(tmp_path / "002.png")
    with pytest.raises(FramesError, match=r"002\.png: frame is 8x7 but 000\.png is 8x6"):
        iter_frame_folder(tmp_path, 2)


def test_empty_folder_and_broken_image(tmp_path):
    with pytest.raises(FramesError, match="no frames found"):
        open_frames(tmp_path, 2)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "0.png")
    (tmp_path / "1.png").write_bytes(b"not a png")
    with pytest.raises(FramesError, match=r"1\.png: not a readable image"):
        open_frames(tmp_path, 2)


def test_bad_chunk_size(mp4):
    with pytest.raises(ValueError, match="chunk"):
        open_frames(mp4, 0)


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
