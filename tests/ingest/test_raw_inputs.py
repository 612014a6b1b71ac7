"""Raw media as input: video files, folders, globs and s3:// prefixes indexed (by probing, with ranged
reads) into the index schema, and read back frame for frame from the files themselves."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tv3s.pipeline.ingest.chunks import iter_video, iter_videos
from tv3s.pipeline.ingest.index import plan_videos
from tv3s.pipeline.ingest.inputs import index_inputs
from tv3s.pipeline.ingest.resize import ResizeRule
from tv3s.pipeline.storage import Store

from ..support.datagen import encode, read_stamp, stamped_frames
from .test_pack import make_source


def read_back(patterns: list[str], store: Store):
    """Index `patterns`, plan and read every video: ({video: [(frame, stamp, member)]}, errors, table)."""
    result = index_inputs(patterns, store)
    runs, plan_errors = plan_videos(result.table)
    errors = [*result.errors, *plan_errors]
    frames: dict[str, list] = {}
    for chunk in iter_videos(runs, store, errors.append, ResizeRule(scale=None)):
        frames.setdefault(chunk.video_id, []).extend(
            (chunk.frame_index + i, read_stamp(f), chunk.sources[i].member) for i, f in enumerate(chunk.frames)
        )
    return frames, errors, result.table


def test_a_folder_becomes_videos_by_the_pack_rule_and_a_corrupt_file_is_its_own_error(tmp_path):
    src = make_source(tmp_path)
    (src / "broken.mp4").write_bytes(b"not a video" * 100)
    frames, errors, table = read_back([str(src)], Store())
    assert [(e.kind.value, Path(e.url).name, e.video_id, e.stage) for e in errors] == [
        ("corrupt_member", "broken.mp4", "broken", "index")
    ]
    assert frames["solo"] == [(t, (0, t), None) for t in range(9)]  # no tar member: the file is the media
    assert [(f, s) for f, s, _ in frames["drive"]] == [(t, (1, t)) for t in range(10)]  # two files, one video
    assert [(f, s) for f, s, _ in frames["cam"]] == [(i + 1, (2, i)) for i in range(4)]  # numbers from names
    solo = next(r for r in table.to_pylist() if r["video_id"] == "solo")
    assert (solo["sample_type"], solo["media_member"], solo["media_offset"], solo["frames"], solo["fps"]) == (
        "segment",
        "",
        0,
        9,
        12.0,
    )
    assert solo["shard"] == str(src / "solo.mp4") and solo["media_size"] == (src / "solo.mp4").stat().st_size


def test_globs_and_files_name_videos_and_entries_naming_nothing_are_errors(tmp_path):
    src = make_source(tmp_path)
    (src / "drive" / "notes.txt").write_text("not media")
    (tmp_path / "empty").mkdir()
    frames, errors, _ = read_back(
        [str(src / "*.mp4"), str(src / "drive" / "part1.webm"), str(tmp_path / "empty"), str(src / "notes.txt")],
        Store(),
    )
    assert sorted(frames) == ["part1", "solo"]
    assert [(f, s) for f, s, _ in frames["part1"]] == [(t, (1, 5 + t)) for t in range(5)]
    assert sorted((e.kind.value, Path(e.url).name) for e in errors) == [
        ("not_found", "empty"),
        ("not_found", "notes.txt"),
    ]
    assert all("nothing to label" in e.message and ".mp4" in e.hint for e in errors)


@dataclass
class CountingStore(Store):
    """A real Store that also counts the bytes its ranged reads fetched, per URL."""

    fetched: dict = field(default_factory=dict)

    def read(self, url: str, start: int, end: int) -> bytes:
        data = super().read(url, start, end)
        self.fetched[url] = self.fetched.get(url, 0) + len(data)
        return data


def noisy_video(frames: int = 96, size: int = 256) -> bytes:
    """An H.264 mp4 of random frames (several MB: noise does not compress), frame t stamped t."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(12))
        stream.width = stream.height = size
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "4", "preset": "ultrafast"}
        for t in range(frames):
            frame = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            frame[:, :128] = stamped_frames(5, t, 1, size, 128)[0]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return buf.getvalue()


def test_an_s3_prefix_is_probed_with_ranged_reads_and_decoded_from_the_objects(s3, tmp_path):
    bucket = s3.make_bucket("raw-footage")
    fs = s3.filesystem()
    big = noisy_video()
    assert len(big) > 4 << 20
    fs.pipe_file(f"{bucket}/footage/big.mp4", big)
    fs.pipe_file(f"{bucket}/footage/drive/a.mp4", encode(stamped_frames(1, 0, 5)))
    fs.pipe_file(f"{bucket}/footage/drive/b.mp4", encode(stamped_frames(1, 5, 5)))
    fs.pipe_file(f"{bucket}/footage/junk.mp4", b"\x00" * 5000)
    store = CountingStore(s3.storage_options)
    result = index_inputs([f"{bucket}/footage"], store)
    assert store.fetched[f"{bucket}/footage/big.mp4"] < len(big) // 2, "probing reads the header, not the file"
    assert [(e.kind.value, e.url) for e in result.errors] == [("corrupt_member", f"{bucket}/footage/junk.mp4")]
    rows = {(r["video_id"], r["index"]): r for r in result.table.to_pylist()}
    assert sorted(rows) == [("big", 0), ("drive", 0), ("drive", 1)]
    assert (rows[("drive", 1)]["start_frame"], rows[("drive", 1)]["frames"]) == (5, 5)
    frames, errors, _ = read_back([f"{bucket}/footage/"], Store(s3.storage_options))
    assert [e.url for e in errors] == [f"{bucket}/footage/junk.mp4"]
    assert [(f, s) for f, s, _ in frames["big"]] == [(t, (5, t)) for t in range(96)]
    assert [(f, s) for f, s, _ in frames["drive"]] == [(t, (1, t)) for t in range(10)]


def test_a_file_that_vanishes_after_indexing_is_a_read_error_and_the_rest_is_read(tmp_path):
    src = make_source(tmp_path)
    result = index_inputs([str(src)], Store())
    (src / "solo.mp4").unlink()
    runs, _ = plan_videos(result.table)
    errors = []
    videos = {c.video_id for c in iter_videos(runs, Store(), errors.append, ResizeRule(scale=None))}
    assert videos == {"cam", "drive"}
    assert [(e.kind.value, e.stage, e.video_id) for e in errors] == [("not_found", "read", "solo")]


@pytest.mark.parametrize("suffix", ["", "/"])
def test_a_missing_folder_is_named(tmp_path, suffix):
    result = index_inputs([str(tmp_path / "nope") + suffix], Store())
    assert result.table.num_rows == 0
    assert [e.kind.value for e in result.errors] == ["not_found"]


def test_a_stride_reads_every_nth_frame_numbered_across_the_files_of_a_video(tmp_path):
    src = make_source(tmp_path)
    result = index_inputs([str(src)], Store())  # drive/: a sub-folder of two files, one video
    runs = [run for run in plan_videos(result.table)[0] if run.video_id == "drive"]
    errors = []
    chunks = list(iter_video(runs, Store(), errors.append, ResizeRule(scale=None), chunk=2, stride=3))
    assert errors == []
    frames = [(c.frame_index + i * c.stride, read_stamp(f)) for c in chunks for i, f in enumerate(c.frames)]
    assert frames == [(t, (1, t)) for t in (0, 3, 6, 9)]
    assert [c.stride for c in chunks] == [3] * len(chunks)
